"""Catalog → Semantic IDs → tokenizer: the step every training run and ``s2gr build-codebook`` share."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .codebook import CodebookConfig, SemanticIDs, build_semantic_ids, format_stats_table, plot_code_usage
from .data import DEFAULT_ENCODER, RecData, embed_items
from .errors import InputError
from .tokenization_s2gr import S2GRTokenizer

CODEBOOK_STATS_FILE = "codebook_stats.json"
CODE_USAGE_PLOT = "code_usage.png"


@dataclass
class Catalog:
    """A built catalog: the tokenizer (item ↔ SID map, clusters, tables) and how it was made."""

    tokenizer: S2GRTokenizer
    semantic_ids: SemanticIDs
    embeddings: np.ndarray  # (N, E), aligned with the tokenizer's item order

    @property
    def stats(self) -> dict:
        return self.semantic_ids.stats


def build_catalog(
    data: RecData,
    codebook: CodebookConfig | None = None,
    *,
    num_thinking: int | None = None,
    encoder: str = DEFAULT_ENCODER,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    embeddings: np.ndarray | None = None,
    sequences: Sequence[Sequence[str]] | None = None,
) -> Catalog:
    """Embed the items, build their Semantic IDs from the training histories only, wrap a tokenizer.

    ``embeddings``: precomputed ``(N, E)`` rows aligned with ``data.items`` (skips the encoder; e.g. rows of a
    larger catalog's embeddings, as each item's vector depends on its own text only). ``sequences``: the
    item-id sequences the co-occurrence graph is built from, when not the ``train`` split (a refit's)."""
    codebook = codebook or CodebookConfig()
    if embeddings is None:
        embeddings = embed_items(data.items, encoder, cache_dir=cache_dir, progress=progress)
    elif len(embeddings) != len(data.items):
        raise InputError(f"embeddings have {len(embeddings)} rows for {len(data.items)} items.")
    indexed = [np.asarray(sequence, dtype=np.int64) for sequence in data.train_sequences(sequences)]
    semantic_ids = build_semantic_ids(embeddings, indexed, codebook, progress=progress)
    tokenizer = S2GRTokenizer.from_semantic_ids(
        data.item_ids, semantic_ids, num_thinking=num_thinking, max_history_items=data.max_history
    )
    return Catalog(tokenizer, semantic_ids, embeddings)


def save_catalog(catalog: Catalog, folder: str | os.PathLike) -> Path:
    """Write the tokenizer, the codebook statistics (JSON, with the config that built it) and the
    code-usage plot."""
    folder = Path(folder)
    catalog.tokenizer.save_pretrained(folder)
    config = catalog.semantic_ids.config
    stats = {"config": asdict(config), "stats": catalog.stats}
    (folder / CODEBOOK_STATS_FILE).write_text(json.dumps(stats, indent=2, default=_jsonable))
    plot_code_usage(catalog.semantic_ids.codes[:, :-1], config.codebook_size, folder / CODE_USAGE_PLOT)
    return folder


def describe_catalog(catalog: Catalog) -> str:
    return format_stats_table(catalog.stats)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
