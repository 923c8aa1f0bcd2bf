"""Residual k-means quantizer (the non-learned ablation, `quantizer="rkmeans"`).

Standardised features are projected on their top `latent_dim` principal axes (so code vectors have
the same (L, K, latent) shape as the RQ-VAE's); level 1 is k-means of the projection z, level l
k-means of the residuals left by levels < l. The balance and uniformity options do not apply: plain
k-means already re-seeds empty clusters. Deterministic given the seed (PCA via `eigh` of the
covariance, with each axis' sign fixed so its largest-magnitude loading is positive).
"""

from __future__ import annotations

import torch

from ..errors import InputError
from .config import CodebookConfig
from .kmeans import kmeans


def pca_axes(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Top-`dim` principal axes (dim, E) of centred x (N, E), with a deterministic sign."""
    if dim > x.shape[1]:
        raise InputError(f"latent_dim {dim} exceeds the feature size {x.shape[1]} for rkmeans")
    cov = (x.double().T @ x.double()) / max(x.shape[0], 1)  # (E, E)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    axes = vectors[:, -dim:].flip(1).T  # (dim, E), largest variance first
    pivot = axes.abs().argmax(1, keepdim=True)
    return (axes * axes.gather(1, pivot).sign()).float()


def fit_residual_kmeans(x: torch.Tensor, config: CodebookConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit on centred standardised features x (N, E). Returns PCA axes (d, E) and codebooks (L, K, d)."""
    gen = torch.Generator().manual_seed(config.seed)
    axes = pca_axes(x, config.latent_dim)
    residual = x @ axes.T  # (N, d)
    codebooks = []
    for _ in range(config.num_levels):
        centroids, labels = kmeans(residual, config.codebook_size, config.kmeans_iters, gen)
        codebooks.append(centroids)
        residual = residual - centroids[labels]
    return axes, torch.stack(codebooks)
