"""Collisions: items with the same L-code tuple, and the disambiguation (dedup) code.

Dedup: within each group of items sharing an L-code tuple, items ordered by item index get 0, 1,
2, ...; an item alone in its group gets 0. Appending it makes every (L + 1)-row unique.

Optional reassignment (before dedup): the lowest-index item of a colliding group keeps its tuple;
each other member, in item-index order, moves to the last-level code with the smallest (biased)
distance whose tuple (s_1..s_{L-1}, s) is still free, and stays put only if none is. Earlier levels
never change, so the coarse semantics of an item are kept and only its finest code moves.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def dedup_codes(codes: np.ndarray) -> np.ndarray:
    """Disambiguation code (N,) int64 of code rows (N, L): rank by item index inside each group."""
    codes = np.asarray(codes)
    if codes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, group = np.unique(codes, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.lexsort((np.arange(len(group)), group))  # by group, then item index
    sorted_groups = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]  # first row of each group in `order`
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    dedup = np.empty(len(group), dtype=np.int64)
    dedup[order] = np.arange(len(order)) - group_start
    return dedup


def colliding_items(codes: np.ndarray) -> np.ndarray:
    """Indices of items that share their L-code tuple with an item of lower index. (M,)"""
    return np.flatnonzero(dedup_codes(codes) > 0)


def reassign_collisions(codes: np.ndarray, last_scores: np.ndarray) -> np.ndarray:
    """Move later members of colliding groups to their nearest free last-level code.

    codes: (N, L) assignments; last_scores: (M, K) last-level distances of the items returned by
    `colliding_items(codes)`, in that order. Returns new codes (N, L).
    """
    movers = colliding_items(codes)
    if last_scores.shape[0] != len(movers):
        raise InputError(f"need scores for {len(movers)} colliding items, got {last_scores.shape[0]}")
    codes = np.array(codes, dtype=np.int64, copy=True)
    keep = np.ones(len(codes), dtype=bool)
    keep[movers] = False
    taken = set(map(tuple, codes[keep].tolist()))
    for item, scores in zip(movers.tolist(), last_scores, strict=True):
        prefix = tuple(codes[item, :-1].tolist())
        for candidate in np.argsort(scores, kind="stable").tolist():
            if (*prefix, candidate) not in taken:
                codes[item, -1] = candidate
                break
        taken.add(tuple(codes[item].tolist()))
    return codes
