"""RQ-VAE (TIGER-style residual-quantised autoencoder) used by the CoBa codebook.

Encoder MLP  E -> 512 -> 256 -> 128 -> latent (ReLU between layers, none on the latent), decoder
mirrored. The latent z is quantised by L levels of K codes: r_1 = z, level l picks
c_l = argmin_k ||r_l - e_lk||² + offset_lk (offsets from `balancing.py`, zero when off) and
r_{l+1} = r_l - e_{l,c_l}. The decoder sees the straight-through estimate z + sg(Σ_l e_l - z), so
the reconstruction gradient reaches the encoder unchanged.

Loss (means over the batch):
    L = ||x - x̂||² / E                                        (reconstruction, per input dim)
      + Σ_l ( ||sg(r_l) - e_l||² + β ||r_l - sg(e_l)||² ) / d   (codebook + commitment, per latent dim)
      + w_unif Σ_l L_unif(E_l)                                  (`uniformity.py`)
The residual passed to level l+1 uses sg(e_l), so each codebook is moved only by its own level's
codebook term and the encoder by the commitment terms and the reconstruction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

from .kmeans import nearest
from .uniformity import uniformity_loss


def mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers through `dims` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(pairwise(dims)):
        if i > 0:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


@dataclass
class RQVAEOutput:
    """One forward pass: total loss, its parts, and per-level assignment data for balancing."""

    loss: torch.Tensor
    recon: torch.Tensor  # scalar reconstruction MSE
    quant: torch.Tensor  # scalar codebook + commitment loss
    uniform: torch.Tensor  # scalar weighted uniformity loss
    codes: torch.Tensor  # (B, L)
    residuals: list[torch.Tensor]  # L x (B, d), detached inputs of each level
    errors: list[torch.Tensor]  # L x (B,), squared distance to the chosen code


class RQVAE(nn.Module):
    """Encoder, decoder and L codebooks of K latent code vectors."""

    def __init__(
        self, input_dim: int, hidden_dims: Sequence[int], latent_dim: int, num_levels: int, codebook_size: int
    ) -> None:
        super().__init__()
        self.encoder_dims = [input_dim, *hidden_dims, latent_dim]
        self.encoder = mlp(self.encoder_dims)
        self.decoder = mlp(self.encoder_dims[::-1])
        self.codebooks = nn.Parameter(torch.zeros(num_levels, codebook_size, latent_dim))  # (L, K, d)

    def quantize(
        self, z: torch.Tensor, offsets: torch.Tensor | None, beta: float
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Residual quantisation of z (B, d): codes (B, L), Σ e_l (B, d), residuals, errors, loss."""
        residual, total = z, torch.zeros_like(z)
        codes, residuals, errors = [], [], []
        loss = z.new_zeros(())
        for level, codebook in enumerate(self.codebooks):
            level_offsets = None if offsets is None else offsets[level]
            idx, err = nearest(residual.detach(), codebook.detach(), level_offsets)
            # One-hot matmul instead of codebook[idx]: the backward of indexing accumulates with
            # a nondeterministic parallel scatter on CPU, the matmul is reproducible.
            chosen = F.one_hot(idx, codebook.shape[0]).to(codebook.dtype) @ codebook  # (B, d)
            loss = loss + (residual.detach() - chosen).pow(2).mean()
            loss = loss + beta * (residual - chosen.detach()).pow(2).mean()
            codes.append(idx)
            residuals.append(residual.detach())
            errors.append(err)
            total = total + chosen.detach()
            residual = residual - chosen.detach()
        return torch.stack(codes, 1), total, residuals, errors, loss

    def forward(
        self,
        x: torch.Tensor,
        offsets: torch.Tensor | None = None,
        beta: float = 0.25,
        uniformity_weight: float = 0.0,
        uniformity_threshold: float = 0.5,
    ) -> RQVAEOutput:
        """Loss on a batch x (B, E); offsets (L, K) bias the code choice only."""
        z = self.encoder(x)  # (B, d)
        codes, total, residuals, errors, quant = self.quantize(z, offsets, beta)
        z_st = z + (total - z).detach()  # straight-through: forward Σ e_l, backward identity
        recon = (self.decoder(z_st) - x).pow(2).mean()
        uniform = x.new_zeros(())
        if uniformity_weight > 0:
            levels = [uniformity_loss(cb, uniformity_threshold) for cb in self.codebooks]
            uniform = uniformity_weight * torch.stack(levels).sum()
        return RQVAEOutput(recon + quant + uniform, recon, quant, uniform, codes, residuals, errors)
