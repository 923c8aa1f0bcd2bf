"""Collaborative item embeddings fused with the content features before quantisation (docs/method.md §1.4).

MovieLens item text (title, year, genres) is a weak content signal, and CoBa's propagation only mixes
neighbours' *content* into an item's feature. This module adds behaviour itself as extra dimensions, in the
spirit of LETTER's collaborative regulariser and GPTRec's SVD tokens:

Spectral embedding. With A the raw co-occurrence counts of the training histories (`graph.py`, no
self-loops) and Â = D^-1/2 A D^-1/2, the eigenvectors of Â's largest eigenvalues are the smoothest
signals on the item graph (spectral clustering; Â's spectrum lies in [-1, 1]). The top one is the
trivial ∝ √degree vector and is dropped; the next `C` (`collab_dim`), scaled by their eigenvalues and
then each row L2-normalised (Ng, Jordan and Weiss, 2001), give S (N, C): items consumed with the same
items point the same way. Eigenvectors are unique only up to sign: each column is flipped so its
largest-magnitude entry is positive, and ARPACK starts from a seeded vector, so the same graph and
seed give the same S.

New items, from text alone. An item with no training co-occurrence has an all-zero row of Â and no
spectral coordinates. A ridge regression X → S, fitted on the items that have co-occurrences, predicts
its row from its content embedding alone (`TextToCollab`); the catalog's own isolated items use the
same prediction, so a new item and an unseen catalog item are coded alike. The map is stored with the
frozen quantizer (`FrozenQuantizer.item_features`), so `add_items` and fine-tuning need nothing else.

Fusion. F = [H, w · s · S], with H the content features (H_align with the graph on), w = `collab_weight`
and s the ratio of H's to S's root-mean-square centred norm: at w = 1 each block holds half of the
features' variance, which is what the quantizer's single global standardisation then sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from ..errors import InputError
from .graph import cooccurrence_counts, normalize_adjacency

# Ridge penalty of the text -> collaborative map, relative to the mean variance of a content dimension.
RIDGE = 1e-2
NEEDS_COOCCURRENCES = (
    "the collaborative codes need at least 2 items with training co-occurrences; "
    "set codebook.collab_dim=0 to code items from their text alone"
)


def spectral_embedding(adj: sp.spmatrix, dim: int, seed: int = 0) -> np.ndarray:
    """S (N, dim) float32 from Â (N, N): the eigenvectors of the largest non-trivial eigenvalues times
    those eigenvalues, rows L2-normalised; rows of isolated items stay zero."""
    num_items = adj.shape[0]
    if dim < 1:
        raise InputError(f"collab_dim must be >= 1, got {dim}")
    if dim + 2 > num_items:
        raise InputError(
            f"collab_dim ({dim}) must be at most the number of items minus 2 ({num_items - 2}); "
            "leave it unset to size it to the catalog"
        )
    start = np.random.default_rng(seed).standard_normal(num_items)
    values, vectors = eigsh(sp.csr_matrix(adj, dtype=np.float64), k=dim + 1, which="LA", v0=start)
    order = np.argsort(-values)[1:]  # descending; the first is the trivial √degree vector
    embedding = vectors[:, order] * values[order]  # (N, dim)
    peak = np.abs(embedding).argmax(0)  # (dim,) row of each column's largest magnitude
    embedding *= np.sign(embedding[peak, np.arange(dim)])  # a fixed sign per column
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)  # (N, 1)
    np.divide(embedding, norms, out=embedding, where=norms > 0)
    return embedding.astype(np.float32)


@dataclass
class TextToCollab:
    """Ridge map from content embeddings (M, E) to collaborative coordinates (M, C), already scaled
    for fusion: `predict(x) = x @ weight + bias`."""

    weight: np.ndarray  # (E, C)
    bias: np.ndarray  # (C,)

    @classmethod
    def fit(cls, x: np.ndarray, targets: np.ndarray) -> TextToCollab:
        """Least squares with a ridge penalty RIDGE × (mean variance of a column of x)."""
        if len(x) < 2:
            raise InputError(NEEDS_COOCCURRENCES)
        x = np.asarray(x, dtype=np.float64)
        mean_x, mean_t = x.mean(0), targets.mean(0, dtype=np.float64)
        centred = x - mean_x
        gram = centred.T @ centred  # (E, E)
        penalty = RIDGE * np.trace(gram) / gram.shape[0]
        weight = np.linalg.solve(gram + penalty * np.eye(gram.shape[0]), centred.T @ (targets - mean_t))
        return cls(weight.astype(np.float32), (mean_t - mean_x @ weight).astype(np.float32))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) @ self.weight + self.bias).astype(np.float32)

    def scaled(self, factor: float) -> TextToCollab:
        return TextToCollab(self.weight * factor, self.bias * factor)


def _rms_norm(features: np.ndarray) -> float:
    """Root-mean-square norm of the centred rows."""
    centred = features - features.mean(0, dtype=np.float64)
    return float(np.sqrt(np.square(centred).sum(1).mean()))


def collaborative_block(
    x: np.ndarray,
    content: np.ndarray,
    train_sequences: list[np.ndarray],
    window: int,
    dim: int,
    weight: float,
    seed: int = 0,
) -> tuple[np.ndarray, TextToCollab]:
    """The scaled collaborative block (N, C) to append to `content` (N, E'), and the map that gives the
    same block for a new item from its content embedding x alone.

    x: (N, E) content embeddings (the map's input); content: the features the block is fused with.
    """
    adj = normalize_adjacency(cooccurrence_counts(train_sequences, x.shape[0], window), self_loops=False)
    linked = np.asarray(adj.getnnz(axis=1) > 0)  # (N,) items with training co-occurrences
    if linked.sum() < 2:  # checked before ARPACK, which fails on an empty graph with no useful message
        raise InputError(NEEDS_COOCCURRENCES)
    spectral = spectral_embedding(adj, dim, seed)  # (N, C)
    text_map = TextToCollab.fit(x[linked], spectral[linked])
    spectral[~linked] = text_map.predict(x[~linked])
    scale = weight * _rms_norm(content) / max(_rms_norm(spectral), 1e-12)
    return spectral * np.float32(scale), text_map.scaled(scale)
