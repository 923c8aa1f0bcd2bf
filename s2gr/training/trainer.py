"""``S2GRTrainer``: the ``transformers.Trainer`` with S2GR's loss terms logged and recommendation metrics.

What the stock ``Trainer`` already does well is kept: optimisation, schedules, gradient accumulation,
checkpoints and resume, ``accelerate`` (DDP/FSDP/DeepSpeed), best-model selection, early stopping.
Written here is only what it cannot know:

- ``compute_loss`` passes ``num_items_in_batch`` to the model (whose forward takes ``**kwargs``), so a
  loss over an accumulated batch has the scale of one big batch. The fast mode has no ``labels``; its
  count is the number of target items × ``config.label_length`` (what ``Trainer`` counts for labels).
- Every loss term the model returns (next-SID, alignment per level, InfoNCE, regulariser) is averaged
  over the steps between two logs and logged beside ``loss``.
- ``evaluate`` runs constrained beam search (``model.recommend``) on the validation users and returns
  ``eval_recall@5/10`` and ``eval_ndcg@5/10``; best checkpoint and early stopping read ``eval_ndcg@10``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from datasets import Dataset
from transformers import Trainer

from .recommend import evaluate_split

LOSS_TERMS = ("rec_loss", "align_loss", "infonce_loss", "reg_loss")


class S2GRTrainer(Trainer):
    """``Trainer`` for S2GR. ``eval_dataset`` holds the validation rows (``history``, ``target``); extra
    arguments: each validation user's ``recommend_seen`` items to exclude (or ``None``) and the beam width."""

    def __init__(
        self,
        *args: Any,
        recommend_seen: Sequence[Sequence[str]] | None = None,
        num_beams: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.recommend_seen = recommend_seen
        self.num_beams = num_beams
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_steps = 0

    # --- loss -------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        outputs = model(**inputs, num_items_in_batch=num_items_in_batch)
        if model.training:
            self._record_terms(outputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | int | None:
        if not batch_samples or "target_mask" not in batch_samples[0]:
            return super()._get_num_items_in_batch(batch_samples, device)
        label_length = self.accelerator.unwrap_model(self.model).config.label_length
        count = sum(batch["target_mask"].sum() for batch in batch_samples) * label_length
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count.to(device)).sum()
        return count.to(device)

    def _record_terms(self, outputs: Any) -> None:
        for name in LOSS_TERMS:
            value = getattr(outputs, name, None)
            if value is not None:
                self._term_sums[name] += float(value.detach())
        per_level = getattr(outputs, "align_loss_per_level", None)
        for level, value in enumerate([] if per_level is None else per_level.detach().tolist()):
            self._term_sums[f"align_loss_l{level + 1}"] += value
        self._term_steps += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_steps:
            logs.update({name: total / self._term_steps for name, total in self._term_sums.items()})
            self._term_sums.clear()
            self._term_steps = 0
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
            raise ValueError("S2GRTrainer.evaluate needs eval_dataset (the validation split).")
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
