"""Tiny real training runs shared by the trainer and distributed tests (ML-100K slice, tiny model)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from s2gr.training.config import RunConfig

MAX_USERS = 40
TINY_CODEBOOK = {"codebook_size": 16, "num_clusters": 4, "epochs": 5, "warmup_epochs": 2}
TINY_MODEL = {"d_model": 32, "num_heads": 2, "d_kv": 16, "d_ff": 64, "encoder_layers": 1, "decoder_layers": 1}
# The paper's cluster-alignment term (off by default) on, so the trainer and distributed tests cover every term.
TINY_MODEL["align_loss_weight"] = 1.0
# No dropout and no in-batch InfoNCE (its negatives are the other rows of a micro-batch / of one process, so it
# depends on how a batch is split): what makes one big batch and its split versions give the same update.
EXACT_MODEL = {**TINY_MODEL, "dropout_rate": 0.0, "infonce_loss_weight": 0.0}
# An optimiser step linear in the gradient: a wrong loss scale shows in the update (AdamW and clipping hide it).
SGD = {
    "optim": "sgd",
    "max_grad_norm": 0.0,
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "lr_scheduler_type": "constant",
}
CHILD = Path(__file__).with_name("train_child.py")
METRIC_KEYS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
# Log entries that depend on the wall clock.
TIMING_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos")


def tiny_config(output_dir: str | os.PathLike, **fields: Any) -> RunConfig:
    """A RunConfig that trains in a few seconds on 2 CPU cores (ML-100K, first MAX_USERS users)."""
    values: dict[str, Any] = dict(
        output_dir=str(output_dir),
        dataset="ml-100k",
        max_users=MAX_USERS,
        codebook=TINY_CODEBOOK,
        model=TINY_MODEL,
        num_beams=5,
        batch_size=8,
        segment_items=8,
        logging_steps=2,
        patience=0,
        eval_batch_size=64,
        epochs=1,
    )
    values.update(fields)
    return RunConfig(**values)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread (as the child processes use), so in-process and subprocess runs compute the same
    floating-point sums; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def child_command(
    config_file: Path, result_prefix: Path, overrides: dict | None = None, *extra: str
) -> list[str]:
    return [
        sys.executable,
        str(CHILD),
        str(config_file),
        str(result_prefix),
        json.dumps(overrides or {}),
        *extra,
    ]


def saved_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint's or a saved model's weights (``model.safetensors``)."""
    return load_file(str(Path(folder) / "model.safetensors"))


def model_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers, as ``save_pretrained`` writes them (tied copies dropped)."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_same_weights(
    left: dict[str, torch.Tensor], right: dict[str, torch.Tensor], atol: float = 0.0, rtol: float = 0.0
) -> None:
    common = sorted(set(left) & set(right))
    # A saved file lacks the tied copies a state_dict has: one side's names must all be on the other.
    assert common and (set(common) == set(left) or set(common) == set(right)), (sorted(left), sorted(right))
    for name in common:
        torch.testing.assert_close(
            left[name], right[name], atol=atol, rtol=rtol, msg=lambda m, n=name: f"{n}: {m}"
        )


def without_timing(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in entry.items() if key not in TIMING_KEYS} for entry in history]


# Source of a function for scripts that run without the s2gr package (trust_remote_code only): the model card's
# package-free path, token tensors in and item indices out (what S2GRRecommender wraps), seen items excluded.
# Needs `torch` imported by the script; returns [[item_id, score], ...] per history.
PACKAGE_FREE_RECOMMEND = """
def package_free_recommend(model, tokenizer, histories, top_k, num_beams):
    batch = tokenizer.encode_histories(histories, max_history_items=model.config.context_items)
    index = {item: position for position, item in enumerate(tokenizer.item_ids)}
    seen = torch.full((len(histories), max(map(len, histories))), -1)
    for row, history in enumerate(histories):
        seen[row, : len(history)] = torch.tensor([index[item] for item in history])
    result = model.recommend(
        batch["input_ids"], batch["attention_mask"], tokenizer.prefix_tables(), top_k=top_k,
        num_beams=num_beams, exclude_items=seen,
    )
    return [
        [[tokenizer.item_ids[item], score] for item, score in zip(items, scores) if item >= 0]
        for items, scores in zip(result.item_indices.tolist(), result.scores.tolist())
    ]
"""
