"""One training run end to end: data → embeddings → codebook → train → evaluate → save.

Folder written under ``config.output_dir``::

    model/                 final model (best on validation; the last under refit) + tokenizer + code files
                           + README.md card
    checkpoint-*/          Trainer checkpoints (resume with ``resume=True``)
    run_config.yaml        the resolved RunConfig
    run.json               run summary (data, codebook, thinking, training, metrics) — feeds the card
    metrics.json           validation/test Recall@5/10, NDCG@5/10, with and without seen items, + most-popular
    training_curves.png    loss terms and validation metrics over steps
    code_usage.png         code usage per level
    catalog/               the tokenizer the main process built, for the other ranks (multi-process runs)
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

from ..catalog import CODE_USAGE_PLOT, build_catalog
from ..codebook import plot_code_usage
from ..configuration_s2gr import S2GRConfig
from ..data import Columns, RecData, load_data
from ..data.assets import write_folder_atomically
from ..errors import InputError
from ..evaluation import final_metrics, reported_splits, seen_items
from ..hub_cards import build_model_card
from ..modeling_s2gr import S2GRForGenerativeRecommendation
from ..titles import item_titles, save_titles
from ..tokenization_s2gr import S2GRTokenizer
from .collator import HistoryCollator, SegmentCollator
from .config import RunConfig
from .plots import plot_training_curves
from .run_folder import (
    CATALOG_DIR,
    CONFIG_FILE,
    MODEL_DIR,
    last_checkpoint,
    prepare_run_folder,
    write_json,
)
from .samples import segment_sequences, sliding_window_samples, training_split
from .trainer import S2GRTrainer, TimeBudgetCallback


@dataclass
class RunResult:
    output_dir: Path
    model_dir: Path
    metrics: dict[str, Any]
    seconds: float
    model: S2GRForGenerativeRecommendation | None = None  # the final (best-on-validation) model
    log_history: list[dict[str, Any]] = field(default_factory=list)  # trainer.state.log_history
    is_main_process: bool = True  # False on the other ranks of `accelerate launch`: they wrote nothing


def context_items(config: RunConfig) -> int:
    """History items a run's model reads (`S2GRConfig.context_items`): ``max_history`` for the bidirectional
    encoder, ``max_history + encoder_layers * (max_history - 1)`` for the causal one, whose decoder reads the
    last ``max_history`` items' states and whose fast training mode gives each target that receptive field."""
    model = S2GRConfig(encoder_mode=config.encoder_mode, max_history_items=config.max_history, **config.model)
    return model.context_items


def load_run_data(config: RunConfig) -> RecData:
    """The run's data; validation and test histories hold the ``context_items`` the model reads."""
    columns = Columns(**config.columns) if config.columns else Columns()
    return load_data(
        config.dataset,
        interactions=config.interactions,
        items=config.items,
        columns=columns,
        kcore=config.kcore,
        max_history=context_items(config),
        max_users=config.max_users,
        cache_dir=config.cache_dir,
    )


def new_model(tokenizer: S2GRTokenizer, config: RunConfig) -> S2GRForGenerativeRecommendation:
    """A freshly initialised model whose vocabulary and cluster map match ``tokenizer``."""
    known = {f.name for f in fields(S2GRConfig)}
    unknown = set(config.model) - known
    if unknown:
        raise InputError(f"Unknown model field(s) {sorted(unknown)}; see S2GRConfig.")
    model_config = S2GRConfig(
        num_levels=tokenizer.num_levels,
        codebook_size=tokenizer.codebook_size,
        dedup_size=tokenizer.dedup_size,
        num_thinking=tokenizer.num_thinking,
        num_clusters=int(tokenizer.code_clusters.max()) + 1,
        encoder_mode=config.encoder_mode,
        max_history_items=config.max_history,
        **config.model,
    )
    model = S2GRForGenerativeRecommendation(model_config)
    model.set_code_clusters(torch.as_tensor(tokenizer.code_clusters))
    return model


def training_samples(data: RecData, tokenizer: S2GRTokenizer, config: RunConfig):
    """(dataset, collator) for the encoder mode: segments (fast) or sliding windows (TIGER)."""
    train = training_split(data.splits, config.refit)
    if config.encoder_mode == "causal":
        segments = segment_sequences(
            train, config.segment_items, context_items(config), config.recent_targets
        )
        return segments, SegmentCollator(tokenizer)
    windows = sliding_window_samples(train, config.max_history, config.recent_targets)
    return windows, HistoryCollator(tokenizer)


def native_bf16() -> bool:
    """Whether this machine computes bf16 in hardware: a GPU with bf16, or a CPU with AVX512-BF16 or AMX."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_flags() -> set[str]:
    """The CPU feature flags the kernel reports (Linux `/proc/cpuinfo`); empty elsewhere, where bf16 then
    counts as emulated."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {
        flag
        for line in text.splitlines()
        if line.startswith("flags")
        for flag in line.split(":", 1)[1].split()
    }


def trains_in_bf16(mixed_precision: str) -> bool:
    """Whether a run with this ``RunConfig.mixed_precision`` trains under bf16 autocast on this machine."""
    if mixed_precision == "no":
        return False
    cuda, native = torch.cuda.is_available(), native_bf16()
    if mixed_precision == "auto":
        return cuda and native
    if cuda and not native:
        raise InputError(
            "mixed_precision='bf16', but this GPU has no bf16 (it needs Ampere or newer): use 'no'."
        )
    if not native:
        warnings.warn(
            "mixed_precision='bf16' on a CPU without native bf16 (AVX512-BF16 or AMX): bf16 is emulated and "
            "slower than float32 here; 'no' trains faster.",
            stacklevel=2,
        )
    return True


def training_arguments(config: RunConfig, steps_per_epoch: int, **overrides: Any) -> TrainingArguments:
    """The run's ``TrainingArguments``; ``overrides`` replace or add any of them (e.g. ``optim="sgd"``).

    ``steps_per_epoch``: optimiser steps of one epoch on one process; under DDP (N processes, each taking
    ``batch_size`` rows per micro-batch) an epoch has N times fewer, and ``eval_every_epochs`` follows.
    """
    eval_steps = max(1, round(steps_per_epoch * config.eval_every_epochs))
    bf16 = trains_in_bf16(config.mixed_precision)
    arguments = dict(
        output_dir=config.output_dir,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of the total steps in transformers 5
        lr_scheduler_type="cosine",
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="ndcg@10",
        greater_is_better=True,
        logging_steps=config.logging_steps,
        remove_unused_columns=False,  # the collators read item-id columns the model's forward doesn't name
        report_to=config.report_targets() or "none",
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        use_cpu=bf16 and not torch.cuda.is_available(),  # what TrainingArguments asks for bf16 on a CPU
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
    )
    args = TrainingArguments(**{**arguments, **overrides})
    if args.world_size > 1 and not {"eval_steps", "save_steps"} & overrides.keys():
        eval_steps = max(1, round(math.ceil(steps_per_epoch / args.world_size) * config.eval_every_epochs))
        args.eval_steps = args.save_steps = eval_steps
    return args


def build_trainer(
    config: RunConfig,
    data: RecData,
    tokenizer: S2GRTokenizer,
    model: S2GRForGenerativeRecommendation,
    **training_overrides: Any,
) -> S2GRTrainer:
    """``training_overrides``: ``TrainingArguments`` fields replacing those derived from ``config``."""
    train_dataset, collator = training_samples(data, tokenizer, config)
    steps_per_epoch = math.ceil(len(train_dataset) / (config.batch_size * config.gradient_accumulation_steps))
    callbacks = [EarlyStoppingCallback(config.patience)] if config.patience > 0 and not config.refit else []
    if config.time_budget_minutes is not None:
        callbacks.append(TimeBudgetCallback(config.time_budget_minutes))
    if config.refit:  # validation is training data now: nothing to evaluate or select on, the final weights
        training_overrides = {"eval_strategy": "no", "load_best_model_at_end": False, **training_overrides}
    validate = not config.refit
    return S2GRTrainer(
        model=model,
        args=training_arguments(config, steps_per_epoch, **training_overrides),
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
        eval_dataset=data.splits["validation"] if validate else None,
        recommend_seen=seen_items(data.splits, "validation") if config.exclude_seen and validate else None,
        num_beams=config.num_beams,
    )


def run_summary(
    config: RunConfig,
    data: RecData,
    tokenizer: S2GRTokenizer,
    stats: dict[str, Any],
    model,
    metrics: dict,
    seconds: float,
) -> dict:
    """The run's ``run.json`` (it feeds the model card); ``stats``: the catalog's codebook statistics."""
    model_config = model.config
    return {
        "model_name": f"s2gr-{data.name}",
        "base_model": "sentence-transformers/all-MiniLM-L6-v2"
        if config.encoder == "all-MiniLM-L6-v2"
        else config.encoder,
        "dataset": {
            "name": data.name,
            "num_users": data.stats.users,
            "num_items": data.stats.items,
            "num_interactions": data.stats.interactions,
        },
        "split": {
            "kcore": data.kcore,
            "protocol": "leave-one-out (last item test, second-last validation, rest training)"
            + ("; refit: trained on the validation items too, final weights" if config.refit else ""),
            "ranking": "full ranking over all items"
            + (", seen items excluded" if config.exclude_seen else ""),
            "tie_break": "equal timestamps keep source-file order (stable sort)",
            "max_history": data.max_history,
        },
        "codebook": {
            "num_levels": tokenizer.num_levels,
            "codebook_size": tokenizer.codebook_size,
            "dedup_size": tokenizer.dedup_size,
            **{
                k: stats[k]
                for k in (
                    "utilisation",
                    "usage_perplexity",
                    "collision_rate",
                    "colliding_items",
                    "largest_group",
                )
                if k in stats
            },
        },
        "thinking": {
            name: getattr(model_config, name)
            for name in (
                "num_thinking",
                "align_loss_weight",
                "align_temperature",
                "num_clusters",
                "reg_lambda",
                "infonce_temperature",
                "aux_decoder_layers",
            )
        },
        "training": {
            "encoder_mode": config.encoder_mode,
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "learning_rate": config.lr,
            "num_beams": config.num_beams,
            "seed": config.seed,
            "wall_seconds": round(seconds, 1),
        },
        "metrics": {split: metrics["s2gr"][split] for split in reported_splits(config.refit)},
    }


def train_run(
    config: RunConfig,
    resume: bool = False,
    *,
    overwrite: bool = False,
    data: RecData | None = None,
    embeddings: np.ndarray | None = None,
    **training_overrides: Any,
) -> RunResult:
    """Run everything for ``config`` and write the folder described in the module docstring.

    ``data``/``embeddings``: an already loaded data set (default: ``config``'s) and its ``(N, E)`` item
    embeddings (default: computed, cached), e.g. a catalog with held-out items (``finetune.hold_out_items``).

    Under ``accelerate launch``/``torchrun`` every process runs this function (the catalog is built
    deterministically on each); only the main process writes files. ``resume``: continue from the newest
    complete ``checkpoint-*`` in ``output_dir`` (a fresh run when there is none); ``overwrite``: delete an
    earlier run in ``output_dir`` first (see ``run_folder.prepare_run_folder``). ``training_overrides``:
    ``TrainingArguments`` fields replacing those derived from ``config`` (see ``build_trainer``).
    """
    started = time.perf_counter()
    set_seed(config.seed)
    output = Path(config.output_dir)
    checkpoint = None
    if process_state().is_main_process:  # the other ranks of `accelerate launch` write nothing
        checkpoint = prepare_run_folder(config, resume=resume, overwrite=overwrite)
        output.mkdir(parents=True, exist_ok=True)
    data = data if data is not None else load_run_data(config)
    tokenizer, stats = run_catalog(config, data, embeddings)
    model = new_model(tokenizer, config)
    trainer = build_trainer(config, data, tokenizer, model, **training_overrides)
    main_process = trainer.is_world_process_zero()
    if main_process and checkpoint is None:
        config.save(output / CONFIG_FILE)
    if resume and not main_process:
        checkpoint = last_checkpoint(output)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    model = trainer.model
    metrics = final_metrics(model, tokenizer, data, config)
    seconds = time.perf_counter() - started
    model_dir = output / MODEL_DIR
    summary = run_summary(config, data, tokenizer, stats, model, metrics, seconds)
    if main_process:
        save_model(model, tokenizer, model_dir, summary, item_titles(data.items))
        write_json(output / "metrics.json", metrics)
        write_json(output / "run.json", summary)
        plot_training_curves(trainer.state.log_history, output / "training_curves.png")
    trainer.accelerator.wait_for_everyone()
    return RunResult(
        output,
        model_dir,
        metrics,
        seconds,
        model,
        trainer.state.log_history,
        main_process,
    )


def process_state() -> PartialState:
    """This process's place under ``accelerate launch`` (one main process when not launched), set up as the
    ``Trainer`` will: CPU processes join their process group only when asked with ``cpu=True``."""
    cpu = not torch.cuda.is_available() or parse_flag_from_env("ACCELERATE_USE_CPU")
    return PartialState(cpu=cpu)


def run_catalog(
    config: RunConfig, data: RecData, embeddings: np.ndarray | None
) -> tuple[S2GRTokenizer, dict[str, Any]]:
    """The run's tokenizer and codebook statistics; the main process also plots the code usage.

    Under ``accelerate launch`` the main process alone embeds the items and builds the codebook, and saves
    the tokenizer to ``catalog/`` in the run folder, which the other ranks load (their statistics: empty).
    """
    state, output = process_state(), Path(config.output_dir)
    with state.main_process_first():
        if not state.is_main_process:
            return S2GRTokenizer.from_pretrained(output / CATALOG_DIR), {}
        catalog = build_catalog(
            data,
            config.codebook_config(),
            num_thinking=config.num_thinking,
            encoder=config.encoder,
            cache_dir=config.cache_dir,
            embeddings=embeddings,
            sequences=training_split(data.splits, config.refit)["item_ids"],
        )
        codes, size = catalog.semantic_ids.codes[:, :-1], catalog.tokenizer.codebook_size
        plot_code_usage(codes, size, output / CODE_USAGE_PLOT)
        if state.num_processes > 1:
            catalog.tokenizer.save_pretrained(output / CATALOG_DIR)
        return catalog.tokenizer, catalog.stats


def save_model(
    model, tokenizer: S2GRTokenizer, folder: Path, summary: dict, titles: dict[str, str] | None = None
) -> None:
    """Model + tokenizer + code files + model card (+ item titles): a folder ``from_pretrained`` and ``s2gr push``
    accept, written whole or not at all."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if titles:
            save_titles(tmp, titles)
        (tmp / "run.json").write_text(json.dumps(summary, indent=2))
        build_model_card(summary).save(tmp / "README.md")

    write_folder_atomically(folder, write)
