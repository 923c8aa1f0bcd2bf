"""Batched constrained recommendation over a leave-one-out split, and its Recall/NDCG."""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset

from ..tokenization_s2gr import S2GRTokenizer
from .evaluation import DEFAULT_CUTOFFS, ranking_metrics


def recommend_items(
    model,
    tokenizer: S2GRTokenizer,
    histories: Sequence[Sequence[str]],
    *,
    top_k: int = 10,
    num_beams: int = 20,
    exclude: Sequence[Sequence[str]] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> list[list[str]]:
    """Ranked item ids (best first) for each history; ``exclude[i]`` items are never returned to user i.

    The work is ``S2GRForGenerativeRecommendation.recommend_items``: it ships with every checkpoint, so the
    Hub's ``trust_remote_code`` users and this package rank items the same way.
    """
    return model.recommend_items(
        tokenizer,
        histories,
        top_k=top_k,
        num_beams=num_beams,
        exclude=exclude,
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
    """Recall@K / NDCG@K of ``model`` on validation or test ``rows`` (``history``, ``target``).

    With ``seen`` (each user's full pre-target item list) seen items are excluded from the rankings.
    """
    rankings = recommend_items(
        model,
        tokenizer,
        rows["history"],
        top_k=max(cutoffs),
        num_beams=num_beams,
        exclude=seen,
        batch_size=batch_size,
        progress=progress,
    )
    return ranking_metrics(rankings, rows["target"], cutoffs)
