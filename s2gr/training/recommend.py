"""Batched constrained recommendation over a leave-one-out split, and its Recall/NDCG."""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset

from ..tokenization_s2gr import S2GRTokenizer
from .evaluation import DEFAULT_CUTOFFS, ranking_metrics


def evaluate_split(
    model,
    tokenizer: S2GRTokenizer,
    rows: Dataset,
    *,
    seen: Sequence[Sequence[str]] | None = None,
    num_beams: int = 20,
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, float]:
    """Recall@K / NDCG@K of ``model`` on validation or test ``rows`` (``history``, ``target``).

    With ``seen`` (each user's full pre-target item list) seen items are excluded from the rankings.
    """
    rankings = model.recommend_items(  # ships with every checkpoint: Hub users rank the same way
        tokenizer,
        rows["history"],
        top_k=max(cutoffs),
        num_beams=num_beams,
        exclude=seen,
        batch_size=batch_size,
        progress=progress,
    )
    return ranking_metrics(rankings, rows["target"], cutoffs)
