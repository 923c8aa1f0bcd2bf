"""Batched constrained recommendation over a leave-one-out split, and its Recall/NDCG."""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset

from ..recommender import S2GRRecommender
from ..tokenization_s2gr import S2GRTokenizer
from .evaluation import DEFAULT_CUTOFFS, ranking_metrics


def rank_split(
    model,
    tokenizer: S2GRTokenizer,
    rows: Dataset,
    *,
    seen: Sequence[Sequence[str]] | None = None,
    num_beams: int = 20,
    top_k: int = max(DEFAULT_CUTOFFS),
    batch_size: int = 256,
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
