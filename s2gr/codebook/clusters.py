"""Coarse clusters of code vectors (docs/method.md §3): the targets of the thinking tokens.

Each level's K code vectors are clustered by k-means into Kc groups; g_l(s) = cluster_of_code[l, s]
and c_{l,k} = cluster_centroids[l, k]. Every code vector counts once, used or not, because the map
must be defined for all K codes of the vocabulary.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from .kmeans import kmeans


def cluster_codes(
    code_vectors: np.ndarray, num_clusters: int, iters: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """code_vectors (L, K, d) -> cluster_of_code (L, K) int64 in [0, Kc), centroids (L, Kc, d) float32."""
    levels, k, _ = code_vectors.shape
    if not 1 <= num_clusters <= k:
        raise InputError(f"num_clusters must be in [1, {k}], got {num_clusters}")
    gen = torch.Generator().manual_seed(seed)
    assignment = np.zeros((levels, k), dtype=np.int64)
    centroids = []
    for level in range(levels):
        cb = torch.as_tensor(np.asarray(code_vectors[level], dtype=np.float32))
        level_centroids, labels = kmeans(cb, num_clusters, iters, gen)
        assignment[level] = labels.numpy()
        centroids.append(level_centroids.numpy())
    return assignment, np.stack(centroids).astype(np.float32)
