"""Named run presets and the methods the benchmarks compare.

``DEMO`` is what ``make demo`` trains: S2GR on MovieLens-100K, sized so that data, codebook, training and
evaluation finish within 15 minutes on 2 CPU cores, ``make demo`` on a fresh clone included (a smaller
transformer than the TIGER-size default of ``S2GRConfig``; the CPU quality benchmarks use it too). Its time
budget stops a slower machine's run with a last evaluation, so the demo ends in time with a somewhat weaker
model. History 10, as chosen on MovieLens-100K's validation split (benchmarks/RESULTS.md, "MovieLens-100K").

``METHODS``: the variants of S2GR, each a set of ``RunConfig`` fields on top of a run's own. ``tiger`` is the
TIGER baseline, plain RQ-VAE codebook and no thinking tokens (``s2gr train --tiger``); ``coba-only`` keeps the
CoBa codebook and drops the thinking tokens (``--no-thinking``); ``thinking-only`` is the plain codebook with
thinking tokens. ``benchmarks/quality.py`` runs these definitions.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..codebook import CodebookConfig

DEMO: dict[str, Any] = {
    "output_dir": "runs/demo",
    "dataset": "ml-100k",
    "max_history": 10,
    "epochs": 10,
    "time_budget_minutes": 11.5,
    "eval_every_epochs": 2,
    "batch_size": 16,
    "segment_items": 80,
    "lr": 0.003,
    "logging_steps": 50,
    "model": {
        "d_model": 64,
        "num_heads": 4,
        "d_kv": 16,
        "d_ff": 256,
        "encoder_layers": 2,
        "decoder_layers": 2,
    },
}

# What makes TIGER's codebook a plain RQ-VAE: the fields where CodebookConfig.plain() differs from CoBa (the
# default codebook), plus the quantizer and the collaborative block, which are off in both by default but must
# stay off in the text-only baseline when a benchmark's shared settings switch them on for S2GR.
PLAIN_CODEBOOK: dict[str, Any] = {
    key: value
    for key, value in asdict(CodebookConfig.plain()).items()
    if key in ("quantizer", "collab_dim") or getattr(CodebookConfig(), key) != value
}
METHODS: dict[str, dict[str, Any]] = {
    "s2gr": {},
    "tiger": {"codebook": PLAIN_CODEBOOK, "num_thinking": 0},
    "coba-only": {"num_thinking": 0},
    "thinking-only": {"codebook": PLAIN_CODEBOOK},
}


def with_method(values: dict[str, Any], method: str) -> dict[str, Any]:
    """``RunConfig`` fields ``values`` with ``METHODS[method]`` on top (codebook fields merged, not replaced)."""
    variant = METHODS[method]
    merged = {**values, **{key: value for key, value in variant.items() if key != "codebook"}}
    if "codebook" in variant:
        merged["codebook"] = {**values.get("codebook", {}), **variant["codebook"]}
    return merged
