"""Batched constrained recommendation over a leave-one-out split, and its Recall/NDCG."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from ..tokenization_s2gr import S2GRTokenizer
from .evaluation import DEFAULT_CUTOFFS, ranking_metrics


@torch.no_grad()
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
    """Ranked item ids (best first) for each history; ``exclude[i]`` items are never returned to user i."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    tables = tokenizer.prefix_tables(device)
    index = {item: position for position, item in enumerate(tokenizer.item_ids)}
    rankings: list[list[str]] = []
    starts = range(0, len(histories), batch_size)
    for start in tqdm(starts, desc="recommending", disable=not progress):
        batch = tokenizer.encode_histories(list(histories[start : start + batch_size]), return_tensors="pt")
        excluded = None
        if exclude is not None:
            excluded = _index_matrix(
                [[index[item] for item in row] for row in exclude[start : start + batch_size]]
            )
            excluded = excluded.to(device)
        result = model.recommend(
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            prefix_tables=tables,
            top_k=top_k,
            num_beams=num_beams,
            exclude_items=excluded,
        )
        for row in result.item_indices.tolist():
            rankings.append([tokenizer.item_ids[item] for item in row if item >= 0])
    model.train(was_training)
    return rankings


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


def _index_matrix(rows: list[list[int]]) -> torch.Tensor:
    """Ragged lists → (B, H) long tensor padded with -1."""
    width = max((len(row) for row in rows), default=0)
    matrix = torch.full((len(rows), max(width, 1)), -1, dtype=torch.long)
    for position, row in enumerate(rows):
        matrix[position, : len(row)] = torch.tensor(row, dtype=torch.long)
    return matrix
