"""Code-usage plot: one panel per level with the item count of every code, sorted descending.

Sorted counts show balance at a glance: a flat curve is uniform use, a steep head with a long zero
tail is collapse. The dashed line is the uniform count N / K. The figure is drawn with matplotlib's
Agg canvas directly (no pyplot), so no display is needed and the caller's backend is left alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_code_usage(codes: np.ndarray, codebook_size: int, path: str | Path) -> None:
    """Write a PNG at `path` with one sorted-usage panel per column of codes (N, L)."""
    codes = np.asarray(codes)
    levels = codes.shape[1]
    fig = Figure(figsize=(4 * levels, 3))
    FigureCanvasAgg(fig)  # attaches the Agg canvas that savefig renders with
    axes = fig.subplots(1, levels, squeeze=False)[0]
    uniform = codes.shape[0] / codebook_size
    for level, ax in enumerate(axes):
        counts = np.sort(np.bincount(codes[:, level], minlength=codebook_size))[::-1]
        used = int((counts > 0).sum())
        ax.bar(np.arange(len(counts)), counts, width=1.0)
        ax.axhline(uniform, color="k", linestyle="--", linewidth=0.8)
        ax.set_title(f"level {level + 1}: {used}/{codebook_size} codes used")
        ax.set_xlabel("code rank")
        ax.set_ylabel("items")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
