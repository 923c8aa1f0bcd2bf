"""``S2GRTrainer``: the ``transformers.Trainer`` with S2GR's loss terms logged and recommendation metrics.

What the stock ``Trainer`` already does well is kept: optimisation, schedules, gradient accumulation,
checkpoints and resume, ``accelerate`` (DDP/FSDP/DeepSpeed), best-model selection, early stopping.
Written here is only what it cannot know:

- ``compute_loss`` (the stock one) passes ``num_items_in_batch`` to the model (whose forward takes
  ``**kwargs``), so a loss over an accumulated batch, or over the processes of DDP, has the scale of one big
  batch. The fast mode has no ``labels``; its count is the number of target items × ``config.label_length``
  (what ``Trainer`` counts for labels), summed over the processes.
- Every loss term the model returns (next-SID, alignment per level, InfoNCE, regulariser) is logged beside
  ``loss`` the way ``loss`` is: its value per optimiser step (summed over the micro-batches of gradient
  accumulation), averaged over the steps since the last log and over the processes.
- ``evaluate`` runs constrained beam search (``model.recommend``) on the validation users and returns
  ``eval_recall@5/10`` and ``eval_ndcg@5/10``; best checkpoint and early stopping read ``eval_ndcg@10``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from datasets import Dataset
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..beam_search_s2gr import DEFAULT_NUM_BEAMS
from ..errors import InputError
from ..evaluation import evaluate_split

LOSS_TERMS = ("rec_loss", "align_loss", "infonce_loss", "reg_loss")


class S2GRTrainer(Trainer):
    """``Trainer`` for S2GR. ``eval_dataset`` holds the validation rows (``history``, ``target``); extra
    arguments: each validation user's ``recommend_seen`` items to exclude (or ``None``) and the beam width."""

    def __init__(
        self,
        *args: Any,
        recommend_seen: Sequence[Sequence[str]] | None = None,
        num_beams: int = DEFAULT_NUM_BEAMS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.recommend_seen = recommend_seen
        self.num_beams = num_beams
        self._term_sums: dict[str, float] = defaultdict(float)
        self._terms_from_step = 0  # global step when the pending loss terms started

    # --- loss -------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        # The stock method passes num_items_in_batch to the model (its forward takes **kwargs) and, under DDP
        # with average_tokens_across_devices, multiplies the loss by the number of processes: each rank's loss
        # is its own sum over the *global* target count and DDP averages the gradients of the ranks.
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if model.training:
            self._record_terms(outputs, self._loss_scale(num_items_in_batch))
        return (loss, outputs) if return_outputs else loss

    def _loss_scale(self, num_items_in_batch: torch.Tensor | int | None) -> float:
        """The factor the Trainer applies to a micro-batch's loss before summing it into the logged loss."""
        if num_items_in_batch is None:  # per-micro-batch means: the Trainer divides by the accumulation steps
            return 1.0 / getattr(self, "current_gradient_accumulation_steps", 1)
        if self.args.average_tokens_across_devices:  # as in Trainer.compute_loss (no tensor parallelism)
            return float(self.accelerator.num_processes)
        return 1.0

    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, torch.Tensor | int | None]:
        """The micro-batches of one optimiser step and their item count; in fast mode (no ``labels``) the count
        is the number of targets × ``config.label_length``, what the ``Trainer`` counts for labels."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if batch_samples and "target_mask" in batch_samples[0]:
            num_items_in_batch = self._count_targets(batch_samples, device)
        return batch_samples, num_items_in_batch

    def _count_targets(self, batch_samples: list, device: torch.device) -> torch.Tensor:
        label_length = self.accelerator.unwrap_model(self.model).config.label_length
        count = sum(batch["target_mask"].sum() for batch in batch_samples) * label_length
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count.to(device)).sum()
        return count.to(device)

    def _record_terms(self, outputs: Any, scale: float) -> None:
        """Add a micro-batch's loss terms, scaled like its loss: a sum over the micro-batches of an optimiser
        step is then that step's term, as the Trainer's logged ``loss`` is the sum of its micro-losses."""
        if not self._term_sums:
            self._terms_from_step = self.state.global_step
        for name in LOSS_TERMS:
            value = getattr(outputs, name, None)
            if value is not None:
                self._term_sums[name] += float(value.detach()) * scale
        per_level = getattr(outputs, "align_loss_per_level", None)
        for level, value in enumerate([] if per_level is None else per_level.detach().tolist()):
            self._term_sums[f"align_loss_l{level + 1}"] += value * scale

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """At a logging step add each loss term's mean per optimiser step since the last log (averaged over
        the processes, like ``loss``)."""
        if "loss" in logs and self._term_sums:
            steps = max(1, self.state.global_step - self._terms_from_step)
            names = sorted(self._term_sums)
            totals = torch.tensor([self._term_sums[name] for name in names], device=self.args.device)
            if self.args.world_size > 1:
                totals = self.accelerator.reduce(totals, reduction="mean")
            logs.update({name: total / steps for name, total in zip(names, totals.tolist(), strict=True)})
            self._term_sums.clear()
        super().log(logs, start_time)

    # --- evaluation -------------------------------------------------------------------------------

    def evaluate(
        self,
        eval_dataset: Dataset | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Recall/NDCG of constrained beam search on the validation rows (every process computes the same);
        ``recommend_seen`` is used only for the trainer's own ``eval_dataset``."""
        rows = eval_dataset if eval_dataset is not None else self.eval_dataset
        if rows is None:
            raise InputError("S2GRTrainer.evaluate needs eval_dataset (the validation split).")
        model = self.accelerator.unwrap_model(self.model)
        metrics = evaluate_split(
            model,
            self.processing_class,
            rows,
            seen=self.recommend_seen if eval_dataset is None else None,
            num_beams=self.num_beams,
            batch_size=self.args.per_device_eval_batch_size,
        )
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class TimeBudgetCallback(TrainerCallback):
    """Stops training once ``minutes`` of wall time (evaluations included) have passed since it began, with
    an evaluation and a save at that step so the best-checkpoint choice sees the last weights.

    Equal-budget comparisons between methods (``benchmarks/quality.py``) rest on it. Time counts from
    ``on_train_begin``: a resumed run gets the whole budget again.
    """

    def __init__(self, minutes: float, clock: Callable[[], float] = time.perf_counter) -> None:
        if minutes <= 0:
            raise InputError(f"minutes must be > 0, got {minutes}.")
        self.seconds = minutes * 60
        self.clock = clock
        self.started = clock()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.started = self.clock()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if self.clock() - self.started >= self.seconds:
            control.should_training_stop = True
            control.should_evaluate = args.eval_strategy != "no"  # no evaluation in a refit
            control.should_save = True
        return control
