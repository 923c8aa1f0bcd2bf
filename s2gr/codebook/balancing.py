"""Usage-balanced code assignment and dead-code reset (docs/method.md §1, "Load balancing"; the paper gives no formula).

Bias. For level l, p_lk is an exponential moving average (decay `balance_decay`) of the share of
training assignments that went to code k, starting from the uniform share 1/K. Before each batch
the nearest-code search at level l minimises

    ||r - e_lk||²  +  s_l · clamp(strength · ln(p_lk · K), -cap, cap)

where s_l is an EMA of the level's mean quantisation error (mean squared distance of a residual to
its chosen code). The bias is 0 for a code used exactly on average, positive (farther) for
overused codes and negative (closer) for rarely used ones; ln makes it symmetric in ratio (2x over-
or under-use move the distance by the same amount) and s_l makes `cap` scale-free: no code can look
more than `cap` typical quantisation errors closer or farther than it is. Like auxiliary-loss-free
expert routing, the bias only changes *which* code is chosen; gradients still use the true
distances, so the codebook and encoder are never pulled towards a wrong target.

Final assignment (`balance_at_assign`, default on). The frozen offsets s_l · clamp(...) from the end
of training are kept in the final assignment and stored in the quantizer, so new items are coded
with the same distances as the catalog and the assignment matches the one the codebook was trained
with; without them the later levels use their codes less evenly. The change per item is bounded:
offsets are at most `cap` quantisation errors.

Dead codes. After every epoch, codes that received no assignment during that epoch are moved onto
the residuals of the worst-quantised items of the epoch's last batch (largest distance to their
chosen code, one item per dead code), the standard RQ-VAE restart. The same restart runs once more
on the whole catalog after training (`repair_dead_codes`), level by level on the final assignment:
a dead code is moved onto the residual of the worst-quantised item whose code keeps at least one
other item, and gets the frozen bias of the level's least-used code (a dead code may be dead only
because training left it a high "overused" bias). Items that follow it can empty another code, so
up to 3 rounds run per level. Moves only lower the movers' quantisation error; encoder, decoder and
the other code vectors are untouched. Codes moved per level are reported (`repaired_codes`).
Both restarts are part of balancing (`reset_dead_codes`, off in the plain ablation).
"""

from __future__ import annotations

import numpy as np
import torch

from .kmeans import nearest

LOG_FLOOR = 1e-12  # keeps ln finite for a code whose share has decayed to 0 (the clamp bounds it anyway)


class UsageBalancer:
    """Running usage shares (L, K) and quantisation-error scales (L,) that define the bias."""

    def __init__(
        self, num_levels: int, codebook_size: int, strength: float, cap: float, decay: float
    ) -> None:
        self.strength, self.cap, self.decay = strength, cap, decay
        self.shares = torch.full((num_levels, codebook_size), 1.0 / codebook_size)  # (L, K)
        self.error_scale = torch.zeros(num_levels)  # (L,) 0 until the first batch: no bias before it

    def offsets(self, level: int) -> torch.Tensor:
        """Additive distance bias of every code of `level`. (K,)"""
        ratio = self.shares[level].clamp_min(LOG_FLOOR) * self.shares.shape[1]
        bias = (self.strength * ratio.log()).clamp(-self.cap, self.cap)
        return self.error_scale[level] * bias

    def all_offsets(self) -> torch.Tensor:
        """Frozen bias of every level, for the quantizer. (L, K)"""
        return torch.stack([self.offsets(level) for level in range(self.shares.shape[0])])

    def update(self, level: int, codes: torch.Tensor, errors: torch.Tensor) -> None:
        """Fold one batch's assignments (B,) and their squared errors (B,) into the running stats."""
        k = self.shares.shape[1]
        batch_share = torch.bincount(codes, minlength=k).float() / max(codes.numel(), 1)
        self.shares[level] = self.decay * self.shares[level] + (1 - self.decay) * batch_share
        batch_error = errors.detach().float().mean()
        first = self.error_scale[level] == 0
        previous = batch_error if first else self.error_scale[level]
        self.error_scale[level] = self.decay * previous + (1 - self.decay) * batch_error


def reset_dead_codes(
    codebook: torch.Tensor, used: torch.Tensor, residuals: torch.Tensor, errors: torch.Tensor
) -> int:
    """Move unused codes of one level onto the worst-quantised residuals, in place.

    codebook: (K, d) code vectors; used: (K,) bool, code received an assignment this epoch;
    residuals: (B, d) inputs of this level in the last batch; errors: (B,) their squared errors.
    Returns how many codes moved.
    """
    dead = torch.nonzero(~used).squeeze(1)
    worst = torch.argsort(errors, descending=True, stable=True)[: dead.numel()]
    dead = dead[: worst.numel()]
    with torch.no_grad():
        codebook[dead] = residuals[worst].to(codebook.dtype)
    return int(dead.numel())


def _movable_items(codes: torch.Tensor, errors: torch.Tensor, k: int) -> torch.Tensor:
    """Items by descending error, minus the last (lowest-error) item of every code. (M,)"""
    order = torch.argsort(errors, descending=True, stable=True).numpy()  # (N,)
    code_in_order = codes.numpy()[order]
    by_code = np.argsort(code_in_order, kind="stable")  # groups codes, keeps error order inside
    sorted_codes = code_in_order[by_code]
    rank = np.empty(len(order), dtype=np.int64)
    rank[by_code] = np.arange(len(order)) - np.searchsorted(sorted_codes, sorted_codes)
    counts = np.bincount(code_in_order, minlength=k)
    return torch.as_tensor(order[rank < counts[code_in_order] - 1])


def _repair_level(
    codebook: torch.Tensor, offsets: torch.Tensor, residual: torch.Tensor
) -> tuple[int, torch.Tensor]:
    """One restart round on one level, in place. Returns codes moved and the new codes (N,)."""
    codes, errors = nearest(residual, codebook, offsets)
    dead = torch.nonzero(torch.bincount(codes, minlength=codebook.shape[0]) == 0).squeeze(1)
    donors = _movable_items(codes, errors, codebook.shape[0])[: dead.numel()]
    if donors.numel() == 0:
        return 0, codes
    dead = dead[: donors.numel()]
    codebook[dead] = residual[donors]
    # A dead code may be dead *because* its frozen bias is high (it was overused while training);
    # restarted, it is an unused code and gets the bias of the least-used code of its level.
    offsets[dead] = offsets.min()
    return int(dead.numel()), nearest(residual, codebook, offsets)[0]


@torch.no_grad()
def repair_dead_codes(
    codebooks: torch.Tensor, offsets: torch.Tensor, latents: torch.Tensor, rounds: int = 3
) -> list[int]:
    """Final dead-code restart on the whole catalog, in place on codebooks (L, K, d) and offsets (L, K).

    latents: (N, d) encoded catalog. Items that follow a restarted code can leave another code empty,
    so each level gets up to `rounds` rounds. Returns the number of codes moved per level.
    """
    moved, residual = [], latents
    for codebook, level_offsets in zip(codebooks, offsets, strict=True):
        total = 0
        for _ in range(rounds):
            count, codes = _repair_level(codebook, level_offsets, residual)
            total += count
            if count == 0:
                break
        moved.append(total)
        residual = residual - codebook[codes]
    return moved
