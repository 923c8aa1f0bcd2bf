"""Codebook quality statistics and their plain-text table.

Per level l (lists of length L): utilisation = share of the K codes used by at least one item;
usage entropy H_l = -Σ_k p_k ln p_k (nats) of the item share p_k of each code; perplexity exp(H_l),
between 1 (one code) and K (uniform use). Over items, before dedup: collision rate = share of items
whose L-code tuple is shared with another item, colliding items = their number, largest group = the
most items on one tuple; dedup size D = largest dedup code + 1.
"""

from __future__ import annotations

import numpy as np

PER_LEVEL = ("utilisation", "usage_entropy", "usage_perplexity")


def level_usage(codes: np.ndarray, codebook_size: int) -> dict[str, list[float]]:
    """Utilisation, entropy and perplexity of every column of codes (N, L)."""
    out: dict[str, list[float]] = {key: [] for key in PER_LEVEL}
    for column in np.asarray(codes).T:
        counts = np.bincount(column, minlength=codebook_size)
        p = counts[counts > 0] / max(counts.sum(), 1)
        entropy = float(-(p * np.log(p)).sum())
        out["utilisation"].append(float((counts > 0).mean()))
        out["usage_entropy"].append(entropy)
        out["usage_perplexity"].append(float(np.exp(entropy)))
    return out


def collision_stats(codes: np.ndarray) -> dict[str, float]:
    """Collision rate, colliding items and largest group of code rows (N, L), before dedup."""
    codes = np.asarray(codes)
    if codes.shape[0] == 0:
        return {"collision_rate": 0.0, "colliding_items": 0, "largest_group": 0}
    _, group, sizes = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    in_collision = sizes[group.reshape(-1)] > 1
    return {
        "collision_rate": float(in_collision.mean()),
        "colliding_items": int(in_collision.sum()),
        "largest_group": int(sizes.max()),
    }


def format_stats_table(stats: dict) -> str:
    """Two plain-text blocks: per-level usage, then the scalar statistics."""
    levels = len(stats["utilisation"])
    header = f"{'metric':<18}" + "".join(f"{'level ' + str(i + 1):>12}" for i in range(levels))
    lines = [header, "-" * len(header)]
    for key in PER_LEVEL:
        lines.append(f"{key:<18}" + "".join(f"{v:>12.4f}" for v in stats[key]))
    lines.append("")
    for key, value in stats.items():
        if key in PER_LEVEL:
            continue
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<18}{shown:>12}")
    return "\n".join(lines)
