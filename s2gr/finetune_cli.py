"""``s2gr finetune``: fine-tune a trained model on a new catalog (the work is ``s2gr.training.finetune``).

Kept out of ``cli.py`` so that the sub-command is one registration line there; ``cli.build_parser`` imports
this module when it builds the parser (not at import time: this module reuses ``cli``'s run-config flags).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .cli import add_run_args, format_results, run_config_from_args, with_run_setting_hints
from .training.config import RunConfig
from .training.finetune import DEFAULT_LORA_RANK, finetune_run

DEFAULT_OUTPUT_DIR = "runs/s2gr-finetune"


def add_finetune_command(commands: Any) -> None:
    """Register ``finetune`` on the ``s2gr`` sub-command parsers (``argparse`` ``_SubParsersAction``)."""
    parser = commands.add_parser(
        "finetune",
        help="fine-tune a trained model on a data set with new items (frozen-codebook SIDs, LoRA or full)",
    )
    add_run_args(parser)
    parser.add_argument(
        "--base", required=True, help="model/ folder (or run folder) of the trained model to start from"
    )
    parser.add_argument(
        "--lora",
        action="store_true",
        help="LoRA on q/k/v/o projections + the new items' SID token rows (default: train every weight)",
    )
    parser.add_argument(
        "--lora-rank", type=int, default=DEFAULT_LORA_RANK, help=f"LoRA rank (default {DEFAULT_LORA_RANK})"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run already in --output-dir and start afresh (without it such a folder is refused)",
    )
    parser.set_defaults(handler=with_run_setting_hints(cmd_finetune))


def cmd_finetune(args: argparse.Namespace) -> None:
    config = run_config_from_args(args)
    if args.output_dir is None and config.output_dir == RunConfig.output_dir:
        # Not the training default: a fine-tuning run must not overwrite the base run's folder.
        config = dataclasses.replace(config, output_dir=DEFAULT_OUTPUT_DIR)
    result = finetune_run(
        args.base, config, lora=args.lora, lora_rank=args.lora_rank, overwrite=args.overwrite
    )
    if not result.is_main_process:  # under `accelerate launch` the main process reports for all
        return
    print(format_results(result.metrics))
    print(f"{len(result.new_items):,} new items got Semantic IDs from the frozen codebook")
    if result.adapter_dir is not None:
        print(f"adapter saved to {result.adapter_dir}")
    print(f"merged model saved to {result.model_dir} ({result.seconds / 60:.1f} min)")
