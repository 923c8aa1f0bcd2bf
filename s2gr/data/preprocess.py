"""From canonical interaction tables to leave-one-out ``datasets`` splits.

Steps, all vectorised with NumPy so they scale to logs far larger than MovieLens-1M:

1. **Duplicates and repeats** (``drop_repeats``), before any counting: an exact duplicate event
   (same user, item and timestamp, e.g. a log concatenated twice) is removed. A repeated
   ``(user, item)`` pair at a later time is removed too: **each user keeps only the first
   (earliest) interaction with an item**. This is the usual setting of sequential recommendation
   benchmarks, and the one consistent with the evaluation: ``s2gr.evaluation.seen_items``
   excludes everything a user interacted with before the target from the ranking, so a re-consumed
   item as target could never be hit; with first occurrences only, no validation or test target is
   ever among the user's earlier items. Re-consumption signal is lost, by design. Both counts are
   printed (``[s2gr] ...`` on stderr) by ``s2gr.data.loading.build_recdata``.
2. **Iterative k-core**: drop users and items with fewer than ``k`` interactions, repeat until
   stable. The result is the largest subgraph in which every user and item has ≥ k rows (after
   step 1, so copies never count twice).
3. **Chronological order with a deterministic tie-break**: each user's rows are sorted by
   ``(timestamp, position in the source file)``. About half of MovieLens rows share their
   timestamp with an earlier row of the same user; keeping file order among equals (a stable
   sort) makes every run and every machine give the same sequences.
4. **Leave-one-out split**: a user's last item is the test target, the second-last the
   validation target, the rest is training. Validation and test rows carry the at most
   ``max_history`` items before their target, oldest first. Users need ≥ 3 items; with
   ``kcore ≥ 3`` all have them, otherwise shorter users are dropped (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Dataset, DatasetDict

from ..errors import InputError

MIN_SEQUENCE = 3  # one training item, one validation target, one test target


@dataclass(frozen=True)
class LogStats:
    """Size of an interaction log, as printed by ``s2gr data stats``."""

    users: int
    items: int
    interactions: int
    mean_length: float
    median_length: float

    @classmethod
    def of(cls, interactions: pd.DataFrame) -> LogStats:
        lengths = interactions.groupby("user_id", sort=False).size().to_numpy()
        return cls(
            users=len(lengths),
            items=int(interactions["item_id"].nunique()),
            interactions=len(interactions),
            mean_length=float(lengths.mean()) if len(lengths) else 0.0,
            median_length=float(np.median(lengths)) if len(lengths) else 0.0,
        )


def kcore_filter(interactions: pd.DataFrame, k: int) -> pd.DataFrame:
    """Iteratively keep rows whose user and item both have ≥ ``k`` rows (the k-core)."""
    if k <= 1:
        return interactions
    users = pd.factorize(interactions["user_id"])[0]
    items = pd.factorize(interactions["item_id"])[0]
    keep = np.ones(len(interactions), dtype=bool)
    while True:
        user_counts = np.bincount(users[keep], minlength=users.max() + 1 if len(users) else 0)
        item_counts = np.bincount(items[keep], minlength=items.max() + 1 if len(items) else 0)
        still = keep & (user_counts[users] >= k) & (item_counts[items] >= k)
        if still.sum() == keep.sum():
            return interactions[keep].reset_index(drop=True)
        keep = still


def chronological(interactions: pd.DataFrame) -> pd.DataFrame:
    """Sort by user, then timestamp, then source-file position (stable sort = the tie-break)."""
    order = np.lexsort(
        (
            np.arange(len(interactions)),
            interactions["timestamp"].to_numpy(),
            pd.factorize(interactions["user_id"])[0],
        )
    )
    return interactions.iloc[order].reset_index(drop=True)


def drop_repeats(interactions: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """Keep each ``(user, item)`` pair's earliest row (equal timestamps: the first in the file; see the module
    docstring). Returns the kept rows in their input order and the numbers of exact duplicates (same
    timestamp too) and of later repeats removed."""
    earliest_first = np.lexsort((np.arange(len(interactions)), interactions["timestamp"].to_numpy()))
    repeated = np.empty(len(interactions), dtype=bool)
    repeated[earliest_first] = (
        interactions.iloc[earliest_first].duplicated(["user_id", "item_id"], keep="first").to_numpy()
    )
    if not repeated.any():
        return interactions, 0, 0
    exact = int(interactions.duplicated(["user_id", "item_id", "timestamp"], keep="first").sum())
    kept = interactions[~repeated].reset_index(drop=True)
    return kept, exact, int(repeated.sum()) - exact


def leave_one_out(interactions: pd.DataFrame, max_history: int) -> DatasetDict:
    """Build train / validation / test from chronologically sorted rows (see module docstring)."""
    if max_history < 1:
        raise InputError(f"max_history must be ≥ 1, got {max_history}.")
    users, starts, lengths = _user_runs(interactions)
    long_enough = lengths >= MIN_SEQUENCE
    users, starts, lengths = users[long_enough], starts[long_enough], lengths[long_enough]
    if len(users) == 0:
        raise InputError(
            f"No user has {MIN_SEQUENCE} or more interactions after filtering; nothing to split."
        )
    item_column = pa.array(interactions["item_id"].to_numpy(), type=pa.string())
    ends = starts + lengths
    train = _list_column(item_column, starts, lengths - 2)
    splits = {"train": pa.table({"user_id": pa.array(users, type=pa.string()), "item_ids": train})}
    for name, target in (("validation", ends - 2), ("test", ends - 1)):
        history_start = np.maximum(starts, target - max_history)
        splits[name] = pa.table(
            {
                "user_id": pa.array(users, type=pa.string()),
                "history": _list_column(item_column, history_start, target - history_start),
                "target": item_column.take(pa.array(target)),
            }
        )
    return DatasetDict({name: Dataset(table) for name, table in splits.items()})


def _user_runs(interactions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users in order of first row, with the start and length of their contiguous block of rows."""
    user_ids = interactions["user_id"].to_numpy()
    if len(user_ids) == 0:
        return user_ids, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    boundaries = np.flatnonzero(user_ids[1:] != user_ids[:-1]) + 1
    starts = np.concatenate(([0], boundaries)).astype(np.int64)
    lengths = np.diff(np.concatenate((starts, [len(user_ids)]))).astype(np.int64)
    return user_ids[starts], starts, lengths


def _list_column(values: pa.Array, starts: np.ndarray, lengths: np.ndarray) -> pa.ListArray:
    """One list per row: ``values[starts[i] : starts[i] + lengths[i]]``, without Python loops."""
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    flat = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return pa.ListArray.from_arrays(pa.array(offsets), values.take(pa.array(flat)))
