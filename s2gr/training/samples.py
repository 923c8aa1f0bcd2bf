"""Training samples from the ``train`` split, in the form each encoder mode needs.

- **Fast mode** (causal encoder, the default): a user's training sequence is cut into *segments* of at
  most ``segment_items`` target positions, each preceded by up to ``context_items`` items that serve only
  as history. One forward pass over a segment yields every target in it, so the cost grows with the
  number of interactions; fixed-size segments keep batches dense whatever the users' lengths.
- **Sliding window** (the exact bidirectional TIGER encoder): one row per target, its history being the
  at most ``max_history`` items before it. Cost grows with interactions × history length.

Both are built with ``datasets.map(batched=True)``, so they stream through Arrow for large logs.
"""

from __future__ import annotations

from datasets import Dataset


def segment_sequences(
    train: Dataset, segment_items: int, context_items: int, num_proc: int | None = None
) -> Dataset:
    """Rows ``item_ids`` (context + targets) and ``first_target`` (index of the first target in the row).

    The first item of a user has no history and is never a target; every other training item is the
    target of exactly one row, with at least ``context_items`` items of history visible when it has them.
    """
    if segment_items < 1 or context_items < 1:
        # A target needs at least one history item inside its row.
        raise ValueError(
            f"segment_items and context_items must be ≥ 1, got {segment_items}, {context_items}."
        )

    def cut(batch: dict) -> dict:
        rows: dict[str, list] = {"item_ids": [], "first_target": []}
        for sequence in batch["item_ids"]:
            for start in range(1, len(sequence), segment_items):  # start = first target position
                begin = max(0, start - context_items)
                rows["item_ids"].append(sequence[begin : start + segment_items])
                rows["first_target"].append(start - begin)
        return rows

    return train.map(cut, batched=True, remove_columns=train.column_names, num_proc=num_proc, desc="segments")


def sliding_window_samples(train: Dataset, max_history: int, num_proc: int | None = None) -> Dataset:
    """Rows ``history`` (≤ ``max_history`` items, oldest first) and ``target``: one per training target."""
    if max_history < 1:
        raise ValueError(f"max_history must be ≥ 1, got {max_history}.")

    def expand(batch: dict) -> dict:
        rows: dict[str, list] = {"history": [], "target": []}
        for sequence in batch["item_ids"]:
            for position in range(1, len(sequence)):
                rows["history"].append(sequence[max(0, position - max_history) : position])
                rows["target"].append(sequence[position])
        return rows

    return train.map(
        expand, batched=True, remove_columns=train.column_names, num_proc=num_proc, desc="windows"
    )


def count_targets(train: Dataset) -> int:
    """Training targets of a split: every item but each user's first."""
    return sum(max(0, len(sequence) - 1) for sequence in train["item_ids"])
