"""The catalog of a tokenizer: item ids <-> Semantic IDs (SIDs), the constrained-decoding tables and new items.

`SemanticIDCatalog` owns the `N` item ids (position = item index), their SIDs `codes (N, L+1)` in local codes
(last column the dedup code, rows unique), the codebook's cluster map `code_clusters (L, K)` and the frozen
quantizer's state that assigns codes to new items. It answers id -> index -> SID and SID -> item lookups
through a sorted trie, gives the trie in CSR form for constrained beam search (`prefix_tables`) and appends new
items with free dedup codes (`add_items`), never changing an existing SID.

Files (`save` / `from_files`): `item_ids.json` (ids in item-index order) and `sid_arrays.safetensors` (`codes`,
optional `code_clusters`, and the quantizer's state under `quantizer.<key>`). Entries other folders hold (the
`cluster_centroids` of earlier versions) are ignored on reading.

Imported relatively by `tokenization_s2gr.py`, so it travels with every checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import InputError, S2GRError, corrupt_file

# Free dedup codes kept above the largest one in use, so `add_items` can resolve new collisions without
# changing the vocabulary (which would shift the thinking-token ids the model was trained with).
DEFAULT_DEDUP_HEADROOM = 8
_QUANTIZER_PREFIX = "quantizer."


def item_key(item: Any) -> Any:
    """Catalog ids are strings; an integer id (`50` for MovieLens' "50") means its decimal string."""
    is_integer = isinstance(item, int | np.integer) and not isinstance(item, bool)
    return str(item) if is_integer else item


class _ReadableKeyError(KeyError):
    def __str__(self) -> str:
        # KeyError would print the message with quotes around it.
        return str(self.args[0]) if self.args else ""


class UnknownItemError(_ReadableKeyError, S2GRError, ValueError):
    """An item id that the tokenizer's catalog does not contain (a `KeyError` and a `ValueError`)."""


class InvalidSidError(_ReadableKeyError, S2GRError):
    """A code tuple that is not the SID of any catalog item."""


@dataclass(frozen=True)
class PrefixTables:
    """The catalog's SID trie in CSR form, for constrained beam search.

    Step `j` runs over `0..L` (levels, then dedup); `n_j` trie nodes sit at depth `j` (`n_0 = 1`, the root). The
    nodes of each depth are numbered in lexicographic order of their prefixes, so the children of a node are
    consecutive and ascending by code:

    - `offsets[j]`: LongTensor `(n_j + 1,)`; the children of depth-`j` node `i` are the depth-`j+1` nodes
      `offsets[j][i] .. offsets[j][i+1] - 1`;
    - `codes[j]`: LongTensor `(n_{j+1},)`, the local code (0..K-1, or 0..D-1 at `j = L`) of each depth-`j+1` node;
    - `items`: LongTensor `(N,)`, the item index of each leaf (depth `L+1` node).

    Memory: `8 * (Σ_j (n_j + 1 + n_{j+1}) + N)` bytes, at most `8 * ((2L + 2) * N + L + 2)`: linear in the catalog
    whatever the fan-out (a collision group of any size costs one entry per item).
    """

    offsets: list[torch.Tensor]
    codes: list[torch.Tensor]
    items: torch.Tensor

    @property
    def nbytes(self) -> int:
        """Bytes held by all tables."""
        tables = [*self.offsets, *self.codes, self.items]
        return sum(t.numel() * t.element_size() for t in tables)

    def to(self, device: torch.device | str) -> PrefixTables:
        """The same tables on `device`."""
        return PrefixTables(
            [t.to(device) for t in self.offsets], [t.to(device) for t in self.codes], self.items.to(device)
        )


@dataclass(frozen=True)
class _SidTrie:
    """The catalog's SID trie in sorted (CSR-like) form, built without a Python loop over items.

    Sorting the SIDs lexicographically numbers the nodes of each depth in order; `keys[j]` lists, for every node
    at depth `j+1` in that order, `parent_node * radices[j] + code`, an ascending array. A child is found by
    `searchsorted`, and its node id is its position in `keys[j]`. Leaves (depth `L+1`) are the sorted rows, so
    `order[leaf]` is the item index.
    """

    order: np.ndarray  # (N,) item indices in lexicographic SID order
    keys: tuple[np.ndarray, ...]  # L+1 arrays, keys[j]: (n_{j+1},) int64, ascending
    radices: tuple[int, ...]  # (K, ..., K, D): code range of each step

    @classmethod
    def build(cls, codes: np.ndarray, radices: tuple[int, ...], item_ids: Sequence[str]) -> _SidTrie:
        """Trie of `codes (N, L+1)`; raises `ValueError` naming the items when two share a SID."""
        order = np.lexsort(codes.T[::-1])
        ordered = codes[order]
        # starts[i, j]: sorted row i opens a new node at depth j+1 (its first j+1 codes differ from row i-1).
        starts = np.ones(codes.shape, dtype=bool)
        starts[1:] = np.logical_or.accumulate(ordered[1:] != ordered[:-1], axis=1)
        _raise_on_duplicates(~starts[:, -1], ordered, order, item_ids)
        keys = []
        node = np.zeros(len(codes), dtype=np.int64)  # each sorted row's node at the current depth
        for j, radix in enumerate(radices):
            first_rows = np.flatnonzero(starts[:, j])
            keys.append(node[first_rows] * radix + ordered[first_rows, j])
            node = np.cumsum(starts[:, j]) - 1
        return cls(order=order, keys=tuple(keys), radices=radices)

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """Node id at depth `J` of each prefix `codes (M, J)`, `J ≤ L+1` → `(M,)`, -1 where the prefix is not in
        the catalog; for `J = L+1` the item index."""
        node = np.zeros(len(codes), dtype=np.int64)
        for j in range(codes.shape[1]):
            code, keys, radix = codes[:, j], self.keys[j], self.radices[j]
            query = node * radix + code
            pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
            # The range test matters: an out-of-range code would alias a child of the next node.
            hit = (node >= 0) & (code >= 0) & (code < radix) & (keys[pos] == query)
            node = np.where(hit, pos, -1)
        if codes.shape[1] == len(self.keys):
            node = np.where(node >= 0, self.order[np.maximum(node, 0)], -1)
        return node

    def child_codes_of(self, step: int, node: int) -> np.ndarray:
        """Local codes that follow node `node` (a depth-`step` node) → `(fan_out,)`, ascending."""
        keys, radix = self.keys[step], self.radices[step]
        lo, hi = np.searchsorted(keys, [node * radix, (node + 1) * radix])
        return keys[lo:hi] - node * radix

    def csr_tables(self) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """`(offsets, codes, items)` as in `PrefixTables`, numpy int64."""
        offsets, codes = [], []
        n_parents = 1
        for keys, radix in zip(self.keys, self.radices, strict=True):
            parent, code = np.divmod(keys, radix)  # keys ascend, so each parent's children are consecutive
            counts = np.bincount(parent, minlength=n_parents)
            offsets.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
            codes.append(code)
            n_parents = len(keys)
        return offsets, codes, self.order.astype(np.int64)


def _raise_on_duplicates(
    repeated: np.ndarray, ordered: np.ndarray, order: np.ndarray, item_ids: Sequence[str]
) -> None:
    """Raise naming items whose SID equals the previous sorted row's (`repeated (N,)` bool)."""
    rows = np.flatnonzero(repeated)
    if len(rows) == 0:
        return
    examples = [
        f"{item_ids[order[r - 1]]!r} and {item_ids[order[r]]!r} share SID {tuple(ordered[r].tolist())}"
        for r in rows[:5]
    ]
    raise InputError(
        f"Semantic IDs must be unique, found {len(rows)} duplicate(s): {'; '.join(examples)}. "
        "Give colliding items distinct codes in the last (dedup) column."
    )


def to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def as_code_array(value: Any, name: str) -> np.ndarray:
    array = to_numpy(value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _check_item_ids(item_ids: Sequence[str], what: str) -> None:
    """Item ids must be strings and unique; the error names the offenders."""
    bad = [item for item in item_ids if not isinstance(item, str)]
    if bad:
        raise TypeError(f"{what} must be strings, got e.g. {bad[0]!r} ({type(bad[0]).__name__})")
    if len(set(item_ids)) != len(item_ids):
        seen: set[str] = set()
        repeated = sorted({item for item in item_ids if item in seen or seen.add(item)})
        raise InputError(f"{what} must be unique, repeated: {repeated[:10]}")


def _freeze_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A detached CPU copy of a quantizer state dict: tensors, numpy arrays or JSON values, kept as given."""
    frozen: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            frozen[key] = value.detach().cpu().clone()
        elif isinstance(value, (np.ndarray, np.generic)):
            frozen[key] = np.array(value)
        else:
            try:
                json.dumps(value)
            except TypeError as error:
                raise TypeError(
                    f"quantizer state entry {key!r} must be a tensor, an array or JSON-serialisable"
                ) from error
            frozen[key] = value
    return frozen


def _pack_state(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Quantizer state → safetensors entries plus metadata that restores numpy arrays and JSON values."""
    tensors, numpy_keys, extras = {}, [], {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[_QUANTIZER_PREFIX + key] = value.contiguous()
        elif isinstance(value, np.ndarray):
            tensors[_QUANTIZER_PREFIX + key] = torch.from_numpy(np.ascontiguousarray(value))
            numpy_keys.append(key)
        else:
            extras[key] = value
    metadata = {"quantizer_numpy_keys": json.dumps(numpy_keys), "quantizer_json": json.dumps(extras)}
    return tensors, metadata


def _unpack_state(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> dict[str, Any] | None:
    if "quantizer_json" not in metadata:
        return None
    numpy_keys = set(json.loads(metadata["quantizer_numpy_keys"]))
    state: dict[str, Any] = {}
    for name, tensor in tensors.items():
        if name.startswith(_QUANTIZER_PREFIX):
            key = name[len(_QUANTIZER_PREFIX) :]
            state[key] = tensor.numpy() if key in numpy_keys else tensor
    state.update(json.loads(metadata["quantizer_json"]))
    return state


class SemanticIDCatalog:
    """Items ↔ Semantic IDs of one catalog (see the module docstring).

    Args:
        item_ids: `N` unique item ids (strings); position = item index.
        codes: `(N, L+1)` integer SIDs, last column the dedup code; rows must be unique.
        codebook_size: `K`; defaults to `code_clusters.shape[1]`.
        code_clusters: optional `(L, K)` cluster of every code (`g_l(s)` of docs/method.md §3).
        quantizer_state: optional frozen quantizer state dict (tensors, arrays or JSON values), stored as is.
        dedup_size: `D`; defaults to the largest dedup code + 1 + `DEFAULT_DEDUP_HEADROOM` (free codes for
            `add_items`; `D` never changes afterwards, so token ids stay fixed).
        num_levels: `L`, checked against `codes` when given.
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        codes: Any,
        codebook_size: int | None = None,
        code_clusters: Any = None,
        quantizer_state: Mapping[str, Any] | None = None,
        dedup_size: int | None = None,
        num_levels: int | None = None,
    ) -> None:
        if codes is None:
            raise InputError("S2GRTokenizer needs `codes` (N, L+1) together with `item_ids`")
        # Own copies: the tables and caches derived from them must not change under the caller's feet.
        self._set_items(list(item_ids), as_code_array(codes, "codes").copy(), num_levels)
        self._set_codebook(codebook_size, code_clusters)
        self._set_dedup_size(dedup_size)
        self._quantizer_state = None if quantizer_state is None else _freeze_state(quantizer_state)
        self._trie = _SidTrie.build(self._codes, self.radices, self._item_ids)
        self._tables: dict[str, PrefixTables] = {}

    # ----------------------------------------------------------------------------------------------- files

    @classmethod
    def from_files(cls, items_file: str | None, arrays_file: str | None, **kwargs: Any) -> SemanticIDCatalog:
        """The catalog written by `save`; `kwargs` (sizes) go to the constructor."""
        if items_file is None or arrays_file is None:
            raise InputError(
                "S2GRTokenizer needs `item_ids` and `codes`, or a folder written by `save_pretrained`"
            )
        with open(items_file, encoding="utf-8") as handle:
            item_ids = json.load(handle)
        try:
            with safe_open(arrays_file, framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(arrays_file)
        except SafetensorError as error:
            raise corrupt_file(arrays_file, error) from None
        arrays = {name: tensor.numpy() for name, tensor in tensors.items() if "." not in name}
        return cls(
            item_ids,
            arrays["codes"],
            code_clusters=arrays.get("code_clusters"),
            quantizer_state=_unpack_state(tensors, metadata),
            **kwargs,
        )

    def save(self, items_file: str, arrays_file: str) -> None:
        """Write `item_ids.json` and `sid_arrays.safetensors` (the file names are the caller's)."""
        with open(items_file, "w", encoding="utf-8") as handle:
            json.dump(self._item_ids, handle, ensure_ascii=False)
        tensors = {"codes": torch.from_numpy(self._codes)}
        if self._code_clusters is not None:
            tensors["code_clusters"] = torch.from_numpy(self._code_clusters)
        metadata = {}
        if self._quantizer_state is not None:
            state_tensors, metadata = _pack_state(self._quantizer_state)
            tensors.update(state_tensors)
        save_file(tensors, arrays_file, metadata=metadata)

    # ------------------------------------------------------------------------------------------ construction

    def _set_items(self, item_ids: list[str], codes: np.ndarray, num_levels: int | None) -> None:
        if not item_ids:
            raise InputError("the catalog is empty: S2GRTokenizer needs at least one item")
        _check_item_ids(item_ids, "item_ids")
        if codes.ndim != 2 or codes.shape[0] != len(item_ids) or codes.shape[1] < 2:
            raise InputError(
                f"codes must have shape (N, L+1) = ({len(item_ids)}, levels + 1) with at least one level, "
                f"got {codes.shape}"
            )
        if num_levels is not None and num_levels != codes.shape[1] - 1:
            raise InputError(f"num_levels={num_levels} but codes have {codes.shape[1] - 1} levels")
        self._item_ids = item_ids
        self._item_index = {item: i for i, item in enumerate(item_ids)}
        self._codes = codes

    def _set_codebook(self, codebook_size: int | None, code_clusters: Any) -> None:
        levels = self.num_levels
        clusters = None if code_clusters is None else as_code_array(code_clusters, "code_clusters").copy()
        if codebook_size is None:
            if clusters is None:
                raise InputError("codebook_size is required when code_clusters is not given")
            codebook_size = clusters.shape[-1]
        level_codes = self._codes[:, :levels]
        if level_codes.min() < 0 or level_codes.max() >= codebook_size:
            raise InputError(
                f"level codes must lie in [0, codebook_size={codebook_size}), "
                f"got [{level_codes.min()}, {level_codes.max()}]"
            )
        if clusters is not None and (clusters.shape != (levels, codebook_size) or clusters.min() < 0):
            raise InputError(
                f"code_clusters must be non-negative with shape (L, K) = ({levels}, {codebook_size}), "
                f"got shape {clusters.shape}"
            )
        self._codebook_size = int(codebook_size)
        self._code_clusters = clusters

    def _set_dedup_size(self, dedup_size: int | None) -> None:
        dedup = self._codes[:, -1]
        needed = int(dedup.max()) + 1
        if dedup.min() < 0:
            raise InputError(f"dedup codes must be non-negative, got {dedup.min()}")
        if dedup_size is None:
            dedup_size = needed + DEFAULT_DEDUP_HEADROOM
        if dedup_size < needed:
            raise InputError(f"dedup_size={dedup_size} but codes use dedup code {needed - 1}")
        self._dedup_size = int(dedup_size)

    # ---------------------------------------------------------------------------------------------- sizes

    @property
    def num_levels(self) -> int:
        """`L`, the number of code levels (the dedup level not counted)."""
        return self._codes.shape[1] - 1

    @property
    def codebook_size(self) -> int:
        """`K`, codes per level."""
        return self._codebook_size

    @property
    def dedup_size(self) -> int:
        """`D`, size of the dedup level."""
        return self._dedup_size

    @property
    def radices(self) -> tuple[int, ...]:
        """Code range of each code step: `(K, ..., K, D)`."""
        return (self._codebook_size,) * self.num_levels + (self._dedup_size,)

    @property
    def num_items(self) -> int:
        """`N`, catalog size."""
        return len(self._item_ids)

    @property
    def item_ids(self) -> list[str]:
        """Item ids in item-index order (a copy)."""
        return list(self._item_ids)

    @property
    def codes(self) -> np.ndarray:
        """`(N, L+1)` int64 SIDs in local codes (read-only view)."""
        view = self._codes.view()
        view.setflags(write=False)
        return view

    @property
    def code_clusters(self) -> np.ndarray | None:
        """`(L, K)` int64 cluster of every code, or None."""
        return None if self._code_clusters is None else self._code_clusters.copy()

    @property
    def quantizer_state(self) -> dict[str, Any] | None:
        """The frozen quantizer's state dict as stored (a shallow copy), or None."""
        return None if self._quantizer_state is None else dict(self._quantizer_state)

    # ------------------------------------------------------------------------------------------- lookups

    def indices(self, row: Iterable[Any], on_unknown: str, where: str) -> list[int]:
        """Item indices of the ids in `row` (an integer id means its decimal string); an unknown id raises
        `UnknownItemError` naming `where` (`on_unknown="error"`) or is dropped (`"skip"`)."""
        index = self._item_index
        out = []
        for item in map(item_key, row):
            if not isinstance(item, str):
                raise UnknownItemError(
                    f"item ids are strings, got {type(item).__name__} {item!r} in {where}: pass str(id)"
                )
            i = index.get(item)
            if i is not None:
                out.append(i)
            elif on_unknown == "error":
                raise UnknownItemError(
                    f"unknown item id {item!r} in {where}; pass on_unknown='skip' to drop unknown items"
                )
        return out

    def rows_to_indices(self, rows: Sequence[Sequence[str]], on_unknown: str, what: str) -> list[list[int]]:
        """Item indices of each row of item ids (see `indices`); a row that is no list, or is left empty, raises
        naming `what` and the row."""
        if on_unknown not in ("error", "skip"):
            raise InputError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}")
        out = []
        for b, row in enumerate(rows):
            if isinstance(row, str) or not isinstance(row, Iterable):
                raise TypeError(f"{what} {b} must be a list of item ids, got {type(row).__name__}")
            indices = self.indices(row, on_unknown, f"{what} {b}")
            if not indices:
                skipped = " after skipping unknown items" if on_unknown == "skip" else ""
                raise InputError(f"{what} {b} is empty{skipped}: every row needs at least one known item")
            out.append(indices)
        return out

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """Item index of each SID `codes (M, L+1)` in local codes → `(M,)`, -1 where it is no catalog SID."""
        return self._trie.lookup(codes)

    def prefix_tables(
        self, device: torch.device | str | None = None, without: Sequence[str] = ()
    ) -> PrefixTables:
        """Constrained-decoding tables of the catalog (see `PrefixTables`), cached per device.

        Read off the sorted SID trie (itself built at construction by one lexicographic sort, `O(N log N)`);
        memory `O(L * N)`, whatever the fan-out of any node. `without`: item ids left out of the trie (item
        indices stay the catalog's), for items the model must not generate, such as cold items: leaving them
        out, rather than excluding them after the softmax, keeps every other item's probability as it was.
        Built anew at each call (no cache).
        """
        key = str(torch.device(device if device is not None else "cpu"))
        if without:
            keep = np.setdiff1d(np.arange(len(self._item_ids)), self.indices(without, "error", "without"))
            trie = _SidTrie.build(self._codes[keep], self.radices, [self._item_ids[row] for row in keep])
            offsets, codes, items = trie.csr_tables()
            tables = PrefixTables(
                [torch.from_numpy(t) for t in offsets],
                [torch.from_numpy(t) for t in codes],
                torch.from_numpy(keep[items]),
            )
            return tables.to(key)
        if key not in self._tables:
            if "cpu" not in self._tables:
                offsets, codes, items = self._trie.csr_tables()
                self._tables["cpu"] = PrefixTables(
                    [torch.from_numpy(t) for t in offsets],
                    [torch.from_numpy(t) for t in codes],
                    torch.from_numpy(items),
                )
            self._tables[key] = self._tables["cpu"].to(key)
        return self._tables[key]

    # ------------------------------------------------------------------------------------------ new items

    def add_items(
        self,
        new_item_ids: Sequence[str],
        codes: Any = None,
        embeddings: Any = None,
        assign_fn: Callable[[Any], Any] | None = None,
    ) -> np.ndarray:
        """Give new items SIDs with the frozen codebook, leaving every existing SID unchanged (see
        `S2GRTokenizer.add_items`); returns the `(M, L+1)` SIDs given to them, in order."""
        new_ids = list(new_item_ids)
        if not new_ids:
            return np.empty((0, self.num_levels + 1), dtype=np.int64)
        _check_item_ids(new_ids, "new_item_ids")
        known = [item for item in new_ids if item in self._item_index]
        if known:
            raise InputError(f"items already in the catalog: {known[:10]}")
        prefixes = self._new_prefixes(len(new_ids), codes, embeddings, assign_fn)
        new_codes = np.concatenate([prefixes, self._free_dedup_codes(prefixes)[:, None]], axis=1)
        codes_all = np.concatenate([self._codes, new_codes])
        ids_all = self._item_ids + new_ids
        trie = _SidTrie.build(codes_all, self.radices, ids_all)
        self._item_index.update({item: len(self._item_ids) + i for i, item in enumerate(new_ids)})
        self._item_ids, self._codes, self._trie = ids_all, codes_all, trie
        self._tables.clear()
        return new_codes

    def _new_prefixes(
        self, count: int, codes: Any, embeddings: Any, assign_fn: Callable | None
    ) -> np.ndarray:
        if codes is not None and embeddings is not None:
            raise InputError("pass either codes or embeddings (with assign_fn), not both")
        if codes is None:
            if embeddings is None or assign_fn is None:
                raise InputError("add_items needs codes (M, L), or embeddings together with assign_fn")
            codes = assign_fn(embeddings)
        prefixes = as_code_array(codes, "codes")
        if prefixes.shape != (count, self.num_levels):
            raise InputError(
                f"codes must have shape (M, L) = ({count}, {self.num_levels}), got {prefixes.shape}"
            )
        if prefixes.size and (prefixes.min() < 0 or prefixes.max() >= self.codebook_size):
            raise InputError(f"codes must lie in [0, {self.codebook_size})")
        return prefixes

    def _free_dedup_codes(self, prefixes: np.ndarray) -> np.ndarray:
        """Lowest dedup codes not yet used by each new item's level codes `(M, L)` → `(M,)`."""
        dedup = np.empty(len(prefixes), dtype=np.int64)
        if not len(prefixes):
            return dedup
        groups, inverse = np.unique(prefixes, axis=0, return_inverse=True)
        nodes = self._trie.lookup(groups)
        # One pass per distinct new code tuple (not per catalog item); usually a handful.
        for g, node in enumerate(nodes.tolist()):
            used = set() if node < 0 else set(self._trie.child_codes_of(self.num_levels, node).tolist())
            members = np.flatnonzero(inverse.reshape(-1) == g)
            free = (d for d in range(len(used) + len(members)) if d not in used)
            dedup[members] = [next(free) for _ in members]
            if dedup[members].max() >= self.dedup_size:
                raise InputError(
                    f"codes {tuple(groups[g].tolist())} would need dedup code {dedup[members].max()} but "
                    f"dedup_size is {self.dedup_size}; rebuild the tokenizer with a larger dedup_size "
                    "(the vocabulary and the model's embeddings change)"
                )
        return dedup


__all__ = [
    "DEFAULT_DEDUP_HEADROOM",
    "InvalidSidError",
    "PrefixTables",
    "SemanticIDCatalog",
    "UnknownItemError",
]
