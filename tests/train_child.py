"""A training run in its own process (plain, killed, resumed, or one DDP rank): what the tests launch.

    python tests/train_child.py CONFIG.yaml RESULT_PREFIX OVERRIDES_JSON [--resume] [--slow-after-save S]

Runs ``s2gr.training.run.train_run`` (the code path of ``s2gr train``) with the ``TrainingArguments``
overrides, then writes ``RESULT_PREFIX.rank{R}.json``: world size, final metrics, log history and a sha256 of
every final weight. ``--slow-after-save S`` sleeps S seconds after each optimiser step once the first
checkpoint is saved, so that a test can kill the process between two checkpoints.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

import s2gr.training.run as run
from s2gr.training.config import RunConfig


class SlowAfterSave(TrainerCallback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.saved = False

    def on_save(self, args, state, control, **kwargs):
        self.saved = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.saved:
            time.sleep(self.seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("result_prefix")
    parser.add_argument("overrides", nargs="?", default="{}")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--slow-after-save", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.slow_after_save:
        build_trainer = run.build_trainer

        def slow_trainer(*positional, **keywords):
            trainer = build_trainer(*positional, **keywords)
            trainer.add_callback(SlowAfterSave(args.slow_after_save))
            return trainer

        run.build_trainer = slow_trainer
    result = run.train_run(RunConfig.from_yaml(args.config), resume=args.resume, **json.loads(args.overrides))
    rank = int(os.environ.get("RANK", "0"))
    weights = {
        name: hashlib.sha256(value.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        for name, value in result.model.state_dict().items()
    }
    summary = {
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "is_main_process": result.is_main_process,
        "metrics": result.metrics,
        "log_history": result.log_history,
        "weights": weights,
    }
    Path(f"{args.result_prefix}.rank{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
