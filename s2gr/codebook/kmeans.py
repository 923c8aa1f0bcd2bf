"""Small deterministic k-means in torch (codebook init, residual k-means, coarse code clusters).

k-means++ seeding, then Lloyd iterations until the labels stop changing or `iters` runs out. All
randomness comes from the `torch.Generator` passed in, so a seed fixes the result. A cluster left
empty by a Lloyd step is re-seeded on the point that is currently worst served (largest squared
distance to its centroid), so k-means returns k used centroids whenever it has at least k distinct
points. Distances are computed in chunks, so N may be large (memory O(chunk x k)).
"""

from __future__ import annotations

import torch

from ..errors import InputError

CHUNK = 65536  # rows per distance block: 65536 x 256 float32 = 64 MiB


def sq_dists(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (N, k) between rows of x (N, d) and centroids (k, d)."""
    cross = x @ centroids.T  # (N, k)
    return (x.pow(2).sum(1, keepdim=True) - 2 * cross + centroids.pow(2).sum(1)).clamp_min(0)


def nearest(
    x: torch.Tensor, centroids: torch.Tensor, offsets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (N,) of the closest centroid after adding `offsets` (k,) to distances, and that
    centroid's plain squared distance (N,)."""
    labels, dists = [], []
    for start in range(0, x.shape[0], CHUNK):
        d = sq_dists(x[start : start + CHUNK], centroids)  # (chunk, k)
        score = d if offsets is None else d + offsets
        idx = score.argmin(1)
        labels.append(idx)
        dists.append(d.gather(1, idx[:, None]).squeeze(1))
    if not labels:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=x.dtype)
    return torch.cat(labels), torch.cat(dists)


def kmeans_pp_init(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centroid drawn with probability proportional to D². (k, d)"""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=generator)
    chosen = [int(first)]
    closest = sq_dists(x, x[first]).squeeze(1)  # (N,)
    for _ in range(1, k):
        total = closest.sum()
        # All points already covered (fewer distinct points than k): fall back to a uniform draw.
        weights = closest if total > 0 else torch.ones_like(closest)
        idx = int(torch.multinomial(weights.double(), 1, generator=generator))
        chosen.append(idx)
        closest = torch.minimum(closest, sq_dists(x, x[idx : idx + 1]).squeeze(1))
    return x[chosen].clone()


def _update_centroids(x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Mean of each cluster; empty clusters keep their old centroid (re-seeded by the caller)."""
    k = centroids.shape[0]
    sums = torch.zeros_like(centroids).index_add_(0, labels, x)  # (k, d)
    counts = torch.bincount(labels, minlength=k).to(x.dtype)  # (k,)
    updated = sums / counts.clamp_min(1)[:, None]
    return torch.where(counts[:, None] > 0, updated, centroids)


def reseed_empty(
    x: torch.Tensor, labels: torch.Tensor, dists: torch.Tensor, centroids: torch.Tensor
) -> torch.Tensor:
    """Move centroids with no points onto the worst-served points. (k, d)"""
    counts = torch.bincount(labels, minlength=centroids.shape[0])
    empty = torch.nonzero(counts == 0).squeeze(1)
    if empty.numel() == 0:
        return centroids
    worst = torch.argsort(dists, descending=True, stable=True)[: empty.numel()]
    centroids = centroids.clone()
    centroids[empty[: worst.numel()]] = x[worst]
    return centroids


def kmeans(
    x: torch.Tensor, k: int, iters: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster x (N, d) into k clusters. Returns centroids (k, d) and labels (N,)."""
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(f"kmeans needs a non-empty (N, d) matrix, got shape {tuple(x.shape)}")
    x = x.detach()
    centroids = kmeans_pp_init(x, k, generator)
    labels, dists = nearest(x, centroids)
    for _ in range(iters):
        centroids = reseed_empty(x, labels, dists, _update_centroids(x, labels, centroids))
        new_labels, dists = nearest(x, centroids)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return centroids, labels
