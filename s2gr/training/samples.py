"""Training samples from the ``train`` split, in the form each encoder mode needs.

- **Fast mode** (causal encoder, the default): a user's training sequence is cut into *segments* of at
  most ``segment_items`` target positions, each preceded by up to ``context_items`` items that serve only
  as history. One forward pass over a segment yields every target in it, so the cost grows with the
  number of interactions; fixed-size segments keep batches dense whatever the users' lengths.
- **Sliding window** (the exact bidirectional TIGER encoder): one row per target, its history being the
  at most ``max_history`` items before it. Cost grows with interactions × history length.

Each row also holds ``length``, its number of items, which the ``Trainer``'s length-grouped sampling reads
(``RunConfig.group_by_length``): users' remainder segments range from a few items to a whole segment, so
random batches of segments hold much padding.

Both are built with ``datasets.map(batched=True)``, so they stream through Arrow for large logs. Both can
keep only each user's ``recent_targets`` most recent training items as targets (their histories still
reach back as far as without it), which bounds the cost of an epoch on logs with very long users; SASRec's
``maxlen`` does the same.
"""

from __future__ import annotations

from datasets import Dataset, DatasetDict

from ..errors import InputError
from ..evaluation import seen_items


def refit_sequences(splits: DatasetDict) -> Dataset:
    """The ``train`` split with each user's validation item appended: the sequences a final model trains
    on once its setting has been chosen on validation (``RunConfig.refit``). Everything before each test
    target, which is what the test seen-item filter excludes too."""
    train = splits["train"]
    return Dataset.from_dict({"user_id": train["user_id"], "item_ids": seen_items(splits, "test")})


def training_split(splits: DatasetDict, refit: bool = False) -> Dataset:
    """The user sequences a run trains on (and builds its codebook graph from): the ``train`` split, or
    for a refit ``refit_sequences``."""
    return refit_sequences(splits) if refit else splits["train"]


def check_recent_targets(recent_targets: int | None) -> None:
    if recent_targets is not None and recent_targets < 1:
        raise InputError(f"recent_targets must be ≥ 1 (or None for every item), got {recent_targets}.")


def first_target(length: int, recent_targets: int | None) -> int:
    """Position of a sequence's first training target: 1 (the first item has no history), or the start of
    its last ``recent_targets`` items (checked by ``check_recent_targets``) when that is later."""
    return 1 if recent_targets is None else max(1, length - recent_targets)


def segment_sequences(
    train: Dataset,
    segment_items: int,
    context_items: int,
    recent_targets: int | None = None,
    num_proc: int | None = None,
) -> Dataset:
    """Rows ``item_ids`` (context + targets), ``first_target`` (index of the first target in the row) and
    ``length`` (items in the row).

    The first item of a user has no history and is never a target; every other training item (or each of
    the last ``recent_targets``) is the target of exactly one row, with at least ``context_items`` items of
    history visible when it has them.
    """
    if segment_items < 1 or context_items < 1:
        # A target needs at least one history item inside its row.
        raise InputError(
            f"segment_items and context_items must be ≥ 1, got {segment_items}, {context_items}."
        )
    check_recent_targets(recent_targets)

    def cut(batch: dict) -> dict:
        rows: dict[str, list] = {"item_ids": [], "first_target": [], "length": []}
        for sequence in batch["item_ids"]:
            for start in range(first_target(len(sequence), recent_targets), len(sequence), segment_items):
                begin = max(0, start - context_items)
                rows["item_ids"].append(sequence[begin : start + segment_items])
                rows["first_target"].append(start - begin)
                rows["length"].append(len(rows["item_ids"][-1]))
        return rows

    return train.map(cut, batched=True, remove_columns=train.column_names, num_proc=num_proc, desc="segments")


def sliding_window_samples(
    train: Dataset, max_history: int, recent_targets: int | None = None, num_proc: int | None = None
) -> Dataset:
    """Rows ``history`` (≤ ``max_history`` items, oldest first), ``target`` and ``length`` (items in the
    history): one per training target."""
    if max_history < 1:
        raise InputError(f"max_history must be ≥ 1, got {max_history}.")
    check_recent_targets(recent_targets)

    def expand(batch: dict) -> dict:
        rows: dict[str, list] = {"history": [], "target": [], "length": []}
        for sequence in batch["item_ids"]:
            for position in range(first_target(len(sequence), recent_targets), len(sequence)):
                rows["history"].append(sequence[max(0, position - max_history) : position])
                rows["target"].append(sequence[position])
                rows["length"].append(len(rows["history"][-1]))
        return rows

    return train.map(
        expand, batched=True, remove_columns=train.column_names, num_proc=num_proc, desc="windows"
    )


def count_targets(train: Dataset, recent_targets: int | None = None) -> int:
    """Training targets of a split: every item but each user's first (at most ``recent_targets`` per user)."""
    check_recent_targets(recent_targets)
    lengths = (len(sequence) for sequence in train["item_ids"])
    return sum(max(0, length - first_target(length, recent_targets)) for length in lengths)
