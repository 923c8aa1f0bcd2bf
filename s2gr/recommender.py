"""`S2GRRecommender`: item ids in, item ids out, for a model and the tokenizer of its checkpoint.

The model ranks token tensors (`model.recommend`, constrained beam search); the tokenizer turns item ids into
those tensors and owns the catalog. This object holds both, checks that they belong together, and runs the
batched loop between them: histories of item ids -> encoder inputs -> `model.recommend` -> item ids, with each
user's excluded items mapped to item indices. It works with the package's classes and with those loaded by
`trust_remote_code=True` alike (it only calls their public methods).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging

from .beam_search_s2gr import DEFAULT_NUM_BEAMS, DEFAULT_TOP_K
from .catalog_s2gr import item_key
from .cold_start import check_epsilon, cold_prefix_index, load_cold_items, mix_cold_items
from .errors import InputError

# Users per beam-search batch.
DEFAULT_BATCH_SIZE = 256


class S2GRRecommender:
    """Top-k item ids for histories of item ids, by the model's constrained beam search.

    model: an `S2GRForGenerativeRecommendation` (or a PEFT model around one); tokenizer: the `S2GRTokenizer` of
    the same checkpoint. A tokenizer of another codebook would map codes to the wrong items silently, so one
    whose sizes or cluster map differ from the model's is refused (`ValueError`), as is an object that is no
    S2GR tokenizer (`TypeError`). cold_items: catalog items the model was never trained on (`s2gr add-items`,
    `s2gr.cold_start`): never generated, recommended only through `epsilon`.
    """

    def __init__(self, model: Any, tokenizer: Any, cold_items: Sequence[str] = ()) -> None:
        # A PEFT model forwards through its adapters; its base model holds `recommend` and the config.
        self.model = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.tokenizer = tokenizer
        check_tokenizer(self.model, tokenizer)
        self.cold_items = [item_key(item) for item in cold_items]
        missing = sorted(set(self.cold_items) - set(tokenizer.item_ids))
        if missing:
            raise InputError(f"cold items {missing[:5]} are not in the tokenizer's catalog.")
        self._cold_by_prefix = cold_prefix_index(tokenizer, self.cold_items)
        # With cold items: each item's level codes (for the ε mix) and the trie without the cold items (per
        # device), computed once instead of at every call; the catalog must not change after construction.
        self._prefix_of = (
            dict(zip(tokenizer.item_ids, map(tuple, tokenizer.codes[:, :-1].tolist()), strict=True))
            if self.cold_items
            else {}
        )
        self._warm_tables: dict[str, Any] = {}

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = None) -> S2GRRecommender:
        """Model (in eval mode, on `device`: default cuda when available) and tokenizer of a checkpoint: a
        model folder, the folder of a `s2gr train` run, or a Hub repo id (see `s2gr.checkpoint`)."""
        from .checkpoint import default_device, load_checkpoint, resolve_model_folder

        cold = load_cold_items(resolve_model_folder(path)) if Path(path).exists() else []
        return cls(*load_checkpoint(path, device or default_device()), cold_items=cold)

    @torch.no_grad()
    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        top_k: int = DEFAULT_TOP_K,
        num_beams: int = DEFAULT_NUM_BEAMS,
        exclude: Sequence[Sequence[str]] | None = None,
        on_unknown: str = "error",
        batch_size: int = DEFAULT_BATCH_SIZE,
        return_scores: bool = False,
        progress: bool = False,
        epsilon: float = 0.0,
    ) -> list[list[str]] | list[list[tuple[str, float]]]:
        """Top-k item ids (best first) for each history of item ids.

        histories: item ids per user, oldest first (the last `model.config.context_items` are used). Ids are
            strings (an integer means its decimal string).
        on_unknown: an item outside the catalog raises the tokenizer's `UnknownItemError` ("error") or is
            dropped from its history ("skip"; a history left empty still raises).
        exclude: item ids never returned to user i (e.g. everything the user has seen); ids outside the
            catalog are ignored, as they can never be recommended anyway.
        return_scores: give `(item_id, score)` pairs, score = the beam's log-probability (see `model.recommend`).
        epsilon: the largest share of each top-k that cold items may take, each scored like the generated item
            whose level codes it shares (`s2gr.cold_start`); 0 (default) recommends none.
        Fewer than `top_k` items come back only when fewer non-excluded items exist (`top_k` beyond the catalog
        is the whole catalog). The model's training mode is restored afterwards.
        """
        if exclude is not None and len(exclude) != len(histories):
            raise InputError(f"exclude needs one list per history ({len(histories)}), got {len(exclude)}.")
        check_epsilon(epsilon)
        mixing = epsilon > 0 and bool(self.cold_items)
        rankings = self._ranked(
            histories, max(top_k, num_beams) if mixing else top_k, num_beams, exclude, on_unknown, batch_size,
            progress,
        )  # fmt: skip
        if mixing:
            rows = exclude or [[] for _ in histories]
            rankings = [
                mix_cold_items(
                    ranking, self._prefix_of, self._cold_by_prefix, top_k, epsilon, set(map(item_key, row))
                )
                for ranking, row in zip(rankings, rows, strict=True)
            ]
        return rankings if return_scores else [[item for item, _ in ranking] for ranking in rankings]

    def _prefix_tables(self, device: Any) -> Any:
        """The catalog's decoding tables on `device`; without the cold items, which the model has not learnt."""
        if not self.cold_items:
            return self.tokenizer.prefix_tables(device)  # the catalog caches these itself
        key = str(device)
        if key not in self._warm_tables:
            self._warm_tables[key] = self.tokenizer.prefix_tables(device, without=self.cold_items)
        return self._warm_tables[key]

    def _ranked(
        self,
        histories: Sequence[Sequence[str]],
        top_k: int,
        num_beams: int,
        exclude: Sequence[Sequence[str]] | None,
        on_unknown: str,
        batch_size: int,
        progress: bool,
    ) -> list[list[tuple[str, float]]]:
        """(item id, score) pairs per history, best first: the batched loop around `model.recommend`."""
        model, tokenizer = self.model, self.tokenizer
        item_ids = tokenizer.item_ids
        index = {item: position for position, item in enumerate(item_ids)}
        # Checked once, not per batch. Cold items are left out of the trie: the model has not learnt their SIDs,
        # and a leaf added under a trained prefix would take probability from its siblings.
        trie = model.decoding_trie(self._prefix_tables(model.device))
        was_training = model.training
        model.eval()
        rankings: list[Any] = []
        try:
            for start in logging.tqdm(
                range(0, len(histories), batch_size), desc="recommending", disable=not progress
            ):
                stop = start + batch_size
                batch = tokenizer.encode_histories(
                    list(histories[start:stop]),  # the catalog reads integer ids as their strings
                    max_history_items=model.config.context_items,
                    return_tensors="pt",
                    on_unknown=on_unknown,
                )
                excluded = None if exclude is None else item_index_matrix(exclude[start:stop], index)
                result = model.recommend(
                    batch["input_ids"].to(model.device),
                    batch["attention_mask"].to(model.device),
                    prefix_tables=trie,
                    top_k=top_k,
                    num_beams=num_beams,
                    exclude_items=excluded,
                )
                rankings += ranked_ids(result, item_ids, with_scores=True)
        finally:
            model.train(was_training)
        return rankings


def check_tokenizer(model: Any, tokenizer: Any) -> None:
    """Refuse a tokenizer that is not the model's: `TypeError` for no S2GR tokenizer, `ValueError` naming
    every size (or the cluster map) that differs."""
    sizes = ("vocab_size", "num_levels", "codebook_size", "dedup_size", "num_thinking")
    needed = (*sizes, "encode_histories", "prefix_tables", "item_ids")
    missing = [name for name in needed if not hasattr(tokenizer, name)]
    if missing:
        raise TypeError(
            f"S2GRRecommender needs this checkpoint's S2GR tokenizer (AutoTokenizer.from_pretrained(same "
            f"folder or repo, trust_remote_code=True)); {type(tokenizer).__name__} has no {missing}."
        )
    config = model.config
    differ = [
        f"{name} {getattr(config, name)} (model) vs {getattr(tokenizer, name)} (tokenizer)"
        for name in sizes
        if getattr(config, name) != getattr(tokenizer, name)
    ]
    # Equal sizes can still hide another codebook; the cluster maps tell (when both are set).
    clusters = getattr(tokenizer, "code_clusters", None)
    model_clusters = model.code_clusters.cpu()
    if (
        clusters is not None
        and bool((model_clusters >= 0).all())
        and not torch.equal(torch.as_tensor(clusters, dtype=torch.long), model_clusters)
    ):
        differ.append("code cluster maps (the tokenizer comes from another codebook)")
    if differ:
        raise InputError(
            "The tokenizer does not belong to this model: " + "; ".join(differ) + ". Load both from the "
            "same checkpoint folder or Hub repo."
        )


def item_index_matrix(rows: Sequence[Sequence[str]], index: dict[str, int]) -> torch.Tensor:
    """Item ids per user -> (B, H) item indices padded with -1; ids missing from `index` are dropped."""
    indices = [[index[key] for key in map(item_key, row) if key in index] for row in rows]
    matrix = torch.full((len(indices), max([1, *map(len, indices)])), -1, dtype=torch.long)
    for position, row in enumerate(indices):
        matrix[position, : len(row)] = torch.tensor(row, dtype=torch.long)
    return matrix


def ranked_ids(result: Any, item_ids: Sequence[str], with_scores: bool) -> list[list[Any]]:
    """`S2GRRecommendation` -> item ids (or (id, score) pairs) per user, best first, without -1 padding."""
    rankings = []
    for items, scores in zip(result.item_indices.tolist(), result.scores.tolist(), strict=True):
        pairs = [(item_ids[item], score) for item, score in zip(items, scores, strict=True) if item >= 0]
        rankings.append(pairs if with_scores else [item for item, _ in pairs])
    return rankings
