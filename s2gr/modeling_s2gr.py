"""S2GR: a T5-style encoder-decoder for generative recommendation with stepwise latent reasoning.

Self-contained (imports only torch, transformers and its sibling modules) so that `register_for_auto_class`
can copy it next to a checkpoint and `AutoModel.from_pretrained(..., trust_remote_code=True)` loads it without
the `s2gr` package.

Model (METHOD.md §1, §3)
------------------------
* Encoder: pre-RMSNorm T5 blocks with bucketed relative position bias (shift-invariant, so a history's states do
  not depend on where it sits in a longer sequence). `config.encoder_mode`:
  - "bidirectional": every history token sees every other one (exact TIGER);
  - "causal": tokens of item j see the tokens of items j-W+1..j (W = `max_history_items`), enabling the
    one-pass fast training mode below.
* Decoder input with thinking (T = L): BOS -> t1 -> s1 -> t2 -> s2 -> ... -> tL -> sL, where
  t_l = (decoder output at the previous position) + p_l is a continuous vector fed back as the next input;
  the output at t_l predicts s_l and the output at sL predicts the dedup code. p_l is the embedding row of the
  `<think_l>` token. TIGER (T = 0): BOS -> s1 -> ... -> sL. Teacher-forced training runs the decoder in L + 1
  incremental steps ([BOS], [t1, s1], ..., [tL, sL]) over a functional KV cache, so gradients flow through the
  whole latent chain (also under gradient checkpointing).
* Heads: per-level logits `h . e_c / sqrt(d_model)` over the level's code-token embeddings (tied to the input
  embeddings), so each level's softmax runs over its own K (or D) codes.

Losses (each returned in `S2GRModelOutput`)
------------------------------------------
* rec: cross-entropy on the L + 1 code tokens, summed over them and averaged over targets: the negative
  log-likelihood of the whole SID, -log p(s_1..s_L, dedup), per target (design choice: METHOD.md's "cross-entropy
  on the SID codes"). A per-token mean would weigh it L + 1 times less against the per-target alignment and
  InfoNCE terms; on the MovieLens-100K demo the per-SID sum gave validation NDCG@10 .0667 vs .0613.
* align(l) = CE over softmax_k(cos(t_l, c_{l,k}) / tau) with target g_l(s_l); `align_loss` is the sum over l.
* infonce: auxiliary decoder (`aux_decoder_layers` deep, input BOS, same encoder memory, detached with
  `aux_detach_memory`) gives v_g; in-batch InfoNCE of v_g against v_bar = mean of the target's L code
  embeddings (stop-gradient); in-batch negatives with the same L codes are masked out.
* reg: 1 - cos(t_1, stopgrad(v_g)), weighted by lambda (`reg_lambda`).
* loss = rec_loss_weight*rec + align_loss_weight*align + infonce_loss_weight*infonce + reg_lambda*reg.
* `num_items_in_batch` (as counted by `transformers.Trainer`: label tokens of the whole accumulated batch, i.e.
  `config.label_length` = 2L+1 (or L+1) per target) turns every per-target mean into a sum divided by the
  global target count, so gradient accumulation gives the loss scale of one big batch.

Centroids c_{l,k} (design choice)
---------------------------------
The paper's centroids live in the codebook's latent space (dim 32), not in the decoder's (d_model). Here
c_{l,k} is the mean of the model's own code-token embeddings of the level-l codes in cluster k, computed on the
fly from the (detached) embedding matrix. Only the cluster map g_l is needed: the `(L, K)` int64 buffer
`code_clusters`, saved with the weights and set from the tokenizer's `cluster_of_code` with
`model.set_code_clusters(...)`. A checkpoint is thus self-sufficient and the centroids follow the embeddings as
they train; the stop-gradient keeps the alignment loss from moving the embeddings toward the thinking tokens.

Fast training mode ("causal" encoder)
-------------------------------------
One pass over a user's whole item sequence yields every next-item target. The encoder runs once over all item
SIDs with item-causal attention banded to W items; for target i the decoder cross-attends to the encoder states
of items i-W..i-1. Sequences longer than W items are cut into chunks of W items, and each chunk's queries
attend only to its own and the previous chunk, so encoder and decoder cost grow linearly with the number of
interactions. All targets' short decoders run in parallel as one batch (chunks without a target are skipped,
so a segment may start with context-only items, see `target_mask`). For sequences of at most W items the
logits of target i equal those of the history API on items 0..i-1 (the sliding-window computation); in longer
ones the states of a window's oldest items have also seen up to W - 1 earlier items per encoder layer.

Decoding
--------
`recommend` is a batched, vectorised beam search constrained by the catalog's trie in CSR form (a few gathers
per step, memory linear in the catalog), thinking steps inside each beam (think -> code -> think -> code), KV
cache for decoder self-attention and cross-attention keys/values computed once per user and shared by its
beams (beams are folded into the query axis, nothing is copied per beam). `recommend_items(tokenizer,
histories)` wraps it for item ids in and out (batched, with per-user exclusions). `generate()` works for TIGER
mode (num_thinking = 0) through `GenerationMixin` with a `transformers` `EncoderDecoderCache`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import AutoModel, AutoModelForSeq2SeqLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput, logging

from .configuration_s2gr import S2GRConfig
from .errors import InputError, corrupt_file

KVPair = tuple[torch.Tensor, torch.Tensor]
# Maps per-position projections (B, S, X) to the key sets attention reads (M, S', X): chunk windows, kept rows.
KeyWindows = Callable[[torch.Tensor], torch.Tensor]
# transformers < 5.2x's GenerationMixin passes and reads the cache as `past_key_values` (later: `cache`).
_LEGACY_CACHE_NAME = not hasattr(ModelOutput, "_replace_old_cache_name")


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------


def _mask_to_bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "may attend" mask -> additive bias. The dtype minimum (not -inf) keeps fully masked rows finite."""
    return torch.where(allowed, torch.zeros((), dtype=dtype, device=allowed.device), torch.finfo(dtype).min)


def _chunk_windows(x: torch.Tensor, chunk: int, keep: torch.Tensor | None = None) -> torch.Tensor:
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
        k, v = self.attn.project_kv(h, (lambda t: _chunk_windows(t, chunk)) if chunk else None)  # keys 2c | S
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
        valid = _validate_history(self.config, input_ids, attention_mask)
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
        return bias + _mask_to_bias(allowed, bias.dtype)[:, None]

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
        valid_keys = _chunk_windows(valid, chunk).unflatten(0, (-1, n_chunks))  # (B, nc, 2*chunk)
        allowed = (valid_keys[:, :, None, :] & in_band) | (k_pos[:, None, :] == q_pos[:, :, None])
        return bias + _mask_to_bias(allowed, bias.dtype).flatten(0, 1)[:, None]


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
        self_bias = self_bias + _mask_to_bias(k_pos[None, :] <= q_pos[:, None], self_bias.dtype)
        memory_bias = memory.bias_for(steps)
        x = self.dropout(x)
        present = []
        for i, layer in enumerate(self.layers):
            past_k, past_v = past[i] if past else (None, None)
            x, k, v = layer(x, self_bias, past_k, past_v, *memory.kv[i], memory_bias)
            present.append((k, v))
        return self.final_norm(x), present


@dataclass
class _DecodingTrie:
    """The catalog trie on the model's device, in the CSR form of ARCHITECTURE.md (`tokenizer.prefix_tables()`).

    offsets[j] (n_j + 1,), codes[j] (n_{j+1},), items (N,); fan_out[j] = the largest child count at depth j.
    Built once per call of `recommend`, so the ancestry below is computed once, not per batch:
    parents[j] (n_{j+1},) the depth-j parent of each depth-(j+1) node for j < L, and parents[L] (N,) the depth-L
    node of each item (by item index); sizes[j] (n_{j+1},) how many catalog items lie below each depth-(j+1) node.
    """

    offsets: list[torch.Tensor]
    codes: list[torch.Tensor]
    items: torch.Tensor
    fan_out: list[int]
    parents: list[torch.Tensor] = field(init=False)
    sizes: list[torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        levels = len(self.codes) - 1
        self.parents = [self._parents(j) for j in range(levels)]
        self.parents.append(torch.empty_like(self.items).scatter_(0, self.items, self._parents(levels)))
        self.sizes = []
        below, node = torch.ones_like(self.items), self.parents[levels]  # one item per leaf
        for j in range(levels - 1, -1, -1):  # depth j+1 nodes, deepest first
            below = torch.zeros(len(self.parents[j]), dtype=torch.long, device=node.device).index_add_(
                0, node, below
            )
            self.sizes.insert(0, below)
            node = self.parents[j]

    def children(self, step: int, node: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nodes (B, W) at depth `step` -> their allowed codes and children (B, W, m_step), padded with -1.

        A child is a depth-(step+1) node, or at the last step the item index.
        """
        first = self.offsets[step][node]  # (B, W)
        count = self.offsets[step][node + 1] - first
        slot = torch.arange(self.fan_out[step], device=node.device)  # (m,)
        valid = slot < count[..., None]  # (B, W, m)
        child = torch.where(valid, first[..., None] + slot, 0)
        allowed = self.codes[step][child].masked_fill(~valid, -1)
        if step == len(self.codes) - 1:
            child = self.items[child]
        return allowed, child.masked_fill(~valid, -1)

    def _parents(self, step: int) -> torch.Tensor:
        """(n_{step+1},) the depth-`step` parent of each depth-(step+1) node (or leaf, at the last step)."""
        offsets = self.offsets[step]
        return torch.repeat_interleave(torch.arange(len(offsets) - 1, device=offsets.device), offsets.diff())


def _fully_excluded_nodes(trie: _DecodingTrie, exclude_items: torch.Tensor) -> list[torch.Tensor]:
    """Per code level j < L: (B, n_{j+1}) True where every catalog item below that trie node is excluded.

    exclude_items (B, H), -1 padded. Excluded-item counts are pushed up the trie level by level and compared
    with the trie's subtree sizes.
    """
    batch, levels = exclude_items.shape[0], len(trie.codes) - 1
    exclude_items = exclude_items.sort(dim=1).values
    repeated = F.pad(exclude_items[:, 1:] == exclude_items[:, :-1], (1, 0), value=False)
    exclude_items = exclude_items.masked_fill(repeated, -1)  # an item listed twice must count once
    valid = exclude_items >= 0
    node = trie.parents[levels][exclude_items.clamp(min=0)]  # (B, H) depth-L node of each excluded item
    dead = [None] * levels
    for j in range(levels - 1, -1, -1):  # depth j+1 nodes, deepest first
        excluded = torch.zeros(batch, len(trie.sizes[j]), dtype=torch.long, device=node.device)
        excluded.scatter_add_(1, node, valid.long())
        dead[j] = excluded >= trie.sizes[j][None, :]
        node = trie.parents[j][node]
    return dead


def _item_key(item: Any) -> Any:
    """Catalog ids are strings; an integer id (`50` for MovieLens' "50") means its decimal string."""
    is_integer = isinstance(item, int | np.integer) and not isinstance(item, bool)
    return str(item) if is_integer else item


def _item_index_matrix(rows: Sequence[Sequence[str]], index: dict[str, int]) -> torch.Tensor:
    """Item ids per user -> (B, H) item indices padded with -1; ids missing from `index` are dropped."""
    indices = [[index[key] for key in map(_item_key, row) if key in index] for row in rows]
    matrix = torch.full((len(indices), max([1, *map(len, indices)])), -1, dtype=torch.long)
    for position, row in enumerate(indices):
        matrix[position, : len(row)] = torch.tensor(row, dtype=torch.long)
    return matrix


def _ranked_ids(result: Any, item_ids: Sequence[str], with_scores: bool) -> list[list[Any]]:
    """`S2GRRecommendation` -> item ids (or (id, score) pairs) per user, best first, without -1 padding."""
    rankings = []
    for items, scores in zip(result.item_indices.tolist(), result.scores.tolist(), strict=True):
        pairs = [(item_ids[item], score) for item, score in zip(items, scores, strict=True) if item >= 0]
        rankings.append(pairs if with_scores else [item for item, _ in pairs])
    return rankings


# ----------------------------------------------------------------------------------------------------------------
# Input validation (clear errors instead of silent garbage)
# ----------------------------------------------------------------------------------------------------------------


def _validate_history(
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


def _check_code_ranges(config: S2GRConfig, code_ids: torch.Tensor, valid: torch.Tensor, name: str) -> None:
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


# ----------------------------------------------------------------------------------------------------------------
# Pretrained model
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class S2GRModelOutput(ModelOutput):
    """Outputs of `S2GRForGenerativeRecommendation.forward`.

    Training paths (`labels` or `sequence_codes`), with P = (B,) for the history API and (B, n_items) in fast mode:
        loss: weighted total. rec_loss, align_loss (sum over levels), align_loss_per_level (L,), infonce_loss,
            reg_loss: the separate terms. The S2GR terms are None in TIGER mode; align when its weight is 0;
            infonce and reg when both infonce_loss_weight and reg_lambda are 0.
        code_logits: (*P, L + 1, C) per-step logits over the step's local codes (C = max(K, D); positions
            beyond a level's size hold the dtype minimum).
        thinking_states: (*P, L, d) the latent thinking vectors t_l (None in TIGER mode).
        target_mask: (B, n_items) which fast-mode positions are real targets.
    Decoding path (`decoder_input_ids`, used by `generate()`):
        logits: (B, t, vocab_size) full-vocabulary logits; cache: the updated `EncoderDecoderCache`.
    """

    loss: torch.Tensor | None = None
    rec_loss: torch.Tensor | None = None
    align_loss: torch.Tensor | None = None
    align_loss_per_level: torch.Tensor | None = None
    infonce_loss: torch.Tensor | None = None
    reg_loss: torch.Tensor | None = None
    code_logits: torch.Tensor | None = None
    thinking_states: torch.Tensor | None = None
    target_mask: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Cache | None = None
    encoder_last_hidden_state: torch.Tensor | None = None


@dataclass
class S2GRRecommendation(ModelOutput):
    """Top-k recommendations per user.

    item_indices: (B, top_k) catalog item indices, best first; -1 only when fewer valid items exist.
    codes: (B, top_k, L + 1) local codes (level codes 0..K-1, dedup 0..D-1) of those items; -1 for padding.
    scores: (B, top_k) sum over steps of log-probabilities renormalised over the allowed codes; -inf padding.
    """

    item_indices: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    scores: torch.Tensor | None = None


class S2GRPreTrainedModel(PreTrainedModel):
    config_class = S2GRConfig
    config: S2GRConfig
    base_model_prefix = "s2gr"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _no_split_modules: ClassVar[list[str]] = ["S2GREncoderBlock", "S2GRDecoderBlock"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained`; a weights file cut short names itself and how to get a good copy."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as error:
            raise corrupt_file(
                f"the weights (model*.safetensors) in {pretrained_model_name_or_path}", error
            ) from None

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """T5-style: fan-in scaled projections, unit-variance embeddings, unit norms."""
        factor = self.config.initializer_factor
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=factor * module.in_features**-0.5)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=factor)
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, RelativePositionBias):
            init.normal_(module.weight, mean=0.0, std=factor * self.config.d_model**-0.5)
        elif isinstance(module, S2GRForGenerativeRecommendation):
            init.constant_(module.code_clusters, -1)


# ----------------------------------------------------------------------------------------------------------------
# Generative recommendation head
# ----------------------------------------------------------------------------------------------------------------


class S2GRForGenerativeRecommendation(S2GRPreTrainedModel, GenerationMixin):
    """S2GR / TIGER encoder-decoder with tied per-level code heads, latent thinking steps and auxiliary decoder."""

    _tied_weights_keys: ClassVar[dict[str, str]] = {"encoder.embed_tokens.weight": "shared.weight"}
    # The tied copy is never written, so that the Trainer's best-checkpoint reload re-ties it instead of warning
    # about a "missing" key.
    _keys_to_ignore_on_save: ClassVar[list[str]] = ["encoder.embed_tokens.weight"]

    def __init__(self, config: S2GRConfig) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = S2GREncoder(config, self.shared)
        self.decoder = S2GRDecoder(config, config.decoder_layers)
        self.aux_decoder = S2GRDecoder(config, config.aux_decoder_layers) if config.num_thinking else None
        # g_l(s): cluster of code s at level l, -1 until `set_code_clusters` is called.
        self.register_buffer("code_clusters", torch.full((config.num_levels, config.codebook_size), -1))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, embeddings: nn.Embedding) -> None:
        self.shared = embeddings
        self.encoder.embed_tokens = embeddings

    def get_encoder(self, modality: str | None = None) -> S2GREncoder:
        return self.encoder

    @torch.no_grad()
    def set_code_clusters(self, code_clusters: Any) -> None:
        """Copy the tokenizer's cluster map `cluster_of_code` (L, K) (tensor or array) into the `code_clusters` buffer."""
        clusters = torch.as_tensor(code_clusters, dtype=torch.long)
        expected = tuple(self.code_clusters.shape)
        if tuple(clusters.shape) != expected:
            raise InputError(
                f"code_clusters must have shape (num_levels, codebook_size) = {expected}, got {tuple(clusters.shape)}."
            )
        if clusters.min() < 0 or clusters.max() >= self.config.num_clusters:
            raise InputError(f"code_clusters values must be cluster ids in [0, {self.config.num_clusters}).")
        self.code_clusters.copy_(clusters)

    # --- embeddings and heads ---------------------------------------------------------------------------------

    def _thinking_offsets(self) -> torch.Tensor:
        """p_l for l = 1..T: embedding rows of the <think_l> tokens, (T, d)."""
        start = self.config.think_token_id(0)
        return self.shared.weight[start : start + self.config.num_thinking]

    def _bos(self, rows: int) -> torch.Tensor:
        """(rows, 1, d) BOS embeddings."""
        bos = self.shared.weight[self.config.decoder_start_token_id]
        return bos.expand(rows, 1, -1)

    def _level_logits(self, h: torch.Tensor, level: int) -> torch.Tensor:
        """h (..., d) -> logits (..., size_l) over the local codes of `level` (tied to their embeddings)."""
        start = self.config.code_offset(level)
        table = self.shared.weight[start : start + self.config.level_size(level)]
        return (h * self.config.d_model**-0.5) @ table.T

    def _step_columns(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes per step (L + 1,) and which of the C = max(K, D) logit columns are padding (L + 1, C)."""
        config = self.config
        sizes = torch.tensor([config.level_size(j) for j in range(config.num_code_steps)], device=device)
        local = torch.arange(max(config.codebook_size, config.dedup_size), device=device)
        return sizes, local[None, :] >= sizes[:, None]

    def _code_logits(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., L + 1, d) -> (..., L + 1, C) per-step logits, C = max(K, D), padding at the dtype minimum."""
        config = self.config
        sizes, padding = self._step_columns(h.device)
        local = torch.arange(padding.shape[1], device=h.device)
        offsets = torch.tensor([config.code_offset(j) for j in range(config.num_code_steps)], device=h.device)
        rows = offsets[:, None] + torch.minimum(local[None, :], sizes[:, None] - 1)  # (L+1, C) token ids
        logits = torch.einsum("...ld,lcd->...lc", h * config.d_model**-0.5, self.shared.weight[rows])
        return logits.masked_fill(padding, torch.finfo(logits.dtype).min)

    def _local_codes(self, code_ids: torch.Tensor) -> torch.Tensor:
        """(..., L + 1) token ids -> local codes."""
        offsets = [self.config.code_offset(j) for j in range(self.config.num_code_steps)]
        return code_ids - torch.tensor(offsets, device=code_ids.device)

    # --- decoding the latent chain ----------------------------------------------------------------------------

    def _teacher_forced(
        self, memory: DecoderMemory, code_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """code_ids (R, L + 1) -> outputs predicting each code (R, L + 1, d) and thinking vectors (R, T, d)."""
        levels = self.config.num_levels
        inputs = self.shared(code_ids[:, :levels])  # (R, L, d)
        if not self.config.num_thinking:
            h, _ = self.decoder(torch.cat([self._bos(code_ids.shape[0]), inputs], dim=1), memory, None)
            return h, None
        offsets = self._thinking_offsets()
        h, past = self.decoder(self._bos(code_ids.shape[0]), memory, None)
        last, predictors, thoughts = h[:, -1], [], []
        for level in range(levels):
            thought = last + offsets[level]  # t_l = previous output + p_l, (R, d)
            h, past = self.decoder(torch.stack([thought, inputs[:, level]], dim=1), memory, past)
            predictors.append(h[:, 0])  # output at t_l predicts s_l
            thoughts.append(thought)
            last = h[:, 1]
        predictors.append(last)  # output at s_L predicts the dedup code
        return torch.stack(predictors, dim=1), torch.stack(thoughts, dim=1)

    # --- losses -----------------------------------------------------------------------------------------------

    def _cluster_centroids(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Centroids (L, Kc, d): mean detached code embedding per cluster; and which clusters are non-empty."""
        config = self.config
        if (self.code_clusters < 0).any():
            raise InputError(
                "code_clusters is not set but the alignment loss needs it (num_thinking > 0 and "
                "align_loss_weight > 0). Call model.set_code_clusters(semantic_ids.cluster_of_code) with the "
                "tokenizer's (num_levels, codebook_size) cluster map, or set align_loss_weight=0."
            )
        start = config.code_offset(0)
        embeddings = self.shared.weight.detach()[start : start + config.num_levels * config.codebook_size]
        embeddings = embeddings.view(config.num_levels, config.codebook_size, -1)  # (L, K, d)
        members = F.one_hot(self.code_clusters, config.num_clusters).to(embeddings.dtype)  # (L, K, Kc)
        counts = members.sum(1)  # (L, Kc)
        sums = torch.einsum("lkc,lkd->lcd", members, embeddings)
        return sums / counts.clamp(min=1)[..., None], counts > 0

    def _rec_loss(self, code_logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Summed next-SID cross-entropy of (N, L + 1, C) logits against local codes (N, L + 1), smoothed by
        `label_smoothing` over each step's valid codes only (`F.cross_entropy`'s own smoothing would also
        spread mass onto the padding columns of the narrower dedup step)."""
        nll = F.cross_entropy(code_logits.flatten(0, 1), codes.flatten(), reduction="sum")
        epsilon = self.config.label_smoothing
        if not epsilon:
            return nll
        sizes, padding = self._step_columns(codes.device)
        log_probs = code_logits.float().log_softmax(-1).masked_fill(padding, 0.0)
        smooth = -(log_probs.sum(-1) / sizes).sum()  # cross-entropy against the uniform over valid codes
        return (1 - epsilon) * nll + epsilon * smooth

    def _align_loss(self, thoughts: torch.Tensor, codes: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """thoughts (N, L, d), local codes (N, L + 1) -> per-level alignment loss (L,)."""
        centroids, nonempty = self._cluster_centroids()
        levels = torch.arange(self.config.num_levels, device=codes.device)
        targets = self.code_clusters[levels, codes[:, : self.config.num_levels]]  # (N, L)
        cosine = torch.einsum(
            "nld,lcd->nlc", F.normalize(thoughts, dim=-1), F.normalize(centroids, dim=-1)
        )  # (N, L, Kc)
        logits = (cosine / self.config.align_temperature).masked_fill(
            ~nonempty, torch.finfo(cosine.dtype).min
        )
        per_target = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        return per_target.view_as(targets).sum(0) / norm

    def _infonce_loss(self, v_g: torch.Tensor, code_ids: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """In-batch InfoNCE of v_g (N, d) toward v_bar, the mean of the target's L code embeddings."""
        semantic = code_ids[:, : self.config.num_levels]  # (N, L)
        v_bar = self.shared.weight.detach()[semantic].mean(1)  # (N, d)
        sim = F.normalize(v_g, dim=-1) @ F.normalize(v_bar, dim=-1).T / self.config.infonce_temperature
        # Another row with the same target is not a negative.
        same = (semantic[:, None] == semantic[None]).all(-1)
        same.fill_diagonal_(False)
        sim = sim.masked_fill(same, torch.finfo(sim.dtype).min)
        return F.cross_entropy(sim, torch.arange(len(sim), device=sim.device), reduction="sum") / norm

    def _target_outputs(
        self,
        states: torch.Tensor,
        memory_bias: torch.Tensor,
        code_ids: torch.Tensor,
        valid: torch.Tensor,
        num_items_in_batch: Any,
        windows: KeyWindows | None = None,
    ) -> S2GRModelOutput:
        """Decode every target row (R, L + 1) against its memory (`states` cut by `windows`, see
        `project_memory`) and compute the losses over `valid` rows."""
        config = self.config
        predictors, thoughts = self._teacher_forced(
            self.decoder.project_memory(states, memory_bias, windows), code_ids
        )
        code_logits = self._code_logits(predictors)  # (R, L+1, C)
        codes = self._local_codes(code_ids)
        if num_items_in_batch is None:
            norm = valid.sum().to(code_logits.dtype)
        else:  # label tokens of the accumulated batch -> its number of targets
            norm = torch.as_tensor(num_items_in_batch, dtype=code_logits.dtype, device=code_logits.device)
            norm = norm / config.label_length
        rec = self._rec_loss(code_logits[valid], codes[valid])
        out = S2GRModelOutput(rec_loss=rec / norm, code_logits=code_logits, thinking_states=thoughts)
        if config.num_thinking and config.align_loss_weight > 0:
            out.align_loss_per_level = self._align_loss(thoughts[valid], codes[valid], norm)
            out.align_loss = out.align_loss_per_level.sum()
        if config.num_thinking and (config.infonce_loss_weight > 0 or config.reg_lambda > 0):
            aux_states = states.detach() if config.aux_detach_memory else states
            aux_memory = self.aux_decoder.project_memory(aux_states, memory_bias, windows)
            v_g = self.aux_decoder(self._bos(code_ids.shape[0]), aux_memory, None)[0][:, 0][valid]  # (N, d)
            out.infonce_loss = self._infonce_loss(v_g, code_ids[valid], norm)
            first_thought = thoughts[valid][:, 0]
            out.reg_loss = (1 - F.cosine_similarity(first_thought, v_g.detach(), dim=-1)).sum() / norm
        out.loss = self._total_loss(out)
        return out

    def _total_loss(self, out: S2GRModelOutput) -> torch.Tensor:
        """Weighted sum of the terms present (the S2GR terms are None in TIGER mode or when switched off)."""
        config = self.config
        weighted = [
            (config.rec_loss_weight, out.rec_loss),
            (config.align_loss_weight, out.align_loss),
            (config.infonce_loss_weight, out.infonce_loss),
            (config.reg_lambda, out.reg_loss),
        ]
        return sum(weight * term for weight, term in weighted if term is not None)

    # --- forward ----------------------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        sequence_codes: torch.Tensor | None = None,
        sequence_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[torch.Tensor, ...] | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        past_key_values: Cache | None = None,
        target_mask: torch.Tensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: Any,
    ) -> S2GRModelOutput:
        """Three entry points, chosen by the arguments given.

        (a) History API (both encoder modes; exact TIGER with encoder_mode="bidirectional"):
            input_ids (B, S): concatenated SIDs (L + 1 token ids per item, oldest first) of the history;
            attention_mask (B, S): 1 on real tokens (left or right padding); labels (B, 2L + 1) token ids
            [<think_1>, s1, ..., <think_L>, sL, dedup] with thinking, (B, L + 1) [s1, ..., sL, dedup] without.
            Returns losses, code_logits (B, L + 1, C), thinking_states (B, L, d).
        (b) Fast mode (encoder_mode="causal"): sequence_codes (B, n_items, L + 1) token ids of a user's whole
            chronological item sequence (right-padded, any id in padded rows); sequence_mask (B, n_items) 1 on real
            items; optional target_mask (B, n_items) restricts the targets (e.g. to the items after a segment's
            context). Every real item at position >= 1 (and in target_mask) is a target whose history is the
            <= max_history_items items before it. Returns losses, code_logits (B, n_items, L + 1, C),
            thinking_states (B, n_items, L, d) and the effective target_mask (B, n_items); position i holds the
            prediction of item i (zeros where a whole chunk of W items holds no target).
        (c) Decoding for `generate()` (TIGER mode only): decoder_input_ids (B, t) with input_ids/attention_mask or
            encoder_outputs, optional `cache` (`past_key_values` in transformers < 5.2x); returns full-vocabulary
            logits (B, t, vocab_size) and the cache.

        num_items_in_batch: label tokens in the whole (gradient-accumulated) batch as `Trainer` counts them,
            i.e. `config.label_length` per target; losses are then normalised by that global count.
        """
        if sequence_codes is not None:
            return self._forward_sequences(sequence_codes, sequence_mask, target_mask, num_items_in_batch)
        if decoder_input_ids is not None:
            cache = cache if cache is not None else past_key_values
            return self._forward_decoding(
                input_ids, attention_mask, decoder_input_ids, encoder_outputs, cache, use_cache
            )
        if labels is not None:
            return self._forward_history(input_ids, attention_mask, labels, num_items_in_batch)
        raise InputError(
            "Pass labels (history API), sequence_codes/sequence_mask (fast mode) or decoder_input_ids (decoding)."
        )

    def _labels_to_code_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """labels (B, label_length) -> code token ids (B, L + 1), checking placeholders and code ranges."""
        config = self.config
        if labels.dim() != 2 or labels.shape[1] != config.label_length:
            layout = (
                "[<think_1>, s1, ..., <think_L>, sL, dedup]"
                if config.num_thinking
                else "[s1, ..., sL, dedup]"
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
        _check_code_ranges(config, code_ids, torch.ones_like(code_ids[:, 0], dtype=torch.bool), "labels")
        return code_ids

    def _history_memory(
        self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode histories -> the states the decoder reads (B, M, d) and their key bias (B, 1, 1, M)."""
        if input_ids is None:
            raise InputError("input_ids (the encoded history) is required.")
        valid = _validate_history(self.config, input_ids, attention_mask)
        return self._decoder_memory(self.encoder.encode(input_ids, valid), valid)

    def _decoder_memory(self, states: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, S, d) and token mask (B, S) -> memory (B, M, d) and key bias (B, 1, 1, M).

        Causal mode: the states of the last W = `max_history_items` items only, as the fast training mode
        reads for each target (the older items of a `context_items` history only shape those states). The
        kept tokens are gathered in order, left-aligned; M = min(S, W * (L + 1)).
        """
        if self.config.encoder_mode != "causal":
            return states, _mask_to_bias(valid, states.dtype)[:, None, None, :]
        tokens = self.config.max_history_items * self.config.num_code_steps
        from_end = valid.flip(-1).long().cumsum(-1).flip(-1)  # (B, S): valid tokens at or after each one
        keep = valid & (from_end <= tokens)
        # Stable sort puts the kept tokens first, in their order; the first M columns hold them all.
        order = torch.sort((~keep).to(torch.uint8), dim=-1, stable=True).indices[
            :, : min(valid.shape[1], tokens)
        ]
        memory = states.gather(1, order[..., None].expand(-1, -1, states.shape[-1]))
        return memory, _mask_to_bias(keep.gather(1, order), states.dtype)[:, None, None, :]

    def _forward_history(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor,
        num_items_in_batch: Any,
    ) -> S2GRModelOutput:
        code_ids = self._labels_to_code_ids(labels)
        states, bias = self._history_memory(input_ids, attention_mask)
        valid = torch.ones(code_ids.shape[0], dtype=torch.bool, device=code_ids.device)
        out = self._target_outputs(states, bias, code_ids, valid, num_items_in_batch)
        out.encoder_last_hidden_state = states
        return out

    def _forward_sequences(
        self,
        sequence_codes: torch.Tensor,
        sequence_mask: torch.Tensor | None,
        target_mask: torch.Tensor | None,
        num_items_in_batch: Any,
    ) -> S2GRModelOutput:
        config = self.config
        mask, targets = self._validate_sequences(sequence_codes, sequence_mask, target_mask)
        batch, n_items, steps = sequence_codes.shape
        # Short sequences: one chunk holding everything; long ones: chunks of W items (previous + own visible).
        chunk_items = min(n_items, config.max_history_items)
        n_chunks = -(-n_items // chunk_items)
        pad = n_chunks * chunk_items - n_items
        code_ids = F.pad(sequence_codes, (0, 0, 0, pad), value=config.pad_token_id)  # (B, n_pad, L+1)
        token_valid = F.pad(mask, (0, pad), value=False).repeat_interleave(steps, dim=1)  # (B, n_pad*(L+1))
        targets = F.pad(targets, (0, pad), value=False).view(-1, chunk_items)  # (B*nc, G)
        chunk = chunk_items * steps if n_chunks > 1 else 0
        states = self.encoder.encode_items(code_ids.flatten(1), token_valid, chunk)  # (B, S, d)
        bias = self._target_memory_bias(token_valid, chunk_items, n_chunks)
        # Decode only the chunks holding a target (segments may start with context-only items).
        keep = targets.any(-1)  # (B*nc,)

        def memory_windows(t: torch.Tensor) -> torch.Tensor:  # (B, S, X) -> (kept chunks, 2*chunk | S, X)
            return _chunk_windows(t, chunk, keep) if chunk else t[keep]

        rows = code_ids.view(-1, chunk_items, steps)[keep].flatten(0, 1)  # (R, L+1)
        out = self._target_outputs(
            states, bias[keep], rows, targets[keep].flatten(), num_items_in_batch, memory_windows
        )
        out.code_logits = self._scatter_chunks(out.code_logits, keep, chunk_items, batch, n_items)
        if out.thinking_states is not None:
            out.thinking_states = self._scatter_chunks(out.thinking_states, keep, chunk_items, batch, n_items)
        out.target_mask = targets.view(batch, -1)[:, :n_items]
        return out

    @staticmethod
    def _scatter_chunks(
        values: torch.Tensor, keep: torch.Tensor, chunk_items: int, batch: int, n_items: int
    ) -> torch.Tensor:
        """Rows of the kept chunks (R, ...) -> (B, n_items, ...), zeros for the skipped chunks."""
        chunks = values.new_zeros(len(keep), chunk_items, *values.shape[1:])  # (B*nc, G, ...)
        chunks[keep] = values.unflatten(0, (-1, chunk_items))
        return chunks.view(batch, -1, *values.shape[1:])[:, :n_items]

    def _validate_sequences(
        self,
        sequence_codes: torch.Tensor,
        sequence_mask: torch.Tensor | None,
        target_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Check fast-mode inputs; returns the item mask and the target mask (B, n_items)."""
        config = self.config
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
        _check_code_ranges(config, sequence_codes, mask, "sequence_codes")
        return mask, targets

    def _target_memory_bias(self, token_valid: torch.Tensor, chunk_items: int, n_chunks: int) -> torch.Tensor:
        """Key bias (B*nc, 1, chunk_items, keys): target i sees the tokens of items i-W..i-1 of its window."""
        steps, window = self.config.num_code_steps, self.config.max_history_items
        chunk = chunk_items * steps
        previous = 1 if n_chunks > 1 else 0
        keys_valid = _chunk_windows(token_valid, chunk) if previous else token_valid  # (B*nc, keys)
        device = token_valid.device
        starts = torch.arange(n_chunks, device=device)[:, None]
        target = starts * chunk_items + torch.arange(chunk_items, device=device)  # (nc, G) item index
        k_pos = (starts - previous) * chunk + torch.arange(keys_valid.shape[1], device=device)  # (nc, keys)
        key_item = k_pos.div(steps, rounding_mode="floor")[:, None, :]  # (nc, 1, keys)
        in_window = (key_item < target[..., None]) & (key_item >= target[..., None] - window)  # (nc, G, keys)
        allowed = keys_valid.unflatten(0, (-1, n_chunks))[:, :, None, :] & in_window  # (B, nc, G, keys)
        # Rows that are no target (first item, padding) may see anything: keeps them finite, their loss is masked.
        allowed = allowed | ~allowed.any(-1, keepdim=True)
        return _mask_to_bias(allowed.flatten(0, 1), self.dtype)[:, None]

    # --- decoding path for GenerationMixin --------------------------------------------------------------------

    def _forward_decoding(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        decoder_input_ids: torch.Tensor,
        encoder_outputs: BaseModelOutput | tuple[torch.Tensor, ...] | None,
        cache: Cache | None,
        use_cache: bool | None,
    ) -> S2GRModelOutput:
        if self.config.num_thinking:
            raise InputError(
                "Token-by-token decoding (decoder_input_ids, generate()) only supports TIGER mode "
                "(num_thinking=0): thinking steps are continuous vectors. Use model.recommend(...)."
            )
        if encoder_outputs is None:
            states, bias = self._history_memory(input_ids, attention_mask)
        else:
            states = encoder_outputs[0]
            valid = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
            if attention_mask is not None:
                valid = attention_mask.bool()
            states, bias = self._decoder_memory(states, valid)
        if cache is None and (use_cache if use_cache is not None else self.config.use_cache):
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        memory, past = self._memory_and_past(states, bias, cache)
        h, present = self.decoder(self.shared(decoder_input_ids), memory, past)
        if cache is not None:
            done = past[0][0].shape[2] if past else 0
            for i, (k, v) in enumerate(present):
                cache.self_attention_cache.update(k[:, :, done:], v[:, :, done:], i)
        logits = (h * self.config.d_model**-0.5) @ self.shared.weight.T
        out = S2GRModelOutput(logits=logits, cache=cache, encoder_last_hidden_state=states)
        if _LEGACY_CACHE_NAME and cache is not None:
            out["past_key_values"] = cache
        return out

    def _memory_and_past(
        self, states: torch.Tensor, bias: torch.Tensor, cache: Cache | None
    ) -> tuple[DecoderMemory, list[KVPair] | None]:
        """Read (or fill once) cross-attention keys/values and read the self-attention past from an HF cache."""
        if cache is None:
            return self.decoder.project_memory(states, bias), None
        cross, own = cache.cross_attention_cache, cache.self_attention_cache
        if cross.get_seq_length() == 0:
            memory = self.decoder.project_memory(states, bias)
            for i, (k, v) in enumerate(memory.kv):
                cross.update(k, v, i)
        else:
            memory = DecoderMemory([(layer.keys, layer.values) for layer in cross.layers], bias)
        past = [(layer.keys, layer.values) for layer in own.layers] if own.get_seq_length() > 0 else None
        return memory, past

    # --- constrained beam search ------------------------------------------------------------------------------

    def _prefix_tables(self, prefix_tables: Any) -> _DecodingTrie:
        """`PrefixTables`-like object or (offsets, codes, items) -> the trie on this device, checked."""
        if isinstance(prefix_tables, _DecodingTrie):  # already checked and on this device (recommend_items)
            return prefix_tables
        if hasattr(prefix_tables, "offsets"):
            parts = (prefix_tables.offsets, prefix_tables.codes, prefix_tables.items)
        else:
            parts = prefix_tables
        if len(parts) != 3:
            raise InputError(
                "prefix_tables must be (offsets, codes, items), as tokenizer.prefix_tables() gives."
            )
        offsets, codes, items = parts
        steps = self.config.num_code_steps
        if len(offsets) != steps or len(codes) != steps:
            raise InputError(f"prefix_tables must hold {steps} steps (levels + dedup), got {len(offsets)}.")
        offsets = [torch.as_tensor(t, dtype=torch.long, device=self.device) for t in offsets]
        codes = [torch.as_tensor(t, dtype=torch.long, device=self.device) for t in codes]
        items = torch.as_tensor(items, dtype=torch.long, device=self.device)
        n_parents = 1
        for step, (offset, code) in enumerate(zip(offsets, codes, strict=True)):
            if offset.shape != (n_parents + 1,) or code.dim() != 1 or int(offset[-1]) != len(code):
                raise InputError(
                    f"prefix_tables step {step}: offsets must be (n_{step} + 1,) = ({n_parents + 1},) and end at "
                    f"len(codes[{step}]); see ARCHITECTURE.md."
                )
            n_parents = len(code)
        if items.shape != (n_parents,):
            raise InputError(f"prefix_tables: items must hold one item index per leaf ({n_parents}).")
        fan_out = [int(offset.diff().max()) for offset in offsets]
        return _DecodingTrie(offsets, codes, items, fan_out)

    # --- item-id API ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def recommend_items(
        self,
        tokenizer: Any,
        histories: Sequence[Sequence[str]],
        top_k: int = 10,
        num_beams: int = 20,
        exclude: Sequence[Sequence[str]] | None = None,
        batch_size: int = 256,
        progress: bool = False,
        return_scores: bool = False,
        on_unknown: str = "error",
    ) -> list[list[str]] | list[list[tuple[str, float]]]:
        """Top-k item ids (best first) for each history of item ids, by constrained beam search.

        tokenizer: the checkpoint's `S2GRTokenizer` (any object with its `encode_histories`, `prefix_tables`,
            `item_ids` and sizes); it must match the model's vocabulary, else `ValueError`.
        histories: item ids per user, oldest first (the last `config.context_items` are used). Ids are strings
            (an integer means its decimal string).
        on_unknown: an item outside the catalog raises the tokenizer's `UnknownItemError` ("error") or is
            dropped from its history ("skip"; a history left empty still raises).
        exclude: item ids never returned to user i (e.g. everything the user has seen); ids outside the
            catalog are ignored, as they can never be recommended anyway.
        return_scores: give `(item_id, score)` pairs, score = the beam's log-probability (see `recommend`).
        Fewer than `top_k` items come back only when fewer non-excluded items exist. The model's training
        mode is restored afterwards.
        """
        self._check_tokenizer(tokenizer)
        if exclude is not None and len(exclude) != len(histories):
            raise InputError(f"exclude needs one list per history ({len(histories)}), got {len(exclude)}.")
        item_ids = tokenizer.item_ids
        index = {item: position for position, item in enumerate(item_ids)}
        trie = self._prefix_tables(tokenizer.prefix_tables(self.device))  # checked once, not per batch
        was_training = self.training
        self.eval()
        rankings: list[Any] = []
        try:
            for start in logging.tqdm(
                range(0, len(histories), batch_size), desc="recommending", disable=not progress
            ):
                stop = start + batch_size
                batch = tokenizer.encode_histories(
                    [list(map(_item_key, history)) for history in histories[start:stop]],
                    max_history_items=self.config.context_items,
                    return_tensors="pt",
                    on_unknown=on_unknown,
                )
                excluded = None if exclude is None else _item_index_matrix(exclude[start:stop], index)
                result = self.recommend(
                    batch["input_ids"].to(self.device),
                    batch["attention_mask"].to(self.device),
                    prefix_tables=trie,
                    top_k=top_k,
                    num_beams=num_beams,
                    exclude_items=excluded,
                )
                rankings += _ranked_ids(result, item_ids, return_scores)
        finally:
            self.train(was_training)
        return rankings

    def _check_tokenizer(self, tokenizer: Any) -> None:
        """A tokenizer of another codebook would map codes to the wrong items silently: refuse it."""
        sizes = ("vocab_size", "num_levels", "codebook_size", "dedup_size", "num_thinking")
        needed = (*sizes, "encode_histories", "prefix_tables", "item_ids")
        missing = [name for name in needed if not hasattr(tokenizer, name)]
        if missing:
            raise TypeError(
                f"recommend_items needs this checkpoint's S2GR tokenizer (AutoTokenizer.from_pretrained(same "
                f"folder or repo, trust_remote_code=True)); {type(tokenizer).__name__} has no {missing}."
            )
        differ = [
            f"{name} {getattr(self.config, name)} (model) vs {getattr(tokenizer, name)} (tokenizer)"
            for name in sizes
            if getattr(self.config, name) != getattr(tokenizer, name)
        ]
        # Equal sizes can still hide another codebook; the cluster maps tell (when both are set).
        clusters = getattr(tokenizer, "code_clusters", None)
        model_clusters = self.code_clusters.cpu()
        if (
            clusters is not None
            and bool((model_clusters >= 0).all())
            and not torch.equal(torch.as_tensor(clusters, dtype=torch.long), model_clusters)
        ):
            differ.append("code cluster maps (the tokenizer comes from another codebook)")
        if differ:
            raise InputError(
                "The tokenizer does not belong to this model: " + "; ".join(differ) + ". Load both from the "
                "same checkpoint folder or Hub repo."
            )

    @torch.no_grad()
    def recommend(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        prefix_tables: Any = None,
        top_k: int = 10,
        num_beams: int = 20,
        exclude_items: torch.Tensor | None = None,
    ) -> S2GRRecommendation:
        """Top-k catalog items per history by beam search constrained to valid SIDs (call `model.eval()` first).

        input_ids, attention_mask (B, S): encoded histories (history API). prefix_tables: the tokenizer's
        `PrefixTables`, or (offsets, codes, items) per ARCHITECTURE.md. exclude_items (B, H) item indices
        (-1 padding) never returned: a prefix whose items are all excluded is pruned at the step that would
        enter it, so every surviving beam still leads to an allowed item and `max(num_beams, top_k)` beams
        fill every top-k slot (memory O(B * N) for the per-user exclusion counts).
        """
        if top_k < 1 or num_beams < 1:
            raise InputError(f"top_k and num_beams must be >= 1, got {top_k} and {num_beams}.")
        if prefix_tables is None:
            raise InputError("prefix_tables is required (tokenizer.prefix_tables()).")
        trie = self._prefix_tables(prefix_tables)
        states, bias = self._history_memory(input_ids, attention_mask)
        batch, device = states.shape[0], states.device
        dead_nodes = None
        if exclude_items is not None:
            exclude_items = torch.as_tensor(exclude_items, dtype=torch.long, device=device).view(batch, -1)
            dead_nodes = _fully_excluded_nodes(trie, exclude_items)
        # More than the catalog is the whole catalog, once: neither slots nor beams beyond N.
        top_k = min(top_k, len(trie.items))
        width = min(max(num_beams, top_k), len(trie.items))
        memory = self.decoder.project_memory(states, bias)  # once per user, shared by all its beams
        h, past = self.decoder(self._bos(batch), memory, None)
        last = h[:, -1]  # (B*W, d) output at the last fed position
        node = torch.zeros(batch, 1, dtype=torch.long, device=device)  # (B, W) trie node of each beam
        score = torch.zeros(batch, 1, dtype=states.dtype, device=device)  # (B, W) log-probability
        codes = torch.zeros(batch, 1, 0, dtype=torch.long, device=device)  # (B, W, step) chosen codes
        offsets = self._thinking_offsets()
        for step in range(self.config.num_code_steps):
            if step < self.config.num_thinking:  # think inside the beam: t = last output + p_step
                h, past = self.decoder((last + offsets[step])[:, None], memory, past)
                last = h[:, -1]
            allowed, children = trie.children(step, node)  # (B, W, m)
            candidates = score[..., None] + self._allowed_log_probs(last, step, allowed)  # (B, W, m)
            if dead_nodes is not None and step < self.config.num_levels:
                dead = dead_nodes[step].gather(1, children.clamp(min=0).flatten(1)).view_as(children)
                candidates = candidates.masked_fill(dead & (children >= 0), -math.inf)
            if step == self.config.num_levels:
                return self._final_top_k(candidates, allowed, children, codes, exclude_items, top_k)
            score, index = candidates.flatten(1).topk(min(width, candidates[0].numel()), dim=1)  # (B, W')
            beam = index.div(allowed.shape[2], rounding_mode="floor")
            node = children.flatten(1).gather(1, index).clamp(min=0)  # dead (-inf) beams park on node 0
            code = allowed.flatten(1).gather(1, index)
            codes = torch.cat([codes.gather(1, beam[..., None].expand(-1, -1, step)), code[..., None]], dim=2)
            rows = (beam + torch.arange(batch, device=device)[:, None] * allowed.shape[1]).flatten()
            past = [(k[rows], v[rows]) for k, v in past]  # reorder the self-attention cache by source beam
            token = code.clamp(min=0).view(-1, 1) + self.config.code_offset(step)
            h, past = self.decoder(self.shared(token), memory, past)
            last = h[:, -1]
        raise AssertionError("unreachable: the dedup step returns")

    def _allowed_log_probs(self, last: torch.Tensor, step: int, allowed: torch.Tensor) -> torch.Tensor:
        """Outputs (B*W, d) and allowed codes (B, W, m) -> log-probabilities renormalised over them (B, W, m)."""
        logits = self._level_logits(last, step).view(*allowed.shape[:2], -1)
        logits = logits.gather(-1, allowed.clamp(min=0)).masked_fill(allowed < 0, -math.inf)
        return logits.log_softmax(-1)

    @staticmethod
    def _final_top_k(
        candidates: torch.Tensor,
        allowed: torch.Tensor,
        items: torch.Tensor,
        codes: torch.Tensor,
        exclude_items: torch.Tensor | None,
        top_k: int,
    ) -> S2GRRecommendation:
        """Dedup step (B, W, m): mask exclusions, pick the top-k items, pad with -1 if fewer exist."""
        dead = items < 0
        if exclude_items is not None:
            excluded = (items[..., None] == exclude_items[:, None, None, :]) & (
                exclude_items[:, None, None, :] >= 0
            )
            dead = dead | excluded.any(-1)
        score, index = (
            candidates.masked_fill(dead, -math.inf).flatten(1).topk(min(top_k, candidates[0].numel()), dim=1)
        )
        beam = index.div(allowed.shape[2], rounding_mode="floor")
        prefix = codes.gather(1, beam[..., None].expand(-1, -1, codes.shape[2]))
        full_codes = torch.cat([prefix, allowed.flatten(1).gather(1, index)[..., None]], dim=2)  # (B, k, L+1)
        found = score > -math.inf
        item = items.flatten(1).gather(1, index).masked_fill(~found, -1)
        full_codes = full_codes.masked_fill(~found[..., None], -1)
        missing = top_k - score.shape[1]
        return S2GRRecommendation(
            item_indices=F.pad(item, (0, missing), value=-1),
            codes=F.pad(full_codes, (0, 0, 0, missing), value=-1),
            scores=F.pad(score, (0, missing), value=-math.inf),
        )


S2GRForGenerativeRecommendation.register_for_auto_class("AutoModel")
if __package__ == "s2gr":  # the installed package only (see configuration_s2gr)
    AutoModel.register(S2GRConfig, S2GRForGenerativeRecommendation, exist_ok=True)
    AutoModelForSeq2SeqLM.register(S2GRConfig, S2GRForGenerativeRecommendation, exist_ok=True)

__all__ = [
    "S2GRForGenerativeRecommendation",
    "S2GRModelOutput",
    "S2GRPreTrainedModel",
    "S2GRRecommendation",
]
