"""Transformer building blocks of S2GR: T5 norms and relative position bias, attention over shared memories,
the encoder and decoder stacks, and the checks of what the encoder reads.

Imported relatively by `modeling_s2gr.py`, so `save_pretrained` copies it next to a checkpoint with the model
code (transformers copies every module a remote-code file imports relatively).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput

from .configuration_s2gr import S2GRConfig
from .errors import InputError

KVPair = tuple[torch.Tensor, torch.Tensor]
# Maps per-position projections (B, S, X) to the key sets attention reads (M, S', X): chunk windows, kept rows.
KeyWindows = Callable[[torch.Tensor], torch.Tensor]

# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------


def mask_to_bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "may attend" mask -> additive bias. The dtype minimum (not -inf) keeps fully masked rows finite."""
    return torch.where(allowed, torch.zeros((), dtype=dtype, device=allowed.device), torch.finfo(dtype).min)


def chunk_windows(x: torch.Tensor, chunk: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """(B, S, ...) cut into chunks of `chunk` positions -> (B * n_chunks, 2 * chunk, ...): previous + own chunk.

    `keep` (B * n_chunks,) bool: only those windows, gathered from the chunks without building the others
    (fast-mode decoding skips the chunks that hold no target)."""
    n_chunks = x.shape[1] // chunk
    chunks = x.unflatten(1, (n_chunks, chunk))  # (B, nc, chunk, ...)
    # (B, 1 + nc, chunk, ...): a zero chunk first, so window c is padded chunks c and c + 1.
    padded = torch.cat([torch.zeros_like(chunks[:, :1]), chunks], dim=1)
    if keep is None:
        return torch.cat([padded[:, :-1], padded[:, 1:]], dim=2).flatten(0, 1)
    own = keep.nonzero().squeeze(1)  # window index b * nc + c
    own = own + own.div(n_chunks, rounding_mode="floor") + 1  # its chunk in flat padded: b * (nc + 1) + c + 1
    padded = padded.flatten(0, 1)  # (B * (1 + nc), chunk, ...)
    return torch.cat([padded[own - 1], padded[own]], dim=1)


def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """T5 buckets of `key_pos - query_pos`: exact for small distances, logarithmic up to `max_distance`."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + log_ratio * (num_buckets - max_exact)).long().clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class RMSNorm(nn.Module):
    """T5 layer norm: scale only, no mean subtraction, statistics in float32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype) * self.weight


class RelativePositionBias(nn.Module):
    """Learned per-head bias for each bucket of relative positions, shared by all layers of a stack."""

    def __init__(self, config: S2GRConfig, bidirectional: bool) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.weight = nn.Parameter(torch.zeros(self.num_buckets, config.num_heads))

    def forward(self, relative_position: torch.Tensor) -> torch.Tensor:
        """(q, k) key-minus-query positions -> (1, H, q, k) additive bias."""
        buckets = relative_position_bucket(
            relative_position, self.bidirectional, self.num_buckets, self.max_distance
        )
        return self.weight[buckets].permute(2, 0, 1).unsqueeze(0)


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/o projections (PEFT-targetable) over precomputed keys/values.

    Queries may come in groups sharing one memory: rows R = M * G query rows attend to M key/value sets; the G
    rows of a set are folded into the query axis, so shared memories (a user's beams, a chunk's targets) are never
    copied.
    """

    def __init__(self, config: S2GRConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.d_kv = config.d_kv
        inner = config.num_heads * config.d_kv
        self.q_proj = nn.Linear(config.d_model, inner, bias=False)
        self.k_proj = nn.Linear(config.d_model, inner, bias=False)
        self.v_proj = nn.Linear(config.d_model, inner, bias=False)
        self.o_proj = nn.Linear(inner, config.d_model, bias=False)

    def project_kv(self, x: torch.Tensor, windows: KeyWindows | None = None) -> KVPair:
        """(B, S, d) -> keys, values (M, H, S', d_kv), (B, H, S, d_kv) without `windows`.

        `windows` cuts the projected positions into the key sets (e.g. previous + own chunk): projecting first
        costs one projection per position however many windows hold it (the projections have no bias, so the
        zero padding of a window projects to zero either way).
        """

        def heads(t: torch.Tensor) -> torch.Tensor:
            t = windows(t) if windows is not None else t  # (M, S', H * dk)
            return t.unflatten(-1, (self.num_heads, self.d_kv)).transpose(1, 2)

        return heads(self.k_proj(x)), heads(self.v_proj(x))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (R, t, d), k/v (M, H, S, d_kv), bias broadcastable to (M, H, G*t, S) -> (R, t, d)."""
        rows, t, _ = x.shape
        sets, groups = k.shape[0], rows // k.shape[0]
        q = self.q_proj(x).view(sets, groups, t, self.num_heads, self.d_kv)  # (M, G, t, H, dk)
        q = q.permute(0, 3, 1, 2, 4).reshape(sets, self.num_heads, groups * t, self.d_kv)  # (M, H, G*t, dk)
        # No dropout on attention probabilities: it forces SDPA's slow math path and a random draw per
        # score (a third of a CPU training step); dropout stays on every residual branch.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (M, H, G*t, dk)
        out = out.view(sets, self.num_heads, groups, t, self.d_kv).permute(0, 2, 3, 1, 4)  # (M, G, t, H, dk)
        return self.o_proj(out.reshape(rows, t, self.num_heads * self.d_kv))


class FeedForward(nn.Module):
    """T5 v1 ReLU MLP. Dropout is applied by the block on the (d_model-wide) output, not on the d_ff-wide
    hidden layer: 8x fewer random draws for the same regularisation role."""

    def __init__(self, config: S2GRConfig) -> None:
        super().__init__()
        self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(F.relu(self.wi(x)))


class S2GREncoderBlock(GradientCheckpointingLayer):
    """Pre-norm self-attention + MLP. `chunk` > 0: queries of each chunk see only their own and the previous chunk."""

    def __init__(self, config: S2GRConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.attn = Attention(config)
        self.ff_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.ff = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, chunk: int) -> torch.Tensor:
        """x (B, S, d), bias (B or B*nc, H, q, keys) -> (B, S, d)."""
        h = self.attn_norm(x)
        queries = h.reshape(-1, chunk, h.shape[-1]) if chunk else h  # (B*nc, chunk, d) or (B, S, d)
        k, v = self.attn.project_kv(h, (lambda t: chunk_windows(t, chunk)) if chunk else None)  # keys 2c | S
        x = x + self.dropout(self.attn(queries, k, v, bias).view_as(x))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class S2GRDecoderBlock(GradientCheckpointingLayer):
    """Pre-norm causal self-attention (functional KV cache) + cross-attention + MLP.

    Pure function of its inputs (the cache is passed in and returned, never mutated), so it is safe under
    gradient checkpointing even while the latent chain needs the cache during training.
    """

    def __init__(self, config: S2GRConfig) -> None:
        super().__init__()
        self.self_attn_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.self_attn = Attention(config)
        self.cross_attn_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.cross_attn = Attention(config)
        self.ff_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.ff = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(
        self,
        x: torch.Tensor,
        self_bias: torch.Tensor,
        past_k: torch.Tensor | None,
        past_v: torch.Tensor | None,
        memory_k: torch.Tensor,
        memory_v: torch.Tensor,
        memory_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (R, t, d), past (R, H, P, dk), memory (M, H, S, dk) -> x, keys and values (R, H, P + t, dk)."""
        h = self.self_attn_norm(x)
        k, v = self.self_attn.project_kv(h)
        if past_k is not None:
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        x = x + self.dropout(self.self_attn(h, k, v, self_bias))
        x = x + self.dropout(self.cross_attn(self.cross_attn_norm(x), memory_k, memory_v, memory_bias))
        return x + self.dropout(self.ff(self.ff_norm(x))), k, v


@dataclass
class DecoderMemory:
    """Cross-attention keys/values of one decoder stack, computed once and reused for every decoding step.

    `kv[i]`: (M, H, S, dk) for layer i. `bias`: (M, 1, Gm, S) additive key mask, Gm = 1 (one mask per memory)
    or Gm = G (one per query row group, e.g. per target in fast mode).
    """

    kv: list[KVPair]
    bias: torch.Tensor

    def bias_for(self, steps: int) -> torch.Tensor:
        """Mask for `steps` new query positions per row, in the folded (M, 1, G*t, S) query layout."""
        if self.bias.shape[2] == 1:
            return self.bias
        return self.bias.repeat_interleave(steps, dim=2)


class S2GREncoder(nn.Module):
    """Embedding + encoder blocks + final norm. Called directly by `generate()` via `get_encoder()`."""

    main_input_name = "input_ids"

    def __init__(self, config: S2GRConfig, embed_tokens: nn.Embedding) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.relative_bias = RelativePositionBias(config, bidirectional=True)
        self.layers = nn.ModuleList(S2GREncoderBlock(config) for _ in range(config.encoder_layers))
        self.final_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> BaseModelOutput:
        """input_ids, attention_mask (B, S) -> BaseModelOutput(last_hidden_state (B, S, d))."""
        valid = validate_history(self.config, input_ids, attention_mask)
        return BaseModelOutput(last_hidden_state=self.encode(input_ids, valid))

    def encode(self, input_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """History API: (B, S) token ids and boolean token mask -> (B, S, d) over the whole history."""
        return self._run(self.embed_tokens(input_ids), self._full_bias(valid), chunk=0)

    def encode_items(self, input_ids: torch.Tensor, valid: torch.Tensor, chunk: int) -> torch.Tensor:
        """Fast mode over right-padded item sequences (B, S) -> (B, S, d).

        `chunk`: tokens per chunk (S a multiple of it), or 0 when the whole sequence is one chunk.
        """
        bias = self._chunked_bias(valid, chunk) if chunk else self._full_bias(valid)
        return self._run(self.embed_tokens(input_ids), bias, chunk)

    def _run(self, x: torch.Tensor, bias: torch.Tensor, chunk: int) -> torch.Tensor:
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x, bias, chunk)
        return self.final_norm(x)

    def _item_window(self, item_q: torch.Tensor, item_k: torch.Tensor) -> torch.Tensor:
        """Causal item band: key item in [query item - W + 1, query item]."""
        return (item_k <= item_q) & (item_k > item_q - self.config.max_history_items)

    def _full_bias(self, valid: torch.Tensor) -> torch.Tensor:
        """valid (B, S) -> (B, H, S, S) relative bias + mask (every query keeps itself so no row is empty)."""
        seq = valid.shape[1]
        pos = torch.arange(seq, device=valid.device)
        bias = self.relative_bias(pos[None, :] - pos[:, None])  # (1, H, S, S)
        allowed = valid[:, None, :].expand(-1, seq, -1)  # (B, S, S)
        if self.config.encoder_mode == "causal":
            # Item index of each real token counted from the first one, so left and right padding both work.
            item = (valid.long().cumsum(-1) - 1).div(self.config.num_code_steps, rounding_mode="floor")
            allowed = allowed & self._item_window(item[:, :, None], item[:, None, :])
        allowed = allowed | torch.eye(seq, dtype=torch.bool, device=valid.device)
        return bias + mask_to_bias(allowed, bias.dtype)[:, None]

    def _chunked_bias(self, valid: torch.Tensor, chunk: int) -> torch.Tensor:
        """valid (B, S) right-padded -> (B*nc, H, chunk, 2*chunk) for queries of a chunk over previous + own chunk."""
        device, n_chunks = valid.device, valid.shape[1] // chunk
        a, b = torch.arange(chunk, device=device), torch.arange(2 * chunk, device=device)
        start = torch.arange(n_chunks, device=device)[:, None] * chunk
        q_pos, k_pos = start + a, start - chunk + b  # (nc, chunk), (nc, 2*chunk) global token positions
        # Key minus query position is b - chunk - a in every chunk: one (1, H, chunk, 2*chunk) bias for all.
        bias = self.relative_bias(b[None, :] - chunk - a[:, None])
        steps = self.config.num_code_steps
        item_q, item_k = q_pos.div(steps, rounding_mode="floor"), k_pos.div(steps, rounding_mode="floor")
        in_band = self._item_window(item_q[:, :, None], item_k[:, None, :])  # (nc, chunk, 2*chunk)
        valid_keys = chunk_windows(valid, chunk).unflatten(0, (-1, n_chunks))  # (B, nc, 2*chunk)
        allowed = (valid_keys[:, :, None, :] & in_band) | (k_pos[:, None, :] == q_pos[:, :, None])
        return bias + mask_to_bias(allowed, bias.dtype).flatten(0, 1)[:, None]


class S2GRDecoder(nn.Module):
    """Decoder blocks + final norm over input embeddings; the caller embeds tokens and builds thinking vectors."""

    def __init__(self, config: S2GRConfig, num_layers: int) -> None:
        super().__init__()
        self.relative_bias = RelativePositionBias(config, bidirectional=False)
        self.layers = nn.ModuleList(S2GRDecoderBlock(config) for _ in range(num_layers))
        self.final_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def project_memory(
        self, states: torch.Tensor, bias: torch.Tensor, windows: KeyWindows | None = None
    ) -> DecoderMemory:
        """Encoder states (B, S, d), key mask (M, 1, Gm, S') and how `windows` cuts the states into the M
        memories (none: M = B, S' = S) -> per-layer cross-attention keys/values."""
        return DecoderMemory([layer.cross_attn.project_kv(states, windows) for layer in self.layers], bias)

    def forward(
        self, x: torch.Tensor, memory: DecoderMemory, past: list[KVPair] | None
    ) -> tuple[torch.Tensor, list[KVPair]]:
        """x (R, t, d) new input embeddings after `past` (R, H, P, dk) per layer -> normed outputs (R, t, d), cache."""
        steps = x.shape[1]
        done = past[0][0].shape[2] if past else 0
        k_pos = torch.arange(done + steps, device=x.device)
        q_pos = k_pos[done:]
        self_bias = self.relative_bias(k_pos[None, :] - q_pos[:, None])  # (1, H, t, P + t)
        self_bias = self_bias + mask_to_bias(k_pos[None, :] <= q_pos[:, None], self_bias.dtype)
        memory_bias = memory.bias_for(steps)
        x = self.dropout(x)
        present = []
        for i, layer in enumerate(self.layers):
            past_k, past_v = past[i] if past else (None, None)
            x, k, v = layer(x, self_bias, past_k, past_v, *memory.kv[i], memory_bias)
            present.append((k, v))
        return self.final_norm(x), present


# ----------------------------------------------------------------------------------------------------------------
# Fast mode: every target of a chunked item sequence at once
# ----------------------------------------------------------------------------------------------------------------


def target_memory_bias(
    config: S2GRConfig, token_valid: torch.Tensor, chunk_items: int, n_chunks: int, dtype: torch.dtype
) -> torch.Tensor:
    """Key bias (B*nc, 1, chunk_items, keys): target i sees the tokens of items i-W..i-1 of its window."""
    steps, window = config.num_code_steps, config.max_history_items
    chunk = chunk_items * steps
    previous = 1 if n_chunks > 1 else 0
    keys_valid = chunk_windows(token_valid, chunk) if previous else token_valid  # (B*nc, keys)
    device = token_valid.device
    starts = torch.arange(n_chunks, device=device)[:, None]
    target = starts * chunk_items + torch.arange(chunk_items, device=device)  # (nc, G) item index
    k_pos = (starts - previous) * chunk + torch.arange(keys_valid.shape[1], device=device)  # (nc, keys)
    key_item = k_pos.div(steps, rounding_mode="floor")[:, None, :]  # (nc, 1, keys)
    in_window = (key_item < target[..., None]) & (key_item >= target[..., None] - window)  # (nc, G, keys)
    allowed = keys_valid.unflatten(0, (-1, n_chunks))[:, :, None, :] & in_window  # (B, nc, G, keys)
    # Rows that are no target (first item, padding) may see anything: keeps them finite, their loss is masked.
    allowed = allowed | ~allowed.any(-1, keepdim=True)
    return mask_to_bias(allowed.flatten(0, 1), dtype)[:, None]


def scatter_chunks(
    values: torch.Tensor, keep: torch.Tensor, chunk_items: int, batch: int, n_items: int
) -> torch.Tensor:
    """Rows of the kept chunks (R, ...) -> (B, n_items, ...), zeros for the skipped chunks."""
    chunks = values.new_zeros(len(keep), chunk_items, *values.shape[1:])  # (B*nc, G, ...)
    chunks[keep] = values.unflatten(0, (-1, chunk_items))
    return chunks.view(batch, -1, *values.shape[1:])[:, :n_items]


# ----------------------------------------------------------------------------------------------------------------
# Input validation (clear errors instead of silent garbage)
# ----------------------------------------------------------------------------------------------------------------


def validate_history(
    config: S2GRConfig, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """Check encoder inputs; returns the boolean token mask (B, S)."""
    if input_ids.dim() != 2:
        raise InputError(f"input_ids must be (batch, seq_len) token ids, got shape {tuple(input_ids.shape)}.")
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= config.vocab_size):
        raise InputError(
            f"input_ids must be token ids in [0, {config.vocab_size}); got values in "
            f"[{int(input_ids.min())}, {int(input_ids.max())}]. Encode histories with the S2GR tokenizer."
        )
    valid = input_ids.ne(config.pad_token_id) if attention_mask is None else attention_mask.bool()
    if valid.shape != input_ids.shape:
        raise InputError(
            f"attention_mask shape {tuple(valid.shape)} != input_ids shape {tuple(input_ids.shape)}."
        )
    if not valid.any(-1).all():
        raise InputError(
            "A history contains only padding: every row needs at least one item. Drop users without history "
            "before calling the model."
        )
    if config.encoder_mode == "causal" and valid.sum(-1).remainder(config.num_code_steps).any():
        raise InputError(
            f"With encoder_mode='causal' every history must consist of whole items ({config.num_code_steps} "
            "tokens each, dedup code included)."
        )
    return valid


def check_code_ranges(config: S2GRConfig, code_ids: torch.Tensor, valid: torch.Tensor, name: str) -> None:
    """code_ids (..., L + 1) token ids: column l must lie in level l's token range wherever `valid`."""
    for level in range(config.num_code_steps):
        low = config.code_offset(level)
        high = low + config.level_size(level)
        column = code_ids[..., level][valid]
        if column.numel() and (column.min() < low or column.max() >= high):
            raise InputError(
                f"{name}: code {level} of each item must be a token id of level {level} in [{low}, {high}); got "
                f"values in [{int(column.min())}, {int(column.max())}]. Ignore-index -100 is not supported here."
            )


def labels_to_code_ids(config: S2GRConfig, labels: torch.Tensor) -> torch.Tensor:
    """labels (B, label_length) -> code token ids (B, L + 1), checking placeholders and code ranges."""
    if labels.dim() != 2 or labels.shape[1] != config.label_length:
        layout = (
            "[<think_1>, s1, ..., <think_L>, sL, dedup]" if config.num_thinking else "[s1, ..., sL, dedup]"
        )
        raise InputError(
            f"labels must be (batch, {config.label_length}) token ids {layout}, got shape {tuple(labels.shape)}."
        )
    if not config.num_thinking:
        code_ids = labels
    else:
        think_ids = torch.tensor(
            [config.think_token_id(t) for t in range(config.num_thinking)], device=labels.device
        )
        if (labels[:, 0 : 2 * config.num_levels : 2] != think_ids).any():
            raise InputError(
                "labels must hold <think_l> placeholder ids at positions 0, 2, ..., 2L-2 "
                f"(ids {think_ids.tolist()})."
            )
        code_ids = torch.cat([labels[:, 1 : 2 * config.num_levels : 2], labels[:, -1:]], dim=1)
    check_code_ranges(config, code_ids, torch.ones_like(code_ids[:, 0], dtype=torch.bool), "labels")
    return code_ids


def validate_sequences(
    config: S2GRConfig,
    sequence_codes: torch.Tensor,
    sequence_mask: torch.Tensor | None,
    target_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check fast-mode inputs; returns the item mask and the target mask (B, n_items)."""
    if config.encoder_mode != "causal":
        raise InputError(
            "Fast mode (sequence_codes) needs encoder_mode='causal': a bidirectional encoder would let every "
            "target see its own future. Use the history API (input_ids + labels) instead."
        )
    if sequence_codes.dim() != 3 or sequence_codes.shape[2] != config.num_code_steps:
        raise InputError(
            f"sequence_codes must be (batch, n_items, {config.num_code_steps}) token ids, got "
            f"{tuple(sequence_codes.shape)}."
        )
    everything = torch.ones_like(sequence_codes[..., 0], dtype=torch.bool)
    mask = everything if sequence_mask is None else sequence_mask.bool()
    targets = everything if target_mask is None else target_mask.bool()
    if mask.shape != everything.shape or targets.shape != everything.shape:
        raise InputError(
            f"sequence_mask and target_mask must be (batch, n_items) = {tuple(everything.shape)}, got "
            f"{tuple(mask.shape)} and {tuple(targets.shape)}."
        )
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise InputError("sequence_mask must be right-padded: ones for the real items, then zeros.")
    targets = targets & mask
    targets[:, 0] = False  # the first item has no history
    if not targets.any():
        raise InputError(
            "No targets: fast mode needs an item at position >= 1 that is real and in target_mask."
        )
    check_code_ranges(config, sequence_codes, mask, "sequence_codes")
    return mask, targets
