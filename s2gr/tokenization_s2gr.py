"""`S2GRTokenizer`: the item ↔ Semantic-ID (SID) tokenizer of S2GR, a transformers `PreTrainedTokenizer`.

A thin layer over its catalog (`catalog_s2gr.SemanticIDCatalog`: item ids ↔ SIDs, the constrained-decoding
tables, new items) and the token layout (`layout_s2gr.TokenLayout`, shared with the model config): it turns
histories of item ids into encoder inputs, targets into decoder labels, and token ids back into items.

Imports only numpy, torch, safetensors, transformers and sibling modules by relative import:
`register_for_auto_class` copies this file and those modules next to a saved tokenizer, so
`AutoTokenizer.from_pretrained(folder, trust_remote_code=True)` works without the package installed.

Files written by `save_pretrained` (besides `tokenizer_config.json` with `L, K, D, T` and the options):
`vocab.json` (token → id, checked on load) and the catalog's `item_ids.json` and `sid_arrays.safetensors`.
"""

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from transformers import BatchEncoding, PreTrainedTokenizer
from transformers.utils import PaddingStrategy

from .catalog_s2gr import (
    DEFAULT_DEDUP_HEADROOM,
    InvalidSidError,
    PrefixTables,
    SemanticIDCatalog,
    UnknownItemError,
    as_code_array,
    to_numpy,
)
from .errors import InputError
from .layout_s2gr import SPECIAL_TOKENS, TokenLayout

VOCAB_FILES = {
    "vocab_file": "vocab.json",
    "items_file": "item_ids.json",
    "arrays_file": "sid_arrays.safetensors",
}
_TOKEN_PATTERN = re.compile(r"<[^<>\s]*>|[^<>\s]+")
_LOOKUP_ERRORS = ("error", "none")

OnUnknown = Literal["error", "skip"]
OnInvalid = Literal["error", "none"]


def _padding_strategy(padding: bool | str | PaddingStrategy) -> PaddingStrategy:
    if padding is True:
        return PaddingStrategy.LONGEST
    if padding is False:
        return PaddingStrategy.DO_NOT_PAD
    return PaddingStrategy(padding)


def _pack_rows(rows: list[list[int]], width: int | None, side: str) -> tuple[np.ndarray, np.ndarray]:
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


def _as_batch(data: dict[str, Any], return_tensors: str | None) -> BatchEncoding:
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


def _decoder_labels(layout: TokenLayout, sid: np.ndarray) -> np.ndarray:
    """SID token ids `(N, L+1)` -> decoder labels: `[<think_1>, s1, …, <think_L>, sL, dedup]`, or the SID
    itself without thinking steps."""
    if layout.num_thinking == 0:
        return sid
    levels = layout.num_levels
    labels = np.empty((len(sid), 2 * levels + 1), dtype=np.int64)
    labels[:, 0 : 2 * levels : 2] = layout.think_token_offset + np.arange(levels)
    labels[:, 1 : 2 * levels : 2] = sid[:, :levels]
    labels[:, -1] = sid[:, -1]
    return labels


class S2GRTokenizer(PreTrainedTokenizer):
    """Maps items to Semantic-ID tokens and back, and builds encoder inputs, decoder labels and the
    constrained-decoding tables of S2GR (see `layout_s2gr.py` for the vocabulary layout).

    Build it from the codebook's output (`from_semantic_ids`) or from the pieces:

    Args:
        item_ids: `N` unique item ids; position = item index.
        codes: `(N, L+1)` integer SIDs, last column the dedup code; rows must be unique.
        codebook_size: `K`; defaults to `code_clusters.shape[1]`.
        num_thinking: `T`, `L` (default, S2GR labels) or 0 (plain TIGER labels).
        code_clusters: optional `(L, K)` cluster of every code (`g_l(s)` of docs/method.md §3).
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
        sizes = {"codebook_size": codebook_size, "dedup_size": dedup_size, "num_levels": num_levels}
        if item_ids is None:
            self._catalog = SemanticIDCatalog.from_files(items_file, arrays_file, **sizes)
        else:
            self._catalog = SemanticIDCatalog(
                item_ids, codes, code_clusters=code_clusters, quantizer_state=quantizer_state, **sizes
            )
        levels = self._catalog.num_levels
        num_thinking = levels if num_thinking is None else num_thinking
        if num_thinking not in (0, levels):
            raise InputError(
                f"num_thinking must be {levels} (one thinking step per level) or 0 (TIGER), got {num_thinking}"
            )
        self._layout = TokenLayout(
            levels, self._catalog.codebook_size, self._catalog.dedup_size, int(num_thinking)
        )
        self.max_history_items = max_history_items
        self._vocab_tokens = self._layout.tokens()
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
        """Tokenizer from the codebook's result: any object with `codes (N, L+1)`, `cluster_of_code (L, K)` and
        `quantizer` (None, or an object with `state_dict()`). `kwargs` go to the constructor."""
        quantizer = getattr(semantic_ids, "quantizer", None)
        clusters = to_numpy(semantic_ids.cluster_of_code)
        kwargs.setdefault("codebook_size", clusters.shape[1])
        return cls(
            item_ids=item_ids,
            codes=semantic_ids.codes,
            num_thinking=num_thinking,
            code_clusters=clusters,
            quantizer_state=None if quantizer is None else quantizer.state_dict(),
            **kwargs,
        )

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
    def catalog(self) -> SemanticIDCatalog:
        """Items ↔ SIDs, the constrained-decoding tables and new items (`catalog_s2gr.py`)."""
        return self._catalog

    @property
    def layout(self) -> TokenLayout:
        """The token-id layout of this vocabulary (`layout_s2gr.py`), the same as the model config's."""
        return self._layout

    @property
    def num_levels(self) -> int:
        """`L`, the number of code levels (the dedup level not counted)."""
        return self._layout.num_levels

    @property
    def codebook_size(self) -> int:
        """`K`, codes per level."""
        return self._layout.codebook_size

    @property
    def dedup_size(self) -> int:
        """`D`, size of the dedup level."""
        return self._layout.dedup_size

    @property
    def num_thinking(self) -> int:
        """`T`, thinking steps (`L` or 0)."""
        return self._layout.num_thinking

    @property
    def num_items(self) -> int:
        """`N`, catalog size."""
        return self._catalog.num_items

    @property
    def code_token_offset(self) -> int:
        """Id of `<s1_0>`: code step `j` (level, or dedup at `j = L`) starts at `code_token_offset + j*K`."""
        return self._layout.code_token_offset

    @property
    def think_token_offset(self) -> int:
        """Id of `<think_1>`."""
        return self._layout.think_token_offset

    @property
    def vocab_size(self) -> int:
        """`4 + L*K + D + T`."""
        return self._layout.vocab_size

    @property
    def item_ids(self) -> list[str]:
        """Item ids in item-index order (a copy)."""
        return self._catalog.item_ids

    @property
    def codes(self) -> np.ndarray:
        """`(N, L+1)` int64 SIDs in local codes (read-only view)."""
        return self._catalog.codes

    @property
    def code_clusters(self) -> np.ndarray | None:
        """`(L, K)` int64 cluster of every code, or None."""
        return self._catalog.code_clusters

    @property
    def quantizer_state(self) -> dict[str, Any] | None:
        """The frozen quantizer's state dict as stored (a shallow copy), or None."""
        return self._catalog.quantizer_state

    def code_token_id(self, level: Any, code: Any) -> Any:
        """Token id of local `code` at code step `level` (0-based; `level = L` is the dedup step).
        Works elementwise on integer arrays/tensors too."""
        level_arr, code_arr = to_numpy(level), to_numpy(code)
        radix = np.where(level_arr == self.num_levels, self.dedup_size, self.codebook_size)
        if np.any((level_arr < 0) | (level_arr > self.num_levels) | (code_arr < 0) | (code_arr >= radix)):
            raise InputError(
                f"(level, code) out of range: L={self.num_levels}, K={self.codebook_size}, "
                f"D={self.dedup_size}"
            )
        return self.code_token_offset + level * self.codebook_size + code

    def think_token_id(self, step: int) -> int:
        """Token id of `<think_{step+1}>`, `step` 0-based."""
        if not 0 <= step < self.num_thinking:
            raise InputError(f"thinking step must lie in [0, {self.num_thinking}), got {step}")
        return self._layout.think_token_id(step)

    # ---------------------------------------------------------------------- PreTrainedTokenizer machinery

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self._vocab)
        vocab.update(self.get_added_vocab())
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
        self._catalog.save(paths["items_file"], paths["arrays_file"])
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
        rows = self._catalog.rows_to_indices(histories, on_unknown, "history")
        if truncation:
            rows = [row[-limit:] for row in rows]
        strategy = _padding_strategy(padding)
        width = max([limit, *map(len, rows)]) if strategy == PaddingStrategy.MAX_LENGTH else None
        items, mask = _pack_rows(rows, width, padding_side or self.padding_side)
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
        return _as_batch(data, return_tensors)

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
        rows = self._catalog.rows_to_indices(sequences, on_unknown, "sequence")
        if max_items is not None:
            if max_items < 1:
                raise InputError(f"max_items must be at least 1, got {max_items}")
            rows = [row[-max_items:] for row in rows]
        items, mask = _pack_rows(rows, None, "right")
        return _as_batch({"sequence_codes": self._item_tokens(items), "sequence_mask": mask}, return_tensors)

    def _item_tokens(self, items: np.ndarray) -> np.ndarray:
        """`(..., )` item indices (-1 = padding) → `(..., L+1)` SID token ids (`<pad>` where padding)."""
        tokens = self._catalog.codes[np.maximum(items, 0)] + self._step_offsets()
        return np.where(items[..., None] >= 0, tokens, self.pad_token_id)

    def _step_offsets(self) -> np.ndarray:
        """`(L+1,)` token id of code 0 of each code step."""
        return np.array([self._layout.code_offset(j) for j in range(self.num_levels + 1)], dtype=np.int64)

    def _labels(self, histories: Sequence[Any], targets: Sequence[str]) -> np.ndarray:
        if isinstance(targets, str) or len(targets) != len(histories):
            raise InputError(f"targets must be a list with one item id per history ({len(histories)})")
        indices = self._catalog.indices(targets, "error", "targets")
        return _decoder_labels(self._layout, self._item_tokens(np.asarray(indices, dtype=np.int64)))

    # ---------------------------------------------------------------------------------------------- decoding

    def item_to_sid(self, item_id: str) -> tuple[int, ...]:
        """The item's SID as `L+1` local codes."""
        (index,) = self._catalog.indices([item_id], "error", "item_to_sid")
        return tuple(self._catalog.codes[index].tolist())

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
        array = as_code_array(codes, "codes")
        if array.ndim != 3 or array.shape[-1] != self.num_levels + 1:
            raise InputError(
                f"decode_items expects (B, k, L+1) = (B, k, {self.num_levels + 1}) codes, got {array.shape}; "
                "reshape a single SID to (1, 1, L+1)"
            )
        local = array - self._step_offsets() if as_token_ids else array
        flat = local.reshape(-1, self.num_levels + 1)
        found = self._catalog.lookup(flat)
        if on_invalid == "error" and np.any(found < 0):
            bad = array.reshape(flat.shape)[np.argmax(found < 0)]
            kind = "token ids" if as_token_ids else "codes"
            raise InvalidSidError(f"{kind} {tuple(bad.tolist())} are not the SID of any catalog item")
        item_ids = self._catalog.item_ids
        names = [item_ids[i] if i >= 0 else None for i in found.tolist()]
        k = array.shape[1]
        return [names[b * k : (b + 1) * k] for b in range(array.shape[0])]

    # ---------------------------------------------------------------------------------- constrained decoding

    def prefix_tables(
        self, device: torch.device | str | None = None, without: Sequence[str] = ()
    ) -> PrefixTables:
        """Constrained-decoding tables of the catalog (see `PrefixTables`), cached per device; memory
        `O(L * N)`, whatever the fan-out of any node. `without`: item ids left out (e.g. cold items)."""
        return self._catalog.prefix_tables(device, without)

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
        return self._catalog.add_items(new_item_ids, codes=codes, embeddings=embeddings, assign_fn=assign_fn)


S2GRTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = [
    "DEFAULT_DEDUP_HEADROOM",
    "InvalidSidError",
    "PrefixTables",
    "S2GRTokenizer",
    "UnknownItemError",
]
