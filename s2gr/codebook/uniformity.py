"""Uniformity (repulsion) loss between code vectors of one level (docs/method.md §1, "Uniformity"; the formula is ours).

For the K code vectors e_1..e_K of a level, with d_ij = ||e_i - e_j|| over distinct pairs i != j
and the level's own length scale m = mean_{i != j} d_ij (no gradient through m):

    τ = threshold · m;     L_unif = mean_{i != j} ( relu(τ - d_ij) / τ )²

Only pairs closer than τ contribute, each by at most 1 (two coinciding codes), so the loss lies in
[0, 1] whatever the scale of the level's residuals: deeper levels, whose residuals are much smaller,
are judged by the same rule. Squaring the hinge makes the push vanish smoothly at τ. A tiny epsilon
inside the square root keeps the gradient finite for coinciding codes.
"""

from __future__ import annotations

import torch

EPS = 1e-12


def uniformity_loss(codebook: torch.Tensor, threshold: float) -> torch.Tensor:
    """Repulsion loss of one level's code vectors (K, d); a scalar in [0, 1]."""
    k = codebook.shape[0]
    if k < 2 or threshold <= 0:
        return codebook.sum() * 0.0  # keeps the graph (and device/dtype) for a uniform call site
    norms = codebook.pow(2).sum(1)  # (K,)
    sq = (norms[:, None] + norms[None, :] - 2 * codebook @ codebook.T).clamp_min(0)  # (K, K), one matmul
    off_diag = ~torch.eye(k, dtype=torch.bool, device=codebook.device)
    dist = (sq[off_diag] + EPS).sqrt()  # (K * (K - 1),)
    tau = (threshold * dist.mean()).detach().clamp_min(EPS)
    return (torch.relu(tau - dist) / tau).pow(2).mean()
