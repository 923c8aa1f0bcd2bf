"""Training curves from ``Trainer.state.log_history``: loss terms and validation metrics over steps."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

LOSS_KEYS = ("loss", "rec_loss", "align_loss", "infonce_loss", "reg_loss")
METRIC_KEYS = ("eval_recall@5", "eval_recall@10", "eval_ndcg@5", "eval_ndcg@10")


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(entry["step"], entry[key]) for entry in history if key in entry]
    return [step for step, _ in points], [value for _, value in points]


def plot_training_curves(history: list[dict], path: str | Path) -> None:
    """Two panels: every logged loss term, and validation Recall/NDCG, against the optimiser step."""
    fig = Figure(figsize=(10, 3.5))
    FigureCanvasAgg(fig)
    losses, metrics = fig.subplots(1, 2)
    for key in LOSS_KEYS:
        steps, values = _series(history, key)
        if steps:
            losses.plot(steps, values, label=key)
    losses.set(xlabel="step", ylabel="loss", title="training loss terms")
    for key in METRIC_KEYS:
        steps, values = _series(history, key)
        if steps:
            metrics.plot(steps, values, marker="o", label=key.removeprefix("eval_"))
    metrics.set(xlabel="step", ylabel="metric", title="validation (constrained beam search)")
    for axis in (losses, metrics):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
