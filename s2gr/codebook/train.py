"""Training loop of the RQ-VAE: k-means codebook init, Adam, balancing, dead-code reset.

Warm-up: the first `warmup_epochs` train encoder and decoder as a plain autoencoder (the decoder
reads z itself). A random encoder maps inputs to a small, nearly collapsed cloud that the trained
one quickly leaves, so codebooks fitted to it go stale and die; after the warm-up the latent
geometry is the one the RQ-VAE keeps refining.

Codebook initialisation (after the warm-up): the encoder maps up to `kmeans_init_samples` random
items to z; level 1 is k-means of z, level l of the residuals left by levels < l (TIGER's k-means
init, on a large sample rather than one batch so each of the K codes starts on real data).

Randomness (parameter init, sample, shuffling, k-means) comes from `config.seed` only: parameters
are created inside `torch.random.fork_rng` so the global torch RNG of the caller is left untouched,
and everything else uses a private `torch.Generator`.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .balancing import UsageBalancer, reset_dead_codes
from .config import CodebookConfig
from .kmeans import kmeans
from .rqvae import RQVAE


@torch.no_grad()
def init_codebooks(model: RQVAE, x: torch.Tensor, config: CodebookConfig, gen: torch.Generator) -> None:
    """k-means init of every level on residuals of a sample of encoded items, in place."""
    sample = torch.randperm(x.shape[0], generator=gen)[: config.kmeans_init_samples]
    residual = model.encoder(x[sample])  # (S, d)
    for level in range(config.num_levels):
        centroids, labels = kmeans(residual, config.codebook_size, config.kmeans_iters, gen)
        model.codebooks[level] = centroids
        residual = residual - centroids[labels]


def warmup_autoencoder(
    model: RQVAE,
    x: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    config: CodebookConfig,
    gen: torch.Generator,
) -> None:
    """`warmup_epochs` of reconstruction-only training, codebooks untouched."""
    for _ in range(config.warmup_epochs):
        for rows in torch.randperm(x.shape[0], generator=gen).split(config.batch_size):
            loss = (model.decoder(model.encoder(x[rows])) - x[rows]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def _epoch(
    model: RQVAE,
    x: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    balancer: UsageBalancer | None,
    config: CodebookConfig,
    gen: torch.Generator,
) -> tuple[dict[str, float], torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """One pass over x in shuffled batches. Returns mean losses, per-code use (L, K) bool, and the
    last batch's residuals and errors per level (for dead-code reset)."""
    used = torch.zeros(config.num_levels, config.codebook_size, dtype=torch.bool)
    sums = {"loss": 0.0, "recon": 0.0, "quant": 0.0, "uniform": 0.0}
    batches = torch.randperm(x.shape[0], generator=gen).split(config.batch_size)
    for rows in batches:
        offsets = balancer.all_offsets() if balancer is not None else None  # (L, K)
        out = model(x[rows], offsets, config.beta, config.uniformity_weight, config.uniformity_threshold)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        used[torch.arange(config.num_levels)[:, None], out.codes.T] = True
        if balancer is not None:
            for level in range(config.num_levels):
                balancer.update(level, out.codes[:, level], out.errors[level])
        for key in sums:
            sums[key] += float(getattr(out, key).detach()) / len(batches)
    return sums, used, out.residuals, out.errors


def train_rqvae(
    x: torch.Tensor, config: CodebookConfig, progress: bool = True
) -> tuple[RQVAE, UsageBalancer | None, list[dict[str, float]]]:
    """Train on standardised features x (N, E). Returns the model, the balancer (None when
    balancing is off) and per-epoch mean losses (with the count of reset codes)."""
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = RQVAE(
            x.shape[1], config.hidden_dims, config.latent_dim, config.num_levels, config.codebook_size
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)  # codebooks get no step before init
    warmup_autoencoder(model, x, optimizer, config, gen)
    init_codebooks(model, x, config, gen)
    balancer = None
    if config.balance:
        balancer = UsageBalancer(
            config.num_levels,
            config.codebook_size,
            config.balance_strength,
            config.balance_cap,
            config.balance_decay,
        )
    history = []
    bar = tqdm(range(config.epochs), desc="RQ-VAE", disable=not progress, leave=False)
    for _ in bar:
        losses, used, residuals, errors = _epoch(model, x, optimizer, balancer, config, gen)
        if config.reset_dead_codes:
            moved = [
                reset_dead_codes(model.codebooks.data[lv], used[lv], residuals[lv], errors[lv])
                for lv in range(config.num_levels)
            ]
            losses["reset_codes"] = float(sum(moved))
        history.append(losses)
        bar.set_postfix(loss=f"{losses['loss']:.4f}", recon=f"{losses['recon']:.4f}")
    return model, balancer, history
