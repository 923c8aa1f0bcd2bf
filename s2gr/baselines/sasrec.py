"""SASRec (Kang & McAuley, 2018), compact: the ID-based sequential baseline (``s2gr baseline sasrec``,
``benchmarks/quality.py``).

As the issue fixes it: 2 self-attention blocks, hidden 64, trained with full-softmax cross-entropy over
every item at every position of each user's training sequence (as in HSTU's and "gSASRec"'s strong SASRec
baselines), not with the original one-negative binary loss. Same split, same history length and the same
evaluation (full ranking, seen items optionally excluded, Recall/NDCG through s2gr's ``evaluate`` module)
as the generative models.

Training rows: each user's training sequence is cut into chunks of at most ``max_history + 1`` items
(consecutive chunks share one item), so every training target is predicted exactly once per epoch from at
most ``max_history`` items of history, right-aligned as at evaluation time (left padding, the last history
item at the last position). With ``recent_targets`` only each user's last that many items are targets: the
sequence is cut to its last ``recent_targets + 1`` items before chunking.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data import RecData
from ..errors import InputError
from ..evaluation import ranking_metrics, reported_splits, seen_items
from ..training.samples import check_recent_targets, first_target, training_split


@dataclass
class SASRecConfig:
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    patience: int = 10  # epochs without validation NDCG@10 gain before stopping
    time_budget_minutes: float | None = None
    recent_targets: int | None = None  # train on each user's last that many items only (None = all)
    refit: bool = False  # train on the validation items too for exactly `epochs`, final weights, test only
    seed: int = 0
    max_history: int | None = None  # history items read (None: the data's histories, ``data.max_history``)

    def __post_init__(self) -> None:
        for name in ("hidden", "blocks", "heads", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"SASRec {name} must be ≥ 1, got {getattr(self, name)}.")
        check_recent_targets(self.recent_targets)


class SASRec(nn.Module):
    """Item + learned position embeddings → pre-norm causal transformer blocks → dot product with the item
    embeddings (tied output layer)."""

    def __init__(self, num_items: int, max_len: int, config: SASRecConfig) -> None:
        super().__init__()
        self.item = nn.Embedding(num_items + 1, config.hidden, padding_idx=0)  # row 0: padding
        self.position = nn.Embedding(max_len, config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        block = nn.TransformerEncoderLayer(
            config.hidden,
            config.heads,
            dim_feedforward=config.hidden,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(block, config.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.hidden)
        self.register_buffer("causal", torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), 1))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """``items`` (B, T) of ids (0 = padding, left) → item logits (B, T, N) at every position."""
        length = items.shape[1]
        positions = torch.arange(length, device=items.device)
        hidden = self.dropout(
            self.item(items) * math.sqrt(self.item.embedding_dim) + self.position(positions)
        )
        # Padding keys are masked; a fully padded row's queries still see themselves through the causal
        # diagonal (their outputs are never used), so no row is all -inf.
        padding = items == 0
        hidden = self.blocks(hidden, mask=self.causal[:length, :length], src_key_padding_mask=padding)
        return self.norm(hidden) @ self.item.weight[1:].T  # (B, T, N)


def training_chunks(
    sequences: Sequence[Sequence[int]], max_history: int, recent_targets: int | None = None
) -> torch.Tensor:
    """(R, max_history + 1) left-padded chunks that cover every training target (or each user's last
    ``recent_targets``) once."""
    check_recent_targets(recent_targets)
    chunks = []
    for full in sequences:
        sequence = full[first_target(len(full), recent_targets) - 1 :]
        for end in range(len(sequence), 1, -max_history):
            chunk = list(sequence[max(0, end - max_history - 1) : end])
            chunks.append([0] * (max_history + 1 - len(chunk)) + chunk)
    return torch.tensor(chunks, dtype=torch.long)


def encode_histories(
    histories: Sequence[Sequence[str]], index: dict[str, int], max_history: int
) -> torch.Tensor:
    rows = []
    for history in histories:
        ids = [index[item] for item in history][-max_history:]
        rows.append([0] * (max_history - len(ids)) + ids)
    return torch.tensor(rows, dtype=torch.long)


@torch.no_grad()
def rank(
    model: SASRec,
    histories: torch.Tensor,
    seen: Sequence[Sequence[int]] | None,
    items: Sequence[str],
    top_k: int = 10,
    batch_size: int = 512,
) -> list[list[str]]:
    """Top-k item ids after each history, every item scored, seen items (1-based ids) excluded."""
    model.eval()
    device = next(model.parameters()).device
    rankings = []
    for start in range(0, len(histories), batch_size):
        scores = model(histories[start : start + batch_size].to(device))[:, -1]  # (B, N)
        if seen is not None:
            for row, user_seen in enumerate(seen[start : start + batch_size]):
                scores[row, [i - 1 for i in user_seen]] = -math.inf
        top = scores.topk(top_k, dim=-1).indices.tolist()
        rankings.extend([items[i] for i in row] for row in top)
    return rankings


@dataclass
class SASRecResult:
    # split → metrics: "validation"/"test" with the exclude_seen setting, "{split}_filtered"/"_unfiltered"
    # with the other one (the keys of s2gr's run metrics)
    metrics: dict[str, dict[str, float]]
    history: list[dict[str, Any]] = field(default_factory=list)  # per-epoch loss and validation NDCG@10
    seconds: float = 0.0
    best_epoch: int = 0


def train_sasrec(data: RecData, config: SASRecConfig, exclude_seen: bool = True) -> SASRecResult:
    """Train on ``data``'s training split, pick the epoch with the best validation NDCG@10, read test once
    (under ``config.refit``: train on the validation items too for ``config.epochs``, read test once)."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    items = list(data.item_index())
    index = {item: position + 1 for position, item in enumerate(items)}
    splits, max_history = data.splits, config.max_history or data.max_history
    sequences = [[index[i] for i in seq] for seq in training_split(splits, config.refit)["item_ids"]]
    chunks = training_chunks(sequences, max_history, config.recent_targets)
    model = SASRec(len(items), max_history, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))

    def evaluate(split: str, exclude: bool = exclude_seen) -> dict[str, float]:
        seen = [[index[i] for i in s] for s in seen_items(splits, split)] if exclude else None
        histories = encode_histories(splits[split]["history"], index, max_history)
        return ranking_metrics(rank(model, histories, seen, items), splits[split]["target"])

    best, best_state, best_epoch, history = -1.0, None, 0, []
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, count = 0.0, 0
        for batch in chunks[torch.randperm(len(chunks), generator=generator)].split(config.batch_size):
            batch = batch.to(device)
            inputs, targets = batch[:, :-1], batch[:, 1:]
            logits = model(inputs)  # (B, H, N)
            mask = (inputs != 0) & (targets != 0)
            loss = nn.functional.cross_entropy(logits[mask], targets[mask] - 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * int(mask.sum()), count + int(mask.sum())
        out_of_time = (
            config.time_budget_minutes is not None
            and time.perf_counter() - started >= config.time_budget_minutes * 60
        )
        minutes = (time.perf_counter() - started) / 60
        if config.refit:  # validation is training data: no evaluation, the final weights
            history.append({"epoch": epoch, "loss": total / count})
            print(f"SASRec refit epoch {epoch}: loss {total / count:.4f}, {minutes:.1f} min", flush=True)
            best_epoch = epoch  # the weights kept are the last; best_state stays None
            if out_of_time:
                break
            continue
        validation = evaluate("validation")
        history.append({"epoch": epoch, "loss": total / count, "eval_ndcg@10": validation["ndcg@10"]})
        print(  # progress, as the Trainer's log lines give it for the generative runs
            f"SASRec epoch {epoch}: loss {total / count:.4f}, validation NDCG@10 "
            f"{validation['ndcg@10']:.4f}, {minutes:.1f} min",
            flush=True,
        )
        if validation["ndcg@10"] > best:
            best, best_state, best_epoch = validation["ndcg@10"], copy.deepcopy(model.state_dict()), epoch
        if epoch - best_epoch >= config.patience or out_of_time:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    metrics = {}
    for split in reported_splits(config.refit):
        metrics[split] = evaluate(split)
        metrics[f"{split}_{'unfiltered' if exclude_seen else 'filtered'}"] = evaluate(split, not exclude_seen)
    return SASRecResult(metrics, history, time.perf_counter() - started, best_epoch)
