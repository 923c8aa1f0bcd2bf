"""New items without retraining, as TIGER serves them (Rajput et al., 2023, §4.3).

1. `add_cold_items` (`s2gr add-items`): items of an item file that the model's catalog lacks get Semantic IDs
   from the tokenizer's *frozen* codebook, from their text alone (content embedding; with collaborative codes
   the collaborative part predicted from it, see `s2gr.codebook.collaborative`), and free dedup codes. The
   model's weights and token ids do not change; a new model folder is written with the extended tokenizer,
   the new items' titles and `cold_items.json`, the list of items the model was never trained on.
2. `mix_cold_items` (`S2GRRecommender.recommend(..., epsilon=ε)`): cold items are never generated directly (the
   model has not learnt their SIDs; the beam search excludes them). Instead, a cold item whose `L` level codes
   equal those of a generated (trained) item inherits that beam's score, and cold items may take up to
   `floor(ε · top_k)` of the top-k slots, ranked by the inherited score. `ε = 0` recommends no cold item.

Fine-tuning (`s2gr finetune`) learns new items from their interactions instead; a fine-tuned model has no cold
items. `benchmarks/finetune_new_catalog.py` compares both on held-out catalog items.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError, corrupt_file
from .titles import TITLES_FILE, item_titles, load_titles, save_titles

COLD_ITEMS_FILE = "cold_items.json"


def load_cold_items(folder: str | os.PathLike) -> list[str]:
    """The cold items of a model folder (empty when it has none)."""
    path = Path(folder) / COLD_ITEMS_FILE
    if not path.is_file():
        return []
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise corrupt_file(path, error) from None
    return [str(item) for item in items]


def add_cold_items(
    model: str | os.PathLike,
    items: pd.DataFrame,
    output: str | os.PathLike,
    embed,
) -> list[str]:
    """Write `output`: the model folder `model` with every item of `items` (`item_id`, `text`[, title columns])
    that its catalog lacks added as a cold item. `embed(texts) -> (M, E)` must be the encoder the codebook was
    built with. Returns the new item ids (none: `output` is still written, an unchanged copy)."""
    from .checkpoint import load_checkpoint, resolve_model_folder  # the recommender imports this module
    from .codebook import FrozenQuantizer
    from .data.assets import write_folder_atomically

    source = resolve_model_folder(model)
    output = Path(output)
    if output.resolve() == source.resolve():
        raise InputError(f"--output {output} is the model folder itself: write the extended model elsewhere.")
    _, tokenizer = load_checkpoint(source, "cpu")
    state = tokenizer.quantizer_state
    if state is None:
        raise InputError(
            f"{source}: the tokenizer stores no frozen codebook, so new items cannot get Semantic IDs from their text."
        )
    known = set(tokenizer.item_ids)
    new = items[~items["item_id"].astype(str).isin(known)].drop_duplicates("item_id")
    new_ids = new["item_id"].astype(str).tolist()
    if new_ids:
        embeddings = np.asarray(embed(new["text"].tolist()), dtype=np.float32)
        codes = FrozenQuantizer.from_state_dict(state).assign(embeddings)  # (M, L)
        try:
            tokenizer.add_items(new_ids, codes=codes)
        except ValueError as error:
            raise InputError(
                f"cannot add {len(new_ids)} items without growing the vocabulary ({error}); fine-tune on a catalog "
                "that includes them instead (s2gr finetune)."
            ) from error
    cold = load_cold_items(source) + new_ids
    titles = {**(load_titles(source) or {}), **item_titles(new)}

    def write(tmp: Path) -> None:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        tokenizer.save_pretrained(tmp)
        (tmp / COLD_ITEMS_FILE).write_text(json.dumps(cold, ensure_ascii=False), encoding="utf-8")
        if titles:
            save_titles(tmp, titles)
        elif (tmp / TITLES_FILE).exists():
            (tmp / TITLES_FILE).unlink()

    write_folder_atomically(output, write)
    return new_ids


def cold_prefix_index(tokenizer, cold_items: Sequence[str]) -> dict[tuple[int, ...], list[str]]:
    """Level codes (L,) -> the cold items with those codes, in catalog order."""
    position = {item: row for row, item in enumerate(tokenizer.item_ids)}
    levels = tokenizer.codes[:, :-1]
    index: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for item in cold_items:
        index[tuple(levels[position[item]].tolist())].append(item)
    return dict(index)


def mix_cold_items(
    ranking: list[tuple[str, float]],
    prefix_of: dict[str, tuple[int, ...]],
    cold_by_prefix: dict[tuple[int, ...], list[str]],
    top_k: int,
    epsilon: float,
    excluded: set[str] = frozenset(),
) -> list[tuple[str, float]]:
    """The top-k of one user: `ranking` (trained items, best first, possibly longer than top_k) with at most
    `floor(epsilon * top_k)` cold items whose level codes match a ranked item, each scored like that item."""
    slots = math.floor(epsilon * top_k + 1e-9)
    cold: list[tuple[str, float]] = []
    seen: set[str] = set()
    for item, score in ranking:
        for candidate in cold_by_prefix.get(prefix_of[item], ()):
            if len(cold) < slots and candidate not in seen and candidate not in excluded:
                seen.add(candidate)
                cold.append((candidate, score))
    warm = ranking[: top_k - len(cold)]
    # A cold item comes right after the item it matched (equal scores: the stable sort keeps warm first).
    return sorted(warm + cold, key=lambda pair: -pair[1])


def check_epsilon(epsilon: float) -> None:
    if not 0.0 <= epsilon <= 1.0:
        raise InputError(
            f"epsilon must be in [0, 1] (the largest share of the top-k for cold items), got {epsilon}."
        )
