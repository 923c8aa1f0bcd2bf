"""``RunConfig``: everything a training run needs, from flags or a YAML file, saved with the run."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError, MissingFileError
from ..tokenization import CodebookConfig


def apply_assignments(values: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` strings (dotted keys for nested fields, YAML values) to ``values`` in place:
    ``model.d_model=64`` sets ``values["model"]["d_model"] = 64``."""
    for assignment in assignments:
        key, separator, raw = assignment.partition("=")
        if not separator or not key:
            raise InputError(f"expected KEY=VALUE, got {assignment!r}.")
        target = values
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = yaml.safe_load(raw)
    return values


MIXED_PRECISION = ("auto", "bf16", "no")


@dataclass
class RunConfig:
    """A training run: data, codebook, model and schedule. Unknown keys in a YAML file are an error.

    Data:
        dataset / interactions / items / columns: what ``s2gr.data.load_data`` takes.
        kcore, max_history: preprocessing (5-core, 20 items of history).
        max_users: keep only the first that many users (a small real slice for quick runs and tests).
        recent_targets: train only on each user's most recent that many training items (None = all); their
            histories still reach back ``max_history`` items. Bounds an epoch's cost on logs with very long
            users (ML-1M: 40 keeps 23 % of the targets); evaluation and seen-item filtering are unchanged.
        refit: train on the training items and each user's validation item, for exactly ``epochs`` (or
            ``max_steps``/``time_budget_minutes``), keep the final weights and read only test: the final
            model of a setting chosen on validation, whose test target then directly follows what it
            trained on, as the validation target does in a normal run. There is no validation to evaluate
            on, so ``patience`` and ``eval_every_epochs`` do not apply (checkpoints are still saved every
            ``eval_every_epochs`` for ``resume``) and the run reports no validation metrics.
    Codebook:
        codebook: ``CodebookConfig`` fields (defaults: CoBa, 3 levels of K codes sized to the catalog,
            K / 16 clusters per level).
    Model:
        num_thinking: None = one thinking step per level (S2GR); 0 = TIGER.
        encoder_mode: "causal" (one pass per user sequence yields every target; the default) or
            "bidirectional" (exact TIGER encoder trained on sliding windows).
        model: further ``S2GRConfig`` fields (layers, d_model, τ, λ, loss weights, ...).
    Schedule:
        epochs, batch_size (rows: segments in causal mode, targets in bidirectional mode), lr,
        weight_decay, warmup_ratio, segment_items (targets per segment, causal mode),
        group_by_length: batch training rows of similar length (the ``Trainer``'s ``LengthGroupedSampler``:
            random mega-batches of 50 batches, sorted by length inside) instead of uniformly at random. Off
            by default: on the demo it cut padded positions from 31 % to 3 % but an epoch only 1.08× (rounds
            0.92-1.15×), and 2 seeds of the 36-epoch ML-100K benchmark moved test NDCG@10 +0.6 % and
            validation −2.2 %, inside the seed spread (README, "Speed and memory").
        eval_every_epochs, patience (evaluations without NDCG@10 gain before stopping; 0 = never),
        num_beams, eval_batch_size, exclude_seen (filter each user's past items from rankings),
        logging_steps, gradient_accumulation_steps, seed, max_steps (> 0 overrides epochs).
        mixed_precision: "auto" (bf16 autocast on a GPU that supports it, float32 on a CPU), "bf16" (also on
            a CPU: pays off there only with native bf16 instructions and a model of the TIGER size or
            larger; README, "Speed and memory") or "no" (float32 everywhere). Weights, optimiser state and
            evaluation stay float32 either way.
        time_budget_minutes: stop training after this much wall time (evaluations included), with one
            last evaluation so the best checkpoint can be the final weights; for equal-budget comparisons.
            The learning-rate schedule still follows ``epochs``: set them to what the budget fits.
    """

    output_dir: str = "runs/s2gr"
    dataset: str | None = "ml-100k"
    interactions: str | None = None
    items: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)
    kcore: int = 5
    max_history: int = 20
    max_users: int | None = None
    recent_targets: int | None = None
    refit: bool = False
    encoder: str = "all-MiniLM-L6-v2"
    codebook: dict[str, Any] = field(default_factory=dict)
    num_thinking: int | None = None
    encoder_mode: str = "causal"
    model: dict[str, Any] = field(default_factory=dict)
    epochs: float = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    segment_items: int = 64
    group_by_length: bool = False
    eval_every_epochs: float = 1.0
    patience: int = 5
    num_beams: int = 20
    eval_batch_size: int = 256
    exclude_seen: bool = True
    logging_steps: int = 20
    gradient_accumulation_steps: int = 1
    seed: int = 42
    max_steps: int = -1
    time_budget_minutes: float | None = None
    mixed_precision: str = "auto"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.encoder_mode not in ("causal", "bidirectional"):
            raise InputError(f"encoder_mode must be 'causal' or 'bidirectional', got {self.encoder_mode!r}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise InputError(
                f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}."
            )
        if self.dataset is not None and self.interactions is not None:
            raise InputError(
                "Give either dataset or interactions, not both (set dataset: null for your own files)."
            )
        for name in ("batch_size", "segment_items", "num_beams", "eval_batch_size", "logging_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be ≥ 1, got {getattr(self, name)}.")
        if self.recent_targets is not None and self.recent_targets < 1:
            raise InputError(
                f"recent_targets must be ≥ 1 (or null for every item), got {self.recent_targets}."
            )
        if self.time_budget_minutes is not None and self.time_budget_minutes <= 0:
            raise InputError(f"time_budget_minutes must be > 0 (or null), got {self.time_budget_minutes}.")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise InputError("epochs must be > 0 (or set max_steps).")
        self.codebook_config()  # validates the codebook fields early

    def codebook_config(self) -> CodebookConfig:
        known = {f.name for f in fields(CodebookConfig)}
        unknown = set(self.codebook) - known
        if unknown:
            raise InputError(f"Unknown codebook field(s) {sorted(unknown)}; known: {sorted(known)}.")
        return CodebookConfig(**self.codebook)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"{path}: no such config file.")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise InputError(f"{path}: a run config must be a YAML mapping of field: value.")
        return cls.from_dict({**values, **overrides}, source=str(path))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise InputError(f"{source}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}.")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
