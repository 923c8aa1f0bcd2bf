"""Item co-occurrence graph and personalized-PageRank propagation (docs/method.md §1).

Graph. A_ij counts how often items i != j appear at most `window` positions apart in a training
history, in either order (so A is symmetric). Repeats of one item next to itself are not counted:
they say nothing about relations between items. By default a unit self-loop is added to every item
(Ã = A + I, the GCN renormalisation) and Â = D^-1/2 Ã D^-1/2 with D = diag(row sums of Ã). The
self-loop makes an isolated item (no training co-occurrence, e.g. a new item) keep its content
exactly: its row of Â is e_i, so every H_k row equals its X row and H_align = X for it. Without
self-loops, isolated rows have degree 0 and get d^-1/2 = 0 (an all-zero row), not a division by zero.

Everything is scipy.sparse and vectorised numpy (no Python loop over histories), so 1e6 items are
fine: memory is O(number of co-occurring pairs + N·E), never O(N²).

Propagation, with X the content embeddings:
    H_0 = X;   H_k = (1 - a) Â H_{k-1} + a X;   H_align = Σ_{k=0..Kg} β_k H_k,
    β_k = a (1 - a)^k / Σ_{j=0..Kg} a (1 - a)^j.
With a = 1 every H_k = X, so H_align = X.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InputError


def _pairs_at_offset(items: np.ndarray, seq_ids: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) item pairs `offset` positions apart inside one sequence, self-pairs dropped."""
    same_seq = seq_ids[:-offset] == seq_ids[offset:]
    left, right = items[:-offset][same_seq], items[offset:][same_seq]
    keep = left != right
    return left[keep], right[keep]


def cooccurrence_counts(train_sequences: list[np.ndarray], num_items: int, window: int) -> sp.csr_matrix:
    """Symmetric raw counts A (num_items, num_items), zero diagonal."""
    if window < 1:
        raise InputError(f"window must be >= 1, got {window}")
    lengths = np.array([len(s) for s in train_sequences], dtype=np.int64)
    items = np.concatenate(
        [np.asarray(s, dtype=np.int64) for s in train_sequences] or [np.zeros(0, np.int64)]
    )
    if items.size and (items.min() < 0 or items.max() >= num_items):
        raise InputError(f"item indices must lie in [0, {num_items}), got [{items.min()}, {items.max()}]")
    # One flat array of all histories; seq_ids stop pairs from crossing a history boundary.
    seq_ids = np.repeat(np.arange(len(lengths)), lengths)
    pairs = [_pairs_at_offset(items, seq_ids, k) for k in range(1, window + 1) if k < items.size]
    rows = np.concatenate([p[0] for p in pairs] + [np.zeros(0, np.int64)])
    cols = np.concatenate([p[1] for p in pairs] + [np.zeros(0, np.int64)])
    ones = np.ones(rows.size, dtype=np.float64)
    counts = sp.coo_matrix((ones, (rows, cols)), shape=(num_items, num_items)).tocsr()  # sums repeats
    return (counts + counts.T).tocsr()


def normalize_adjacency(adj: sp.spmatrix, self_loops: bool = True) -> sp.csr_matrix:
    """Â = D^-1/2 (A [+ I]) D^-1/2; zero-degree rows stay zero instead of dividing by zero."""
    adj = sp.csr_matrix(adj, dtype=np.float64)
    if self_loops:
        adj = adj + sp.identity(adj.shape[0], dtype=np.float64, format="csr")
    degree = np.asarray(adj.sum(axis=1)).ravel()  # (N,)
    inv_sqrt = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=inv_sqrt, where=degree > 0)
    scale = sp.diags(inv_sqrt)
    return (scale @ adj @ scale).tocsr()


def build_cooccurrence_graph(
    train_sequences: list[np.ndarray], num_items: int, window: int, self_loops: bool = True
) -> sp.csr_matrix:
    """Normalised symmetric co-occurrence graph Â (num_items, num_items) from training histories only.

    The caller must pass only training items (no validation/test targets), or the codes leak them.
    """
    return normalize_adjacency(cooccurrence_counts(train_sequences, num_items, window), self_loops)


def propagation_weights(alpha: float, num_hops: int) -> np.ndarray:
    """β_k = a (1 - a)^k, normalised over k = 0..Kg. (Kg + 1,)"""
    raw = alpha * (1.0 - alpha) ** np.arange(num_hops + 1)
    return raw / raw.sum()


def propagate(x: np.ndarray, adj_norm: sp.spmatrix, alpha: float, num_hops: int) -> np.ndarray:
    """H_align = Σ_k β_k H_k with H_0 = X, H_k = (1 - a) Â H_{k-1} + a X. Returns (N, E) like x."""
    if not 0.0 < alpha <= 1.0:
        raise InputError(f"alpha must be in (0, 1], got {alpha}")
    if adj_norm.shape != (x.shape[0], x.shape[0]):
        raise InputError(f"adjacency {adj_norm.shape} does not match {x.shape[0]} items")
    betas = [float(b) for b in propagation_weights(alpha, num_hops)]  # Python floats keep x's dtype
    alpha = float(alpha)
    x = np.asarray(x)
    adj = adj_norm.astype(x.dtype)  # same dtype as x: a float32 X of 1e6 rows must not become float64
    h = x
    out = betas[0] * x
    for beta in betas[1:]:
        h = (1.0 - alpha) * (adj @ h) + alpha * x
        out += beta * h
    return out.astype(x.dtype, copy=False)
