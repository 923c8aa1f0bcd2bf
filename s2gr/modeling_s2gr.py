"""S2GR: a T5-style encoder-decoder for generative recommendation with stepwise latent reasoning.

This file holds the model: its losses and one forward for training and scoring (and for `generate()`'s
decoding steps), over the layers of `layers_s2gr.py`. Search lives in `beam_search_s2gr.py` (`recommend`, as
`generate` lives in `GenerationMixin`), and item ids in and out in `s2gr.S2GRRecommender`. The module imports only torch, transformers and sibling modules by relative
import; `save_pretrained` copies all of them next to a checkpoint (transformers copies every module a
remote-code file imports relatively), so `AutoModel.from_pretrained(..., trust_remote_code=True)` loads it
without the `s2gr` package.

Model (docs/method.md §2-3)
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
  log-likelihood of the whole SID, -log p(s_1..s_L, dedup), per target (design choice, docs/method.md §3: the
  paper says "cross-entropy on the SID codes"). A per-token mean would weigh it L + 1 times less against the per-target alignment and
  InfoNCE terms.
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
`recommend` (from `ConstrainedBeamSearchMixin`, `beam_search_s2gr.py`) ranks catalog items by beam search
constrained to the catalog's Semantic IDs, thinking steps inside each beam. `generate()` works for TIGER mode
(num_thinking = 0) through `GenerationMixin` with a `transformers` `EncoderDecoderCache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import AutoModel, AutoModelForSeq2SeqLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput

from .beam_search_s2gr import ConstrainedBeamSearchMixin, S2GRRecommendation
from .configuration_s2gr import S2GRConfig
from .errors import InputError, corrupt_file
from .layers_s2gr import (
    DecoderMemory,
    KeyWindows,
    KVPair,
    RelativePositionBias,
    RMSNorm,
    S2GRDecoder,
    S2GREncoder,
    chunk_windows,
    labels_to_code_ids,
    mask_to_bias,
    scatter_chunks,
    target_memory_bias,
    validate_history,
    validate_sequences,
)


def uses_legacy_cache_name() -> bool:
    """Whether this transformers' `GenerationMixin` passes and reads the decoding cache as `past_key_values`.

    Later versions call it `cache` and keep a public `ModelOutput.past_key_values` property for old readers;
    its absence marks the old name. `tests/test_modeling.py` checks this against what `generate()` passes.
    """
    return not isinstance(getattr(ModelOutput, "past_key_values", None), property)


_LEGACY_CACHE_NAME = uses_legacy_cache_name()


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


class S2GRForGenerativeRecommendation(S2GRPreTrainedModel, ConstrainedBeamSearchMixin, GenerationMixin):
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

    def _history_memory(
        self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode histories -> the states the decoder reads (B, M, d) and their key bias (B, 1, 1, M)."""
        if input_ids is None:
            raise InputError("input_ids (the encoded history) is required.")
        valid = validate_history(self.config, input_ids, attention_mask)
        return self._decoder_memory(self.encoder.encode(input_ids, valid), valid)

    def _decoder_memory(self, states: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, S, d) and token mask (B, S) -> memory (B, M, d) and key bias (B, 1, 1, M).

        Causal mode: the states of the last W = `max_history_items` items only, as the fast training mode
        reads for each target (the older items of a `context_items` history only shape those states). The
        kept tokens are gathered in order, left-aligned; M = min(S, W * (L + 1)).
        """
        if self.config.encoder_mode != "causal":
            return states, mask_to_bias(valid, states.dtype)[:, None, None, :]
        tokens = self.config.max_history_items * self.config.num_code_steps
        from_end = valid.flip(-1).long().cumsum(-1).flip(-1)  # (B, S): valid tokens at or after each one
        keep = valid & (from_end <= tokens)
        # Stable sort puts the kept tokens first, in their order; the first M columns hold them all.
        order = torch.sort((~keep).to(torch.uint8), dim=-1, stable=True).indices[
            :, : min(valid.shape[1], tokens)
        ]
        memory = states.gather(1, order[..., None].expand(-1, -1, states.shape[-1]))
        return memory, mask_to_bias(keep.gather(1, order), states.dtype)[:, None, None, :]

    def _forward_history(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor,
        num_items_in_batch: Any,
    ) -> S2GRModelOutput:
        code_ids = labels_to_code_ids(self.config, labels)
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
        mask, targets = validate_sequences(self.config, sequence_codes, sequence_mask, target_mask)
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
        bias = target_memory_bias(self.config, token_valid, chunk_items, n_chunks, self.dtype)
        # Decode only the chunks holding a target (segments may start with context-only items).
        keep = targets.any(-1)  # (B*nc,)

        def memory_windows(t: torch.Tensor) -> torch.Tensor:  # (B, S, X) -> (kept chunks, 2*chunk | S, X)
            return chunk_windows(t, chunk, keep) if chunk else t[keep]

        rows = code_ids.view(-1, chunk_items, steps)[keep].flatten(0, 1)  # (R, L+1)
        out = self._target_outputs(
            states, bias[keep], rows, targets[keep].flatten(), num_items_in_batch, memory_windows
        )
        out.code_logits = scatter_chunks(out.code_logits, keep, chunk_items, batch, n_items)
        if out.thinking_states is not None:
            out.thinking_states = scatter_chunks(out.thinking_states, keep, chunk_items, batch, n_items)
        out.target_mask = targets.view(batch, -1)[:, :n_items]
        return out

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
