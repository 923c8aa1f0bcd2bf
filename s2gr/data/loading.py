"""``load_data``: a named data set or a user's own files → ``RecData`` (``datasets`` objects)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from datasets import Dataset, DatasetDict

from ..errors import InputError
from .assets import fetch_asset
from .preprocess import LogStats, chronological, drop_repeats, kcore_filter, leave_one_out
from .readers import Columns, read_interactions, read_recbole

# Named data sets: asset folder and the RecBole atomic files inside it.
DATASETS: dict[str, tuple[str, str]] = {
    "ml-100k": ("ml-100k.inter", "ml-100k.item"),
    "ml-1m": ("ml-1m.inter", "ml-1m.item"),
}
DEFAULT_DATASET = "ml-100k"


@dataclass
class RecData:
    """A preprocessed data set: leave-one-out splits, the item table, and log statistics.

    ``items`` row order defines the item index ``0..N-1`` used by embeddings and codebooks.
    """

    name: str
    splits: DatasetDict
    items: Dataset
    raw_stats: LogStats
    stats: LogStats
    kcore: int
    max_history: int

    @property
    def item_ids(self) -> list[str]:
        return self.items["item_id"]

    def item_index(self) -> dict[str, int]:
        return {item: index for index, item in enumerate(self.items["item_id"])}

    def train_sequences(self, sequences: Sequence[Sequence[str]] | None = None) -> list[list[int]]:
        """Training sequences as item indices (what the co-occurrence graph is built from): the ``train``
        split's, or ``sequences`` of item ids (e.g. a refit's, which end with the validation items)."""
        index = self.item_index()
        sequences = self.splits["train"]["item_ids"] if sequences is None else sequences
        return [[index[item] for item in sequence] for sequence in sequences]


def load_data(
    name: str | None = None,
    *,
    interactions: str | os.PathLike | Dataset | DatasetDict | pd.DataFrame | None = None,
    items: str | os.PathLike | Dataset | pd.DataFrame | None = None,
    columns: Columns = Columns(),
    kcore: int = 5,
    max_history: int = 20,
    max_users: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> RecData:
    """Load a named data set (``ml-100k``, ``ml-1m``) or your own ``interactions`` (+ ``items``): a file, a
    ``datasets.Dataset``/``DatasetDict``, a folder written by ``save_to_disk``, or a pandas DataFrame, with the
    user, item and timestamp columns ``columns`` names.

    ``max_users`` keeps only the first that many users of the log (in file order) before filtering: a
    small real slice for quick experiments and tests.
    """
    if (name is None) == (interactions is None):
        raise InputError("Give either a data set name or an interactions file (--dataset or --interactions).")
    if name is not None:
        if name not in DATASETS:
            raise InputError(
                f"Unknown data set {name!r}; known: {', '.join(DATASETS)}. "
                "For your own data pass --interactions FILE [--items FILE]."
            )
        folder = fetch_asset(name, cache_dir)
        inter_file, item_file = DATASETS[name]
        raw, metadata = read_recbole(folder / inter_file, folder / item_file)
    else:
        raw, metadata = read_interactions(interactions, items, columns)
        name = (
            Path(interactions).name
            if isinstance(interactions, (str, os.PathLike))
            else type(interactions).__name__
        )
    if max_users is not None:
        if max_users < 1:
            raise InputError(f"max_users must be ≥ 1, got {max_users}.")
        first_users = set(pd.unique(raw["user_id"])[:max_users])
        raw = raw[raw["user_id"].isin(first_users)].reset_index(drop=True)
        name = f"{name}[:{max_users} users]"
    return build_recdata(name, raw, metadata, kcore=kcore, max_history=max_history)


def build_recdata(
    name: str, raw: pd.DataFrame, metadata: pd.DataFrame | None, *, kcore: int = 5, max_history: int = 20
) -> RecData:
    """Order, de-duplicate, filter and split canonical tables (see ``s2gr.data.preprocess``).

    Removed duplicates and repeats are counted on stderr; ``raw_stats`` describe the log as read."""
    deduplicated, exact, repeats = drop_repeats(raw)
    if exact or repeats:
        print(
            f"[s2gr] {name}: removed {exact:,} duplicate event(s) (same user, item and timestamp) and "
            f"{repeats:,} repeated (user, item) pair(s) at a later time (only a user's first interaction "
            "with an item is kept).",
            file=sys.stderr,
        )
    # Users are numbered by first appearance: ordering after the filter keeps that numbering stable.
    filtered = chronological(kcore_filter(deduplicated, kcore))
    if filtered.empty:
        raise InputError(f"{name}: nothing is left after the {kcore}-core filter; lower --kcore.")
    splits = leave_one_out(filtered, max_history)
    kept_users = set(splits["train"]["user_id"])
    filtered = filtered[filtered["user_id"].isin(kept_users)]
    return RecData(
        name=name,
        splits=splits,
        items=_item_rows(filtered, metadata),
        raw_stats=LogStats.of(raw),
        stats=LogStats.of(filtered),
        kcore=kcore,
        max_history=max_history,
    )


def _item_rows(interactions: pd.DataFrame, metadata: pd.DataFrame | None) -> Dataset:
    """Items that survived filtering: metadata-file order first, then the rest by first appearance."""
    used = pd.unique(interactions["item_id"])
    if metadata is None:
        return Dataset.from_pandas(pd.DataFrame({"item_id": used, "text": used}), preserve_index=False)
    known = metadata[metadata["item_id"].isin(set(used))]
    described = set(known["item_id"])
    unknown = pd.DataFrame({"item_id": [item for item in used if item not in described]})
    unknown["text"] = unknown["item_id"]
    table = pd.concat([known, unknown], ignore_index=True).fillna("")
    return Dataset.from_pandas(table, preserve_index=False)
