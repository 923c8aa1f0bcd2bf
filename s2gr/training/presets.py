"""Named run presets. ``DEMO`` is what ``make demo`` trains: S2GR on MovieLens-100K, sized so that data,
codebook, training and evaluation finish within 15 minutes on 2 CPU cores (a smaller transformer than the
TIGER-size default of ``S2GRConfig``; the CPU quality benchmarks use it too).

10 epochs with an evaluation every 2 took 11 minutes of training on the slowest idle 2-core machine measured
(4 on a fast one), so that ``make demo`` on a fresh clone (venv and installs about 2.5 minutes) ends within
15; the time budget stops a still slower machine's run at 11.5 minutes with a last evaluation, so it ends in
time (with a somewhat weaker model).

History 10 instead of ``RunConfig``'s 20: on MovieLens-100K the most recent items carry the signal; with 10
every method measured gained on validation and test (README, "Quality on MovieLens-100K"), and the demo
itself went from validation NDCG@10 .0727 to .0843."""

from __future__ import annotations

from typing import Any

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
