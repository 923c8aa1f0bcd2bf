"""Evaluation of next-item recommendation, the one place the Trainer, the CLI and the benchmarks score from.

Protocol: leave-one-out splits (`s2gr.data`), every catalog item ranked for each validation or test user
(constrained beam search through `S2GRRecommender`), optionally without the items the user saw before the
target (`seen_items`), and Recall@K / NDCG@K (K = 5, 10) of the one held-out item, as the packaged `evaluate`
module `s2gr/metrics/recommendation` defines them (`per_user_scores` gives them per user, for paired tests).
The most-popular baseline is ranked under the same rules.

- `rank_split` / `evaluate_split`: the model's rankings / metrics on a split's rows (the Trainer's `evaluate`);
- `split_metrics`: S2GR and most-popular on one split (`s2gr evaluate`);
- `final_metrics`: every reported split, with and without seen items (the end of `s2gr train`, `finetune`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from datasets import Dataset, DatasetDict

from .beam_search_s2gr import DEFAULT_NUM_BEAMS
from .errors import InputError
from .metrics.recommendation.recommendation import per_user_scores
from .recommender import DEFAULT_BATCH_SIZE, S2GRRecommender

if TYPE_CHECKING:
    from .data import RecData
    from .training.config import RunConfig

DEFAULT_CUTOFFS = (5, 10)


@lru_cache(maxsize=1)
def _metric():
    from .metrics import load_recommendation_metric

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
    splits: DatasetDict, split: str, top_k: int = max(DEFAULT_CUTOFFS), exclude_seen: bool = True
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


def rank_split(
    model: Any,
    tokenizer: Any,
    rows: Dataset,
    *,
    seen: Sequence[Sequence[str]] | None = None,
    num_beams: int = DEFAULT_NUM_BEAMS,
    top_k: int = max(DEFAULT_CUTOFFS),
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> list[list[str]]:
    """Top-k item ids of ``model`` for each of the validation or test ``rows`` (``history``), best first.

    With ``seen`` (each user's full pre-target item list) seen items are excluded from the rankings.
    """
    return S2GRRecommender(model, tokenizer).recommend(
        rows["history"],
        top_k=top_k,
        num_beams=num_beams,
        exclude=seen,
        batch_size=batch_size,
        progress=progress,
    )


def evaluate_split(
    model: Any,
    tokenizer: Any,
    rows: Dataset,
    *,
    seen: Sequence[Sequence[str]] | None = None,
    num_beams: int = DEFAULT_NUM_BEAMS,
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> dict[str, float]:
    """Recall@K / NDCG@K of ``model`` on validation or test ``rows`` (``history``, ``target``), ranked by
    ``rank_split`` (seen items excluded when ``seen`` is given)."""
    rankings = rank_split(
        model,
        tokenizer,
        rows,
        seen=seen,
        num_beams=num_beams,
        top_k=max(cutoffs),
        batch_size=batch_size,
        progress=progress,
    )
    return ranking_metrics(rankings, rows["target"], cutoffs)


def split_metrics(
    model: Any,
    tokenizer: Any,
    data: RecData,
    split: str,
    *,
    exclude_seen: bool = True,
    num_beams: int = DEFAULT_NUM_BEAMS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Recall@5/10, NDCG@5/10 of S2GR and of the most-popular baseline on one leave-one-out split,
    ranking every item, optionally without the items each user saw before the target."""
    rows = data.splits[split]
    seen = seen_items(data.splits, split) if exclude_seen else None
    popular = most_popular(data.splits, split, top_k=max(DEFAULT_CUTOFFS), exclude_seen=exclude_seen)
    return {
        "s2gr": evaluate_split(
            model, tokenizer, rows, seen=seen, num_beams=num_beams, batch_size=batch_size, progress=progress
        ),
        "most_popular": ranking_metrics(popular, rows["target"]),
    }


def final_metrics(model: Any, tokenizer: Any, data: RecData, config: RunConfig) -> dict[str, Any]:
    """Validation (not under ``refit``) and test metrics with and without seen-item filtering, and the
    most-popular baseline, with the run's beam width and batch size.

    Keys: the split name for the run's ``exclude_seen`` setting, ``{split}_filtered``/``_unfiltered`` for
    the other one.
    """
    metrics: dict[str, Any] = {"s2gr": {}, "most_popular": {}}
    for split in reported_splits(config.refit):
        for exclude in (True, False):
            key = (
                split
                if exclude == config.exclude_seen
                else f"{split}_{'filtered' if exclude else 'unfiltered'}"
            )
            values = split_metrics(
                model,
                tokenizer,
                data,
                split,
                exclude_seen=exclude,
                num_beams=config.num_beams,
                batch_size=config.eval_batch_size,
            )
            for method, result in values.items():
                metrics[method][key] = result
    return metrics


__all__ = [
    "DEFAULT_CUTOFFS",
    "evaluate_split",
    "final_metrics",
    "most_popular",
    "per_user_scores",
    "rank_split",
    "ranking_metrics",
    "reported_splits",
    "seen_items",
    "split_metrics",
    "user_sequence",
]
