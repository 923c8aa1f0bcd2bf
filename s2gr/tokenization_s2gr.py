"""`S2GRTokenizer`: the item ↔ Semantic-ID (SID) tokenizer of S2GR, a transformers `PreTrainedTokenizer`.

Self-contained on purpose (stdlib, numpy, torch, safetensors and transformers only; nothing from `s2gr`):
`register_for_auto_class` copies this single file next to a saved tokenizer, so
`AutoTokenizer.from_pretrained(folder, trust_remote_code=True)` works without the package installed.

Vocabulary (ARCHITECTURE.md; `L` levels, `K` codes per level, `D` dedup codes, `T` thinking steps):

    0..3                      <pad> <bos> <eos> <unk>
    4 + l*K + c               <s{l+1}_{c}>     level l in 0..L-1, code c in 0..K-1
    4 + L*K + d               <d_{d}>          dedup code d in 0..D-1
    4 + L*K + D + t           <think_{t+1}>    thinking step t in 0..T-1

Code step `j` (levels `0..L-1`, then the dedup step `j = L`) therefore has token offset `4 + j*K`.

Files written by `save_pretrained` (besides `tokenizer_config.json` with `L, K, D, T` and the options):
`vocab.json` (token → id, checked on load), `item_ids.json` (item ids in item-index order) and
`sid_arrays.safetensors` (`codes (N, L+1)`, optional `code_clusters (L, K)`, `cluster_centroids (L, Kc, latent)`
and the frozen quantizer's state under `quantizer.<key>`).
"""

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import BatchEncoding, PreTrainedTokenizer
from transformers.utils import PaddingStrategy

from .errors import InputError, S2GRError, corrupt_file

VOCAB_FILES = {
    "vocab_file": "vocab.json",
    "items_file": "item_ids.json",
    "arrays_file": "sid_arrays.safetensors",
}
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
CODE_TOKEN_OFFSET = len(SPECIAL_TOKENS)
# Free dedup codes kept above the largest one in use, so `add_items` can resolve new collisions without
# changing the vocabulary (which would shift the thinking-token ids the model was trained with).
DEFAULT_DEDUP_HEADROOM = 8
_QUANTIZER_PREFIX = "quantizer."
_TOKEN_PATTERN = re.compile(r"<[^<>\s]*>|[^<>\s]+")
_LOOKUP_ERRORS = ("error", "none")

OnUnknown = Literal["error", "skip"]
OnInvalid = Literal["error", "none"]


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

    def to(self, device: torch.device | str) -> "PrefixTables":
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
    def build(cls, codes: np.ndarray, radices: tuple[int, ...], item_ids: Sequence[str]) -> "_SidTrie":
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


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _as_code_array(value: Any, name: str) -> np.ndarray:
    array = _to_numpy(value)
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


def _padding_strategy(padding: bool | str | PaddingStrategy) -> PaddingStrategy:
    if padding is True:
        return PaddingStrategy.LONGEST
    if padding is False:
        return PaddingStrategy.DO_NOT_PAD
    return PaddingStrategy(padding)


class S2GRTokenizer(PreTrainedTokenizer):
    """Maps items to Semantic-ID tokens and back, and builds encoder inputs, decoder labels and the
    constrained-decoding tables of S2GR (see the module docstring for the vocabulary layout).

    Build it from the codebook's output (`from_semantic_ids`) or from the pieces:

    Args:
        item_ids: `N` unique item ids; position = item index.
        codes: `(N, L+1)` integer SIDs, last column the dedup code; rows must be unique.
        codebook_size: `K`; defaults to `code_clusters.shape[1]`.
        num_thinking: `T`, `L` (default, S2GR labels) or 0 (plain TIGER labels).
        code_clusters: optional `(L, K)` cluster of every code (`g_l(s)` of METHOD.md §3).
        cluster_centroids: optional `(L, Kc, latent)` cluster centroids `c_{l,k}`.
        quantizer_state: optional frozen quantizer state dict (tensors, arrays or JSON values), stored as is.
        dedup_size: `D`; defaults to the largest dedup code + 1 + `DEFAULT_DEDUP_HEADROOM` (free codes for
            `add_items`; `D` never changes afterwards, so token ids stay fixed).
        max_history_items: items kept (the most recent) per history in `encode_histories`.
        padding_side: "right" (default) or "left".
        vocab_file, items_file, arrays_file, num_levels: set by `from_pretrained` from the saved files.
    """

    vocab_files_names = VOCAB_FILES

    def __init__(
        self,
        item_ids: Sequence[str] | None = None,
        codes: Any = None,
        codebook_size: int | None = None,
        num_thinking: int | None = None,
        code_clusters: Any = None,
        cluster_centroids: Any = None,
        quantizer_state: Mapping[str, Any] | None = None,
        dedup_size: int | None = None,
        max_history_items: int = 20,
        padding_side: str = "right",
        vocab_file: str | None = None,
        items_file: str | None = None,
        arrays_file: str | None = None,
        num_levels: int | None = None,
        **kwargs: Any,
    ) -> None:
        if item_ids is None:
            item_ids, codes, code_clusters, cluster_centroids, quantizer_state = self._read_files(
                items_file, arrays_file
            )
        if codes is None:
            raise InputError("S2GRTokenizer needs `codes` (N, L+1) together with `item_ids`")
        # Own copies: the tables and caches derived from them must not change under the caller's feet.
        self._set_catalog(list(item_ids), _as_code_array(codes, "codes").copy(), num_levels)
        self._set_codebook(codebook_size, code_clusters, cluster_centroids)
        self._set_sizes(dedup_size, num_thinking)
        self._quantizer_state = None if quantizer_state is None else _freeze_state(quantizer_state)
        self.max_history_items = max_history_items
        self._trie = _SidTrie.build(self._codes, self._radices(), self._item_ids)
        self._tables: dict[str, PrefixTables] = {}
        self._vocab_tokens = self._build_vocab_tokens()
        self._vocab = {token: i for i, token in enumerate(self._vocab_tokens)}
        if vocab_file is not None:
            self._check_vocab_file(vocab_file)
        for name, token in SPECIAL_TOKENS.items():
            if str(kwargs.setdefault(name, token)) != token:
                raise InputError(f"{name} is fixed to {token!r} by the S2GR vocabulary layout")
        super().__init__(
            num_levels=self.num_levels,
            codebook_size=self.codebook_size,
            dedup_size=self.dedup_size,
            num_thinking=self.num_thinking,
            max_history_items=max_history_items,
            padding_side=padding_side,
            **kwargs,
        )

    # ----------------------------------------------------------------------------------------- construction

    @classmethod
    def from_semantic_ids(
        cls, item_ids: Sequence[str], semantic_ids: Any, num_thinking: int | None = None, **kwargs: Any
    ) -> "S2GRTokenizer":
        """Tokenizer from the codebook's result: any object with `codes (N, L+1)`, `cluster_of_code (L, K)`,
        `cluster_centroids (L, Kc, latent)` and `quantizer` (None, or an object with `state_dict()`).
        `kwargs` go to the constructor."""
        quantizer = getattr(semantic_ids, "quantizer", None)
        clusters = _to_numpy(semantic_ids.cluster_of_code)
        kwargs.setdefault("codebook_size", clusters.shape[1])
        return cls(
            item_ids=item_ids,
            codes=semantic_ids.codes,
            num_thinking=num_thinking,
            code_clusters=clusters,
            cluster_centroids=semantic_ids.cluster_centroids,
            quantizer_state=None if quantizer is None else quantizer.state_dict(),
            **kwargs,
        )

    @staticmethod
    def _read_files(items_file: str | None, arrays_file: str | None) -> tuple[Any, ...]:
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
        return (
            item_ids,
            arrays["codes"],
            arrays.get("code_clusters"),
            arrays.get("cluster_centroids"),
            _unpack_state(tensors, metadata),
        )

    def _set_catalog(self, item_ids: list[str], codes: np.ndarray, num_levels: int | None) -> None:
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

    def _set_codebook(self, codebook_size: int | None, code_clusters: Any, cluster_centroids: Any) -> None:
        levels = self._codes.shape[1] - 1
        clusters = None if code_clusters is None else _as_code_array(code_clusters, "code_clusters").copy()
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
        centroids = None if cluster_centroids is None else _to_numpy(cluster_centroids).astype(np.float32)
        if centroids is not None:
            if centroids.ndim != 3 or centroids.shape[0] != levels:
                raise InputError(f"cluster_centroids must be (L={levels}, Kc, latent), got {centroids.shape}")
            if clusters is not None and clusters.max() >= centroids.shape[1]:
                raise InputError(
                    f"code_clusters refer to cluster {clusters.max()} but only {centroids.shape[1]} centroids"
                )
        self._codebook_size = int(codebook_size)
        self._code_clusters = clusters
        self._cluster_centroids = centroids

    def _set_sizes(self, dedup_size: int | None, num_thinking: int | None) -> None:
        dedup = self._codes[:, -1]
        needed = int(dedup.max()) + 1
        if dedup.min() < 0:
            raise InputError(f"dedup codes must be non-negative, got {dedup.min()}")
        if dedup_size is None:
            dedup_size = needed + DEFAULT_DEDUP_HEADROOM
        if dedup_size < needed:
            raise InputError(f"dedup_size={dedup_size} but codes use dedup code {needed - 1}")
        levels = self._codes.shape[1] - 1
        num_thinking = levels if num_thinking is None else num_thinking
        if num_thinking not in (0, levels):
            raise InputError(
                f"num_thinking must be {levels} (one thinking step per level) or 0 (TIGER), got {num_thinking}"
            )
        self._dedup_size = int(dedup_size)
        self._num_thinking = int(num_thinking)

    def _radices(self) -> tuple[int, ...]:
        return (self._codebook_size,) * self.num_levels + (self._dedup_size,)

    def _build_vocab_tokens(self) -> list[str]:
        levels = [
            f"<s{level + 1}_{code}>" for level in range(self.num_levels) for code in range(self.codebook_size)
        ]
        dedup = [f"<d_{d}>" for d in range(self.dedup_size)]
        think = [f"<think_{t + 1}>" for t in range(self.num_thinking)]
        return [*SPECIAL_TOKENS.values(), *levels, *dedup, *think]

    def _check_vocab_file(self, vocab_file: str) -> None:
        with open(vocab_file, encoding="utf-8") as handle:
            saved = json.load(handle)
        if saved != self._vocab:
            raise InputError(
                f"{vocab_file} does not match the vocabulary implied by L={self.num_levels}, "
                f"K={self.codebook_size}, D={self.dedup_size}, T={self.num_thinking}: the folder is inconsistent"
            )

    # --------------------------------------------------------------------------------------------- properties

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
    def num_thinking(self) -> int:
        """`T`, thinking steps (`L` or 0)."""
        return self._num_thinking

    @property
    def num_items(self) -> int:
        """`N`, catalog size."""
        return len(self._item_ids)

    @property
    def code_token_offset(self) -> int:
        """Id of `<s1_0>`: code step `j` (level, or dedup at `j = L`) starts at `code_token_offset + j*K`."""
        return CODE_TOKEN_OFFSET

    @property
    def think_token_offset(self) -> int:
        """Id of `<think_1>`."""
        return CODE_TOKEN_OFFSET + self.num_levels * self.codebook_size + self.dedup_size

    @property
    def vocab_size(self) -> int:
        """`4 + L*K + D + T`."""
        return len(self._vocab_tokens)

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
    def cluster_of_code(self) -> np.ndarray | None:
        """Alias of `code_clusters`, under the codebook's `SemanticIDs` name."""
        return self.code_clusters

    @property
    def cluster_centroids(self) -> np.ndarray | None:
        """`(L, Kc, latent)` float32 cluster centroids, or None."""
        return None if self._cluster_centroids is None else self._cluster_centroids.copy()

    @property
    def quantizer_state(self) -> dict[str, Any] | None:
        """The frozen quantizer's state dict as stored (a shallow copy), or None."""
        return None if self._quantizer_state is None else dict(self._quantizer_state)

    def code_token_id(self, level: Any, code: Any) -> Any:
        """Token id of local `code` at code step `level` (0-based; `level = L` is the dedup step).
        Works elementwise on integer arrays/tensors too."""
        level_arr, code_arr = _to_numpy(level), _to_numpy(code)
        radix = np.where(level_arr == self.num_levels, self.dedup_size, self.codebook_size)
        if np.any((level_arr < 0) | (level_arr > self.num_levels) | (code_arr < 0) | (code_arr >= radix)):
            raise InputError(
                f"(level, code) out of range: L={self.num_levels}, K={self.codebook_size}, "
                f"D={self.dedup_size}"
            )
        return CODE_TOKEN_OFFSET + level * self.codebook_size + code

    def think_token_id(self, step: int) -> int:
        """Token id of `<think_{step+1}>`, `step` 0-based."""
        if not 0 <= step < self.num_thinking:
            raise InputError(f"thinking step must lie in [0, {self.num_thinking}), got {step}")
        return self.think_token_offset + step

    # ---------------------------------------------------------------------- PreTrainedTokenizer machinery

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self._vocab)
        vocab.update(self._added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        # Tokens are written back to back ("<s1_5><s2_17>"); whitespace between them is allowed.
        return _TOKEN_PATTERN.findall(text)

    def _convert_token_to_id(self, token: str) -> int:
        return self._vocab.get(token, self._vocab[SPECIAL_TOKENS["unk_token"]])

    def _convert_id_to_token(self, index: int) -> str:
        if 0 <= index < len(self._vocab_tokens):
            return self._vocab_tokens[index]
        return SPECIAL_TOKENS["unk_token"]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write `vocab.json`, `item_ids.json` and `sid_arrays.safetensors`; returns their paths."""
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        paths = {key: os.path.join(save_directory, prefix + name) for key, name in VOCAB_FILES.items()}
        with open(paths["vocab_file"], "w", encoding="utf-8") as handle:
            json.dump(self._vocab, handle, ensure_ascii=False, indent=0)
        with open(paths["items_file"], "w", encoding="utf-8") as handle:
            json.dump(self._item_ids, handle, ensure_ascii=False)
        tensors = {"codes": torch.from_numpy(self._codes)}
        if self._code_clusters is not None:
            tensors["code_clusters"] = torch.from_numpy(self._code_clusters)
        if self._cluster_centroids is not None:
            tensors["cluster_centroids"] = torch.from_numpy(self._cluster_centroids)
        metadata = {}
        if self._quantizer_state is not None:
            state_tensors, metadata = _pack_state(self._quantizer_state)
            tensors.update(state_tensors)
        save_file(tensors, paths["arrays_file"], metadata=metadata)
        return tuple(paths.values())

    def __call__(
        self, text: Any = None, *args: Any, targets: Sequence[str] | None = None, **kwargs: Any
    ) -> BatchEncoding:
        """`tokenizer(histories, targets=..., ...)` (or `text_target=`) → `encode_histories`, for a batch of
        histories (a list of lists of item-id strings). Anything else (SID token strings such as
        `"<s1_5><s2_17><s3_0><d_0>"`) goes through the standard `PreTrainedTokenizer.__call__`."""
        is_histories = (
            isinstance(text, (list, tuple))
            and len(text) > 0
            and all(isinstance(h, (list, tuple)) and all(isinstance(i, str) for i in h[:1]) for h in text)
            and not kwargs.get("is_split_into_words", False)
        )
        if targets is None and not is_histories:
            return super().__call__(text, *args, **kwargs)
        if args:
            raise TypeError(
                "encode histories with keyword arguments only, e.g. tokenizer(histories, targets=...)"
            )
        if targets is None:
            targets = kwargs.pop("text_target", None)
        return self.encode_histories(text, targets=targets, **kwargs)

    # ---------------------------------------------------------------------------------------------- encoding

    def encode_histories(
        self,
        histories: Sequence[Sequence[str]],
        targets: Sequence[str] | None = None,
        max_history_items: int | None = None,
        padding: bool | str | PaddingStrategy = True,
        truncation: bool = True,
        return_tensors: str | None = "pt",
        on_unknown: OnUnknown = "error",
        padding_side: str | None = None,
    ) -> BatchEncoding:
        """Encoder inputs (and decoder labels) for a batch of `B` histories.

        Args:
            histories: item ids per user, oldest first.
            targets: optional next item per user → `labels`.
            max_history_items: items kept per history with `truncation` (the most recent); default
                `self.max_history_items`.
            padding: True/"longest" (pad to the longest row), "max_length" (to `max_history_items` items) or
                False/"do_not_pad" (ragged lists; needs `return_tensors=None`).
            truncation: keep only the last `max_history_items` items (always the most recent ones).
            return_tensors: "pt", "np" or None (lists).
            on_unknown: "error" raises `UnknownItemError` on an item outside the catalog; "skip" drops it.
                Unknown targets always raise.
            padding_side: "right" or "left"; default `self.padding_side`.

        Returns:
            `BatchEncoding` with `input_ids (B, S)`, S = items × (L+1): the concatenated SIDs (dedup included),
            `<pad>` = 0 where padded; `attention_mask (B, S)` 1 on real tokens; with targets `labels (B, 2L+1)`
            `[<think_1>, s1, …, <think_L>, sL, dedup]`, or `(B, L+1)` `[s1, …, sL, dedup]` when `T = 0`.
        """
        limit = self.max_history_items if max_history_items is None else max_history_items
        if limit < 1:
            raise InputError(f"max_history_items must be at least 1, got {limit}")
        rows = self._rows_to_indices(histories, on_unknown, "history")
        if truncation:
            rows = [row[-limit:] for row in rows]
        strategy = _padding_strategy(padding)
        width = max([limit, *map(len, rows)]) if strategy == PaddingStrategy.MAX_LENGTH else None
        items, mask = self._pack(rows, width, padding_side or self.padding_side)
        tokens = self._item_tokens(items).reshape(len(rows), -1)
        token_mask = np.repeat(mask, self.num_levels + 1, axis=1)
        data: dict[str, Any] = {"input_ids": tokens, "attention_mask": token_mask}
        if strategy == PaddingStrategy.DO_NOT_PAD:
            data = {
                key: [r[m.astype(bool)].tolist() for r, m in zip(v, token_mask, strict=True)]
                for key, v in data.items()
            }
        if targets is not None:
            data["labels"] = self._labels(histories, targets)
        return self._batch(data, return_tensors)

    def encode_sequences(
        self,
        sequences: Sequence[Sequence[str]],
        max_items: int | None = None,
        return_tensors: str | None = "pt",
        on_unknown: OnUnknown = "error",
    ) -> BatchEncoding:
        """Per-item SID token ids of whole sequences, for the model's fast causal training mode.

        Args:
            sequences: `B` item-id sequences, oldest first.
            max_items: keep only the last `max_items` items of each sequence (default: all).
            return_tensors, on_unknown: as in `encode_histories`.

        Returns:
            `BatchEncoding` with `sequence_codes (B, n, L+1)` token ids (`<pad>` = 0 where padded) and
            `sequence_mask (B, n)` int64, 1 on real items; right padded, `n` the longest sequence.
        """
        rows = self._rows_to_indices(sequences, on_unknown, "sequence")
        if max_items is not None:
            if max_items < 1:
                raise InputError(f"max_items must be at least 1, got {max_items}")
            rows = [row[-max_items:] for row in rows]
        items, mask = self._pack(rows, None, "right")
        return self._batch(
            {"sequence_codes": self._item_tokens(items), "sequence_mask": mask}, return_tensors
        )

    def _rows_to_indices(self, rows: Sequence[Sequence[str]], on_unknown: str, what: str) -> list[list[int]]:
        if on_unknown not in ("error", "skip"):
            raise InputError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}")
        out = []
        for b, row in enumerate(rows):
            if isinstance(row, str) or not isinstance(row, Iterable):
                raise TypeError(f"{what} {b} must be a list of item ids, got {type(row).__name__}")
            indices = self._indices(row, on_unknown, f"{what} {b}")
            if not indices:
                skipped = " after skipping unknown items" if on_unknown == "skip" else ""
                raise InputError(f"{what} {b} is empty{skipped}: every row needs at least one known item")
            out.append(indices)
        return out

    def _indices(self, row: Iterable[str], on_unknown: str, where: str) -> list[int]:
        index = self._item_index
        out = []
        for item in row:
            if isinstance(item, int | np.integer) and not isinstance(item, bool):
                item = str(item)  # ids are strings; an integer id means its decimal string
            elif not isinstance(item, str):
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

    def _pack(self, rows: list[list[int]], width: int | None, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Item indices `(B, n)` padded with -1 on `side`, and the `(B, n)` int64 mask of real items."""
        if side not in ("right", "left"):
            raise InputError(f"padding_side must be 'right' or 'left', got {side!r}")
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        width = int(lengths.max(initial=0)) if width is None else width
        positions = np.arange(width)
        mask = positions < lengths[:, None]
        if side == "left":
            mask = mask[:, ::-1]
        items = np.full((len(rows), width), -1, dtype=np.int64)
        items[mask] = np.fromiter((i for row in rows for i in row), dtype=np.int64, count=int(lengths.sum()))
        return items, mask.astype(np.int64)

    def _item_tokens(self, items: np.ndarray) -> np.ndarray:
        """`(..., )` item indices (-1 = padding) → `(..., L+1)` SID token ids (`<pad>` where padding)."""
        tokens = self._codes[np.maximum(items, 0)] + self._step_offsets()
        return np.where(items[..., None] >= 0, tokens, self.pad_token_id)

    def _step_offsets(self) -> np.ndarray:
        return CODE_TOKEN_OFFSET + np.arange(self.num_levels + 1, dtype=np.int64) * self.codebook_size

    def _labels(self, histories: Sequence[Any], targets: Sequence[str]) -> np.ndarray:
        if isinstance(targets, str) or len(targets) != len(histories):
            raise InputError(f"targets must be a list with one item id per history ({len(histories)})")
        indices = self._indices(targets, "error", "targets")
        sid = self._item_tokens(np.asarray(indices, dtype=np.int64))
        if self.num_thinking == 0:
            return sid
        levels = self.num_levels
        labels = np.empty((len(sid), 2 * levels + 1), dtype=np.int64)
        labels[:, 0 : 2 * levels : 2] = self.think_token_offset + np.arange(levels)
        labels[:, 1 : 2 * levels : 2] = sid[:, :levels]
        labels[:, -1] = sid[:, -1]
        return labels

    @staticmethod
    def _batch(data: dict[str, Any], return_tensors: str | None) -> BatchEncoding:
        if return_tensors is None:
            data = {
                key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in data.items()
            }
        elif return_tensors == "pt":
            data = {
                key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                for key, value in data.items()
            }
        return BatchEncoding(data, tensor_type=return_tensors)

    # ---------------------------------------------------------------------------------------------- decoding

    def item_to_sid(self, item_id: str) -> tuple[int, ...]:
        """The item's SID as `L+1` local codes."""
        (index,) = self._indices([item_id], "error", "item_to_sid")
        return tuple(self._codes[index].tolist())

    def sid_to_item(self, sid: Sequence[int] | str, on_invalid: OnInvalid = "error") -> str | None:
        """Item of a SID given as `L+1` local codes or as a token string like `"<s1_5><s2_17><s3_0><d_0>"`.
        An unknown SID raises `InvalidSidError` (`on_invalid="error"`) or gives None (`on_invalid="none"`)."""
        as_token_ids = isinstance(sid, str)
        codes = self.convert_tokens_to_ids(self._tokenize(sid)) if as_token_ids else list(sid)
        if len(codes) != self.num_levels + 1:
            if on_invalid == "none":
                return None
            raise InvalidSidError(f"{sid!r} has {len(codes)} codes, a SID has L+1 = {self.num_levels + 1}")
        array = np.asarray(codes, dtype=np.int64)[None, None]
        return self.decode_items(array, as_token_ids=as_token_ids, on_invalid=on_invalid)[0][0]

    def decode_items(
        self, codes: Any, as_token_ids: bool = False, on_invalid: OnInvalid = "error"
    ) -> list[list[str | None]]:
        """Item ids of `codes (B, k, L+1)`: local codes, or SID token ids with `as_token_ids=True` (a token
        at the wrong step counts as invalid). A tuple that is no catalog SID raises `InvalidSidError`
        (`on_invalid="error"`) or decodes to None (`on_invalid="none"`)."""
        if on_invalid not in _LOOKUP_ERRORS:
            raise InputError(f"on_invalid must be 'error' or 'none', got {on_invalid!r}")
        array = _as_code_array(codes, "codes")
        if array.ndim != 3 or array.shape[-1] != self.num_levels + 1:
            raise InputError(
                f"decode_items expects (B, k, L+1) = (B, k, {self.num_levels + 1}) codes, got {array.shape}; "
                "reshape a single SID to (1, 1, L+1)"
            )
        local = array - self._step_offsets() if as_token_ids else array
        flat = local.reshape(-1, self.num_levels + 1)
        found = self._trie.lookup(flat)
        if on_invalid == "error" and np.any(found < 0):
            bad = array.reshape(flat.shape)[np.argmax(found < 0)]
            kind = "token ids" if as_token_ids else "codes"
            raise InvalidSidError(f"{kind} {tuple(bad.tolist())} are not the SID of any catalog item")
        names = [self._item_ids[i] if i >= 0 else None for i in found.tolist()]
        k = array.shape[1]
        return [names[b * k : (b + 1) * k] for b in range(array.shape[0])]

    # ---------------------------------------------------------------------------------- constrained decoding

    def prefix_tables(self, device: torch.device | str | None = None) -> PrefixTables:
        """Constrained-decoding tables of the catalog (see `PrefixTables`), cached per device.

        Read off the sorted SID trie (itself built at construction by one lexicographic sort, `O(N log N)`);
        memory `O(L * N)`, whatever the fan-out of any node.
        """
        key = str(torch.device(device if device is not None else "cpu"))
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
        """Give new items SIDs with the frozen codebook, leaving every existing SID and token id unchanged.

        Pass the level codes `codes (M, L)` directly, or `embeddings (M, E)` with `assign_fn` mapping them to
        `(M, L)` codes, e.g. `assign_fn=semantic_ids.quantizer.assign` (after a reload: the codebook module's
        quantizer rebuilt from `tokenizer.quantizer_state`). An item whose codes collide with existing or other
        new items gets the lowest dedup code still free for those codes. `D` is fixed: if a collision group
        would need dedup code `D` or more, `ValueError` is raised and nothing is added.

        Returns:
            `(M, L+1)` int64, the SIDs given to the new items, in order.
        """
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
        trie = _SidTrie.build(codes_all, self._radices(), ids_all)
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
        prefixes = _as_code_array(codes, "codes")
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


S2GRTokenizer.register_for_auto_class("AutoTokenizer")
