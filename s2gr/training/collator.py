"""Data collators built from the tokenizer: item-id rows → the tensors the model's forward takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..tokenization_s2gr import S2GRTokenizer


@dataclass
class SegmentCollator:
    """Fast mode: rows ``item_ids`` + ``first_target`` → ``sequence_codes`` (B, n, L+1),
    ``sequence_mask`` (B, n) and ``target_mask`` (B, n) (real items at or after ``first_target``)."""

    tokenizer: S2GRTokenizer

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer.encode_sequences([row["item_ids"] for row in rows], return_tensors="pt")
        positions = torch.arange(batch["sequence_mask"].shape[1])  # (n,)
        first = torch.tensor([row["first_target"] for row in rows])[:, None]  # (B, 1)
        target_mask = batch["sequence_mask"].bool() & (positions[None, :] >= first)
        return {
            "sequence_codes": batch["sequence_codes"],
            "sequence_mask": batch["sequence_mask"],
            "target_mask": target_mask,
        }


@dataclass
class HistoryCollator:
    """Sliding-window mode (and evaluation): rows ``history`` + ``target`` → ``input_ids`` (B, S),
    ``attention_mask`` (B, S) and decoder ``labels`` with the thinking placeholders injected."""

    tokenizer: S2GRTokenizer

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer.encode_histories(
            [row["history"] for row in rows], targets=[row["target"] for row in rows], return_tensors="pt"
        )
        return dict(batch)
