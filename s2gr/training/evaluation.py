"""Leave-one-out evaluation helpers: seen-item sets, metric computation, the most-popular baseline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from datasets import DatasetDict

from ..errors import InputError

DEFAULT_CUTOFFS = (5, 10)


@lru_cache(maxsize=1)
def _metric():
    from ..metrics import load_recommendation_metric

    return load_recommendation_metric()


def ranking_metrics(
    rankings: Sequence[Sequence[str]], targets: Sequence[str], cutoffs=DEFAULT_CUTOFFS
) -> dict[str, float]:
    """Recall@K / NDCG@K through the packaged ``evaluate`` module (exact string match on keys)."""
    return _metric().compute(
        predictions=[list(r) for r in rankings], references=list(targets), k=list(cutoffs)
    )


def reported_splits(refit: bool = False) -> tuple[str, ...]:
    """The splits a final model is scored on: validation and test, or test only for a refit (its validation
    items are training data)."""
    return ("test",) if refit else ("validation", "test")


def seen_items(splits: DatasetDict, split: str) -> list[list[str]]:
    """Everything each user interacted with before the ``split`` target, not only the truncated history.

    Validation users have seen their training items; test users also their validation target.
    """
    if split not in ("validation", "test"):
        raise InputError(f"split must be 'validation' or 'test', got {split!r}.")
    train = splits["train"]["item_ids"]
    if split == "validation":
        return [list(items) for items in train]
    return [[*items, target] for items, target in zip(train, splits["validation"]["target"], strict=True)]


def user_sequence(splits: DatasetDict, user_id: str) -> list[str]:
    """Everything known about one user, oldest first: the training items, then the validation and the test
    target. What a deployed model would see of the user, so ``s2gr recommend --user`` starts from it.

    Raises ``ValueError`` for a user id the splits lack (e.g. removed by the k-core filter).
    """
    users = splits["train"]["user_id"]
    try:
        row = users.index(str(user_id))
    except ValueError:
        raise InputError(
            f"unknown user id {user_id!r}: the data set has {len(users):,} users after filtering (ids such as "
            f"{', '.join(map(repr, users[:3]))}). Pass an id of the data set the model was trained on (same "
            "--dataset/--interactions, --kcore, --max-users), or give the items with --history ITEM [ITEM ...]."
        ) from None
    return [
        *splits["train"][row]["item_ids"],
        splits["validation"][row]["target"],
        splits["test"][row]["target"],
    ]


def most_popular(
    splits: DatasetDict, split: str, top_k: int = 10, exclude_seen: bool = True
) -> list[list[str]]:
    """Rank items by interaction count in everything before the target (train items, and for test the
    validation targets too), optionally skipping what the user has seen without losing slots."""
    counts = Counter(item for items in splits["train"]["item_ids"] for item in items)
    if split == "test":
        counts.update(splits["validation"]["target"])
    ranked = [item for item, _ in counts.most_common()]
    seen = seen_items(splits, split)
    rankings = []
    for user_seen in seen:
        excluded = set(user_seen) if exclude_seen else set()
        rankings.append([item for item in ranked[: top_k + len(excluded)] if item not in excluded][:top_k])
    return rankings
