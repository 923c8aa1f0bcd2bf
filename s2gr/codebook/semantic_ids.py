"""Orchestration: embeddings + training histories -> unique Semantic IDs (docs/method.md §1).

1. Features: H_align from co-occurrence propagation (`graph.py`) when `use_graph`, else X; with
   `collab_dim` > 0 the spectral collaborative block is appended (`collaborative.py`).
2. Quantizer: RQ-VAE (`train.py`) or residual k-means (`rkmeans.py`) on standardised features,
   frozen into a `FrozenQuantizer`.
3. Codes: the frozen quantizer assigns every catalog item (the same path `add_items` uses later),
   optionally collisions are reassigned, then the dedup column makes every row unique.
4. Coarse clusters of each level's code vectors (`clusters.py`) and statistics (`stats.py`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .balancing import repair_dead_codes
from .clusters import cluster_codes
from .collaborative import TextToCollab, collaborative_block
from .collisions import colliding_items, dedup_codes, reassign_collisions
from .config import CodebookConfig
from .graph import build_cooccurrence_graph, propagate
from .kmeans import CHUNK
from .quantizer import FrozenQuantizer
from .rkmeans import fit_residual_kmeans
from .stats import collision_stats, level_usage
from .train import train_rqvae

Decoder = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SemanticIDs:
    """Semantic IDs of a catalog and the codebook that produced them.

    codes: (N, L + 1) int64, levels then the dedup code; all rows unique.
    code_vectors: (L, K, latent) float32 code vectors of each level.
    cluster_of_code: (L, K) int64 coarse cluster g_l(s) in [0, Kc).
    cluster_centroids: (L, Kc, latent) float32 centroids c_{l,k}.
    stats: utilisation/entropy/perplexity per level (lists), collision_rate, colliding_items,
        largest_group (before dedup), reassigned_items, train_loss and repaired_codes (per level;
        RQ-VAE only), recon_mse (on standardised features, 1.0 = predicting the mean), dedup_size,
        num_items, build_seconds.
    quantizer: `FrozenQuantizer`; `.assign(embeddings, graph_features=None)` codes new items (from their
        text alone: the collaborative block, if any, is predicted from it).
    config: the `CodebookConfig` that built them, with K and Kc fixed for the catalog.
    """

    codes: np.ndarray
    code_vectors: np.ndarray
    cluster_of_code: np.ndarray
    cluster_centroids: np.ndarray
    stats: dict
    quantizer: FrozenQuantizer
    config: CodebookConfig


def warn_if_degenerate(stats: dict, config: CodebookConfig) -> None:
    """Warn when the codes barely tell items apart: a collision group larger than a code level (K) leaves
    the last, semantics-free dedup step a wider choice than any code step, and the model learns it from
    item identity alone. Real catalogs coded with the defaults stay far below (MovieLens-1M: groups of at
    most 3); an RQ-VAE trained too briefly, or on features without shared structure, collapses to a few
    codes and groups of thousands (benchmarks/RESULTS.md, "Catalog scaling")."""
    if stats["largest_group"] <= config.codebook_size:
        return
    rqvae = config.quantizer == "rqvae"
    if rqvae and stats["recon_mse"] > 0.95:
        advice = (
            "The RQ-VAE reconstructs the features no better than their mean, so its latent collapsed: train "
            "longer (epochs, warmup_epochs) or use quantizer='rkmeans', which cannot collapse."
        )
    else:
        longer = ", train the RQ-VAE longer (epochs) or use quantizer='rkmeans'" if rqvae else ""
        advice = (
            f"Use a larger codebook (codebook_size, num_levels){longer}, or check that the embeddings "
            "differ between items."
        )
    warnings.warn(
        f"Degenerate Semantic IDs: {stats['collision_rate']:.1%} of the {stats['num_items']:,} items share "
        f"their {config.num_levels} codes with another item, in groups of up to {stats['largest_group']:,} "
        f"(more than the {config.codebook_size} codes of a level), which the semantics-free dedup code "
        f"must tell apart. {advice}",
        UserWarning,
        stacklevel=4,  # the caller of build_semantic_ids
    )


def aligned_features(x: np.ndarray, train_sequences: list[np.ndarray], config: CodebookConfig) -> np.ndarray:
    """H_align (N, E) when the graph is on, else X itself."""
    if not config.use_graph:
        return x
    adj = build_cooccurrence_graph(train_sequences, x.shape[0], config.graph_window)
    return propagate(x, adj, config.alpha, config.num_hops)


def quantizer_inputs(
    x: np.ndarray, train_sequences: list[np.ndarray], config: CodebookConfig
) -> tuple[np.ndarray, TextToCollab | None]:
    """The quantizer's inputs (N, E') of the catalog and the map that gives new items theirs (or None)."""
    features = aligned_features(x, train_sequences, config)
    if not config.collab_dim:
        return features, None
    block, text_map = collaborative_block(
        x,
        features,
        train_sequences,
        config.graph_window,
        config.collab_dim,
        config.collab_weight,
        config.seed,
    )
    return np.concatenate([features, block], axis=1), text_map


def _standardizer(features: np.ndarray) -> tuple[torch.Tensor, float]:
    """Per-dimension mean (E,) and one global RMS scale of the centred features."""
    mean = features.mean(0, dtype=np.float64)  # (E,)
    # Var = E[x²] - mean², accumulated in float64 without a centred float64 copy of the catalog.
    variance = float(np.square(features).mean(0, dtype=np.float64).mean() - np.square(mean).mean())
    scale = float(np.sqrt(max(variance, 0.0)))
    return torch.as_tensor(mean, dtype=torch.float32), scale if scale > 0 else 1.0


def fit_quantizer(
    features: np.ndarray, config: CodebookConfig, progress: bool, text_map: TextToCollab | None = None
) -> tuple[FrozenQuantizer, Decoder, dict]:
    """Fit the configured quantizer; returns it frozen (holding `text_map`), a decoder latent (M, d) -> (M, E)
    and training facts for the stats (final training loss, codes moved by the final dead-code repair)."""
    mean, scale = _standardizer(features)
    xs = (torch.as_tensor(features) - mean) / scale  # (N, E)
    if config.quantizer == "rkmeans":
        axes, codebooks = fit_residual_kmeans(xs, config)
        encoder = {"0.weight": axes, "0.bias": torch.zeros(axes.shape[0])}
        offsets = torch.zeros(codebooks.shape[:2])
        dims = [xs.shape[1], axes.shape[0]]
        quantizer = FrozenQuantizer(dims, encoder, codebooks, offsets, mean, scale, text_map)
        return quantizer, lambda z: z @ axes, {}
    model, balancer, history = train_rqvae(xs, config, progress)
    keep_bias = balancer is not None and config.balance_at_assign
    offsets = balancer.all_offsets() if keep_bias else torch.zeros(model.codebooks.shape[:2])
    quantizer = FrozenQuantizer(
        model.encoder_dims, model.encoder.state_dict(), model.codebooks, offsets, mean, scale, text_map
    )
    info = {"train_loss": history[-1]["loss"] if history else float("nan")}
    if config.reset_dead_codes:
        info["repaired_codes"] = repair_dead_codes(
            quantizer.codebooks, quantizer.offsets, quantizer.encode(features)
        )
    return quantizer, model.decoder.requires_grad_(False), info


@torch.no_grad()
def reconstruction_mse(
    quantizer: FrozenQuantizer, decode: Decoder, features: np.ndarray, codes: np.ndarray
) -> float:
    """Mean squared error of decoding the quantised codes, on standardised features."""
    total = 0.0
    for start in range(0, len(codes), CHUNK):
        target = quantizer.standardize(features[start : start + CHUNK])
        recon = decode(quantizer.code_sum(codes[start : start + CHUNK]))
        total += float((recon - target).pow(2).sum())
    return total / max(features.size, 1)


def final_codes(quantizer: FrozenQuantizer, features: np.ndarray, reassign: bool) -> tuple[np.ndarray, int]:
    """Codes (N, L) of the catalog, collisions optionally reassigned, and how many items moved."""
    assigned = quantizer.codes(features)  # (N, L)
    if not reassign:
        return assigned, 0
    movers = colliding_items(assigned)
    codes = reassign_collisions(assigned, quantizer.last_level_scores(features[movers]).numpy())
    return codes, int((codes != assigned).any(1).sum())


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with `num_threads` torch CPU threads (None: unchanged), then restore."""
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_semantic_ids(
    embeddings: np.ndarray,
    train_sequences: list[np.ndarray],
    config: CodebookConfig | None = None,
    progress: bool = True,
) -> SemanticIDs:
    """Build unique Semantic IDs for N items from embeddings (N, E) and training histories
    (arrays of item indices in [0, N); training split only, so evaluation targets cannot leak)."""
    config = config or CodebookConfig()
    with torch_threads(config.num_threads):
        return _build(embeddings, train_sequences, config, progress)


def _build(
    embeddings: np.ndarray, train_sequences: list[np.ndarray], config: CodebookConfig, progress: bool
) -> SemanticIDs:
    start = time.perf_counter()
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(f"embeddings must be a non-empty (N, E) array, got shape {x.shape}")
    config = config.for_catalog(x.shape[0], any(len(np.unique(seq)) > 1 for seq in train_sequences))
    features, text_map = quantizer_inputs(x, train_sequences, config)
    quantizer, decode, info = fit_quantizer(features, config, progress, text_map)
    codes, reassigned = final_codes(quantizer, features, config.reassign_collisions)
    stats: dict = {**level_usage(codes, config.codebook_size), **collision_stats(codes)}
    stats.update(info, reassigned_items=reassigned)
    dedup = dedup_codes(codes)
    code_vectors = quantizer.codebooks.numpy().astype(np.float32)
    cluster_of_code, centroids = cluster_codes(
        code_vectors, config.num_clusters, config.kmeans_iters, config.seed
    )
    stats.update(
        recon_mse=reconstruction_mse(quantizer, decode, features, codes),
        dedup_size=int(dedup.max()) + 1,
        num_items=int(x.shape[0]),
        build_seconds=time.perf_counter() - start,
    )
    warn_if_degenerate(stats, config)
    full = np.concatenate([codes, dedup[:, None]], axis=1).astype(np.int64)
    return SemanticIDs(full, code_vectors, cluster_of_code, centroids, stats, quantizer, config)
