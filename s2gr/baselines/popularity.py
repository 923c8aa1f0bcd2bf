"""Most-popular: items ranked by their training count, the floor every recommender must clear."""

from __future__ import annotations

from ..data import RecData
from ..evaluation import DEFAULT_CUTOFFS, most_popular, ranking_metrics, reported_splits


def most_popular_metrics(data: RecData, exclude_seen: bool = True) -> dict[str, dict[str, float]]:
    """Validation and test Recall/NDCG of most-popular (keys as `train_sasrec`'s: the split for `exclude_seen`,
    `{split}_filtered`/`_unfiltered` for the other setting)."""
    metrics = {}
    for split in reported_splits(refit=False):
        for exclude in (exclude_seen, not exclude_seen):
            key = split if exclude == exclude_seen else f"{split}_{'filtered' if exclude else 'unfiltered'}"
            rankings = most_popular(data.splits, split, top_k=max(DEFAULT_CUTOFFS), exclude_seen=exclude)
            metrics[key] = ranking_metrics(rankings, data.splits[split]["target"])
    return metrics
