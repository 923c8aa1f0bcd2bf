"""Configuration of the CoBa codebook (docs/method.md §1).

Every knob of the semantic-ID pipeline lives in `CodebookConfig`; `CodebookConfig.plain()` and
`CodebookConfig.rkmeans()` give the ablation baselines. Defaults are the project's CoBa setting:
3 levels of codes sized to the catalog (256 for catalogs of 12k items and more) on a 32-dim latent,
co-occurrence propagation, spectral collaborative coordinates (catalogs of 128 items and more),
usage-balanced assignment, dead-code reset and a code-vector repulsion loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..configuration_s2gr import num_clusters_for
from ..errors import InputError

QUANTIZERS = ("rqvae", "rkmeans")
# TIGER's 256 codes per level on Amazon Beauty (12,101 items) leave about 47 items per first-level code.
ITEMS_PER_FIRST_CODE = 48
MIN_CODEBOOK_SIZE, MAX_CODEBOOK_SIZE = 16, 256
# Collaborative coordinates by default, and the smallest catalog that gets them: 4 items per coordinate
# (the spectral embedding needs C + 2 items; far fewer than 4 per coordinate leaves mostly noise).
DEFAULT_COLLAB_DIM, ITEMS_PER_COLLAB_DIM = 32, 4


def codebook_size_for(num_items: int) -> int:
    """K for a catalog of ``num_items``: the power of two nearest N / 48, within [16, 256].

    With K fixed at 256, a small catalog spreads over the first level so thinly (6.6 items per code on
    MovieLens-100K) that the first code is almost an item id: nothing is shared between related items
    and the decoder must learn a 256-way choice from few targets per code. Keeping TIGER's ratio of
    about 48 items per first-level code gives 32 codes on MovieLens-100K (1,682 items), 64 on
    MovieLens-1M (3,416) and TIGER's 256 from about 12k items on.
    """
    if num_items < 1:
        raise InputError(f"num_items must be >= 1, got {num_items}")
    nearest = 2 ** round(math.log2(max(num_items / ITEMS_PER_FIRST_CODE, 1.0)))
    return int(min(MAX_CODEBOOK_SIZE, max(MIN_CODEBOOK_SIZE, nearest)))


def collab_dim_for(num_items: int) -> int:
    """C for a catalog of ``num_items``: 32 from 128 items on, else 0 (content features only)."""
    return DEFAULT_COLLAB_DIM if num_items >= ITEMS_PER_COLLAB_DIM * DEFAULT_COLLAB_DIM else 0


@dataclass
class CodebookConfig:
    """Hyper-parameters of `build_semantic_ids`.

    Quantizer:
        num_levels: L, number of residual code levels.
        codebook_size: K, codes per level; None (default): sized to the catalog by
            `codebook_size_for` (32 on MovieLens-100K, 64 on MovieLens-1M, 256 from ~12k items).
        latent_dim: size of the quantised latent (RQ-VAE bottleneck, or the PCA size for rkmeans).
        hidden_dims: encoder MLP widths between input and latent (the decoder mirrors them).
        quantizer: "rqvae" (learned RQ-VAE) or "rkmeans" (residual k-means on a PCA projection of
            the inputs, nothing learned by gradient; ignores the balance and uniformity knobs).
    Collaborative propagation (METHOD 2.1-2.2):
        use_graph: encode H_align (content propagated over the item co-occurrence graph) instead of X.
        graph_window: two items co-occur when at most this many positions apart in a training history.
        alpha: restart weight of the propagation (the paper does not publish it). With the defaults
            (alpha 0.3, 3 hops) H_align = 0.58 X + 0.26 ÂX + 0.12 Â²X + 0.05 Â³X: content keeps the
            majority, so popular but unrelated co-watched items do not merge codes, and behaviour
            contributes about 40 % of the feature, mostly from 1-hop neighbours.
        num_hops: Kg, the last propagation step kept in the sum.
    Collaborative codes (`collaborative.py`):
        collab_dim: C, spectral coordinates of the co-occurrence graph appended to the content features
            before quantisation (0: off, the content features alone); None (default): `collab_dim_for`,
            32 from 128 items on. Chosen on validation of MovieLens-1M and an unseen MovieLens log, level
            on MovieLens-100K (benchmarks/RESULTS.md). New items get theirs predicted from their text by a
            ridge map stored with the quantizer.
        collab_weight: size of the collaborative block relative to the content block (1: equal variance).
    Load balancing (module docstring of `balancing.py`):
        balance: add the capped usage bias to assignment distances during training.
        balance_strength: slope of the bias in log usage ratio.
        balance_cap: bias clamp, in units of the level's mean quantisation error.
        balance_decay: EMA decay (per batch) of the per-code usage shares. The estimate averages
            about batch_size / (1 - decay) assignments (10k = 40 per code with the defaults); a much
            shorter horizon makes the shares, and so the bias, noisy.
        balance_at_assign: keep the final (frozen) bias in the final assignment and in
            `quantizer.assign`, so new items see the same distances as training items.
        reset_dead_codes: after each epoch, move codes unused during the epoch onto residuals of the
            worst-quantised items of the last batch, and repair codes left unused by the final
            assignment once more on the whole catalog (part of balancing; off in `plain()`).
    Uniformity (module docstring of `uniformity.py`):
        uniformity_weight: weight of the repulsion loss, summed over levels (0 disables it).
        uniformity_threshold: pairs closer than this fraction of the level's mean pairwise code
            distance are pushed apart (0.5: only pairs much closer than typical neighbours).
    Training:
        beta: commitment weight of the quantisation loss.
        warmup_epochs: autoencoder-only epochs before the k-means init of the codebooks.
        epochs, batch_size, lr: Adam training schedule of the RQ-VAE after the warm-up.
        kmeans_iters: Lloyd iterations of every k-means call (codebook init, rkmeans, coarse clusters).
        kmeans_init_samples: at most this many items seed the k-means initialisation of the codebooks.
    Output:
        num_clusters: Kc, coarse clusters of each level's code vectors (thinking-token targets);
            None (default): `num_clusters_for(K)` (16 at K = 256, 4 at K = 32).
        reassign_collisions: move items of a colliding group (all but the first) to their
            nearest last-level code that makes their L-code tuple free, before dedup codes.
        seed: seeds every random choice; the same inputs and seed give the same codes.
        num_threads: torch CPU threads during the build only (set on entry, restored on exit);
            None leaves torch's setting alone. The RQ-VAE is small (batches of 512 rows, 512-unit
            layers): one thread is about as fast as two on an idle machine and much faster on a busy
            one, where the threads of each op wait for each other.
    """

    num_levels: int = 3
    codebook_size: int | None = None
    latent_dim: int = 32
    hidden_dims: tuple[int, ...] = (512, 256, 128)
    quantizer: str = "rqvae"
    use_graph: bool = True
    graph_window: int = 3
    alpha: float = 0.3
    num_hops: int = 3
    collab_dim: int | None = None
    collab_weight: float = 1.0
    balance: bool = True
    balance_strength: float = 1.0
    balance_cap: float = 1.0
    balance_decay: float = 0.95
    balance_at_assign: bool = True
    reset_dead_codes: bool = True
    uniformity_weight: float = 1.0
    uniformity_threshold: float = 0.5
    beta: float = 0.25
    warmup_epochs: int = 10
    epochs: int = 50
    batch_size: int = 512
    lr: float = 1e-3
    kmeans_iters: int = 25
    kmeans_init_samples: int = 20000
    num_clusters: int | None = None
    reassign_collisions: bool = False
    seed: int = 0
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(self.hidden_dims)
        self._check_positive_ints()
        self._check_ranges()
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise InputError(f"num_threads must be None or a positive int, got {self.num_threads!r}")
        if self.quantizer not in QUANTIZERS:
            raise InputError(f"quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")

    def _check_positive_ints(self) -> None:
        names = ("num_levels", "latent_dim", "graph_window", "epochs", "batch_size")
        names += ("kmeans_iters", "kmeans_init_samples")
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}")
        for name in ("codebook_size", "num_clusters"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(
                    f"{name} must be None (sized to the catalog) or a positive int, got {value!r}"
                )
        if any(not isinstance(h, int) or h < 1 for h in self.hidden_dims):
            raise InputError(f"hidden_dims must hold positive ints, got {self.hidden_dims!r}")
        for name in ("num_hops", "warmup_epochs", "collab_dim"):
            value = getattr(self, name)
            if name == "collab_dim" and value is None:
                continue
            if not isinstance(value, int) or value < 0:
                raise InputError(f"{name} must be an int >= 0, got {value!r}")

    def _check_ranges(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise InputError(f"alpha must be in (0, 1], got {self.alpha}")
        if not 0.0 <= self.balance_decay < 1.0:
            raise InputError(f"balance_decay must be in [0, 1), got {self.balance_decay}")
        for name in ("balance_strength", "balance_cap", "uniformity_weight", "uniformity_threshold", "beta"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "collab_weight"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        if None not in (self.num_clusters, self.codebook_size) and self.num_clusters > self.codebook_size:
            raise InputError(
                f"num_clusters ({self.num_clusters}) cannot exceed codebook_size ({self.codebook_size})"
            )

    def for_catalog(self, num_items: int, has_cooccurrences: bool = True) -> CodebookConfig:
        """This config with K, Kc and C fixed for a catalog of ``num_items`` (the values set stay); without
        co-occurrences (no history of two items) an unset C is 0: codes from text alone."""
        codebook_size = self.codebook_size or codebook_size_for(num_items)
        num_clusters = self.num_clusters or num_clusters_for(codebook_size)
        collab_dim = self.collab_dim
        if collab_dim is None:
            collab_dim = collab_dim_for(num_items) if has_cooccurrences else 0
        return replace(self, codebook_size=codebook_size, num_clusters=num_clusters, collab_dim=collab_dim)

    @classmethod
    def plain(cls, **overrides: object) -> CodebookConfig:
        """Plain RQ-VAE (TIGER): no graph, no collaborative codes, no balancing, no dead-code reset, no
        uniformity loss."""
        off = {"use_graph": False, "collab_dim": 0, "balance": False, "balance_at_assign": False}
        off["reset_dead_codes"] = False
        return replace(cls(), **{**off, "uniformity_weight": 0.0, **overrides})

    @classmethod
    def rkmeans(cls, **overrides: object) -> CodebookConfig:
        """Residual k-means baseline on the (propagated, unless use_graph=False) features."""
        return replace(cls(), **{"quantizer": "rkmeans", **overrides})
