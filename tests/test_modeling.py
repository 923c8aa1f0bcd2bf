"""Tests of the S2GR model: losses, latent chain, fast mode, constrained decoding, HF integration.

Tiny configs (d_model 32, 2 heads, K = 8, L = 3) keep the file fast on two CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_runs import PACKAGE_FREE_RECOMMEND

from s2gr.configuration_s2gr import S2GRConfig
from s2gr.layers_s2gr import chunk_windows, labels_to_code_ids
from s2gr.modeling_s2gr import S2GRForGenerativeRecommendation, uses_legacy_cache_name

LEVELS, CODES, DEDUP, CLUSTERS = 3, 8, 3, 4
PrefixTables = tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]  # (offsets, codes, items)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny matmuls: extra threads only add contention on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------------------------
# Helpers: configs, synthetic catalogs, prefix tables, labels
# ----------------------------------------------------------------------------------------------------------------


def tiny_config(thinking: bool = True, **overrides: object) -> S2GRConfig:
    values = dict(
        num_levels=LEVELS,
        codebook_size=CODES,
        dedup_size=DEDUP,
        num_thinking=LEVELS if thinking else 0,
        d_model=32,
        num_heads=2,
        d_kv=16,
        d_ff=64,
        encoder_layers=1,
        decoder_layers=2,
        aux_decoder_layers=1,
        dropout_rate=0.0,
        num_clusters=CLUSTERS,
        max_history_items=4,
        encoder_mode="causal",
        align_loss_weight=1.0,  # the paper's term, off by default, so every loss term is covered
    )
    values.update(overrides)
    return S2GRConfig(**values)


def tiny_model(thinking: bool = True, seed: int = 0, **overrides: object) -> S2GRForGenerativeRecommendation:
    torch.manual_seed(seed)
    model = S2GRForGenerativeRecommendation(tiny_config(thinking, **overrides))
    if thinking:
        model.set_code_clusters(torch.arange(LEVELS * CODES).view(LEVELS, CODES) % CLUSTERS)
    return model.eval()


def make_catalog(n_items: int, seed: int = 0) -> np.ndarray:
    """(N, L + 1) unique local codes; the last quarter collides with the first items on the L levels."""
    rng = np.random.default_rng(seed)
    unique = n_items - n_items // 4
    prefixes = rng.choice(CODES**LEVELS, size=unique, replace=False)
    prefixes = np.concatenate([prefixes, prefixes[: n_items - unique]])
    digits = np.stack([(prefixes // CODES**p) % CODES for p in reversed(range(LEVELS))], axis=1)
    dedup = np.zeros(n_items, dtype=np.int64)
    dedup[unique:] = 1
    return np.concatenate([digits, dedup[:, None]], axis=1).astype(np.int64)


def build_prefix_tables(codes: np.ndarray) -> PrefixTables:
    """CSR trie tables per ARCHITECTURE.md from (N, L + 1) codes, built from sets of prefixes (independently of
    the tokenizer's vectorised build)."""
    rows = [tuple(row) for row in codes.tolist()]
    steps = codes.shape[1]
    nodes = [sorted({row[:depth] for row in rows}) for depth in range(steps + 1)]  # per depth, lexicographic
    node_id = [{prefix: i for i, prefix in enumerate(level)} for level in nodes]
    offsets, child_codes = [], []
    for step in range(steps):
        parents = [node_id[step][child[:-1]] for child in nodes[step + 1]]
        counts = np.bincount(parents, minlength=len(nodes[step]))
        offsets.append(torch.tensor([0, *np.cumsum(counts).tolist()]))
        child_codes.append(torch.tensor([child[-1] for child in nodes[step + 1]]))
    item_of = {row: i for i, row in enumerate(rows)}
    return offsets, child_codes, torch.tensor([item_of[leaf] for leaf in nodes[steps]])


def to_tokens(config: S2GRConfig, codes: np.ndarray | torch.Tensor) -> torch.Tensor:
    offsets = torch.tensor([config.code_offset(j) for j in range(config.num_code_steps)])
    return torch.as_tensor(codes) + offsets


def make_labels(config: S2GRConfig, tokens: torch.Tensor) -> torch.Tensor:
    """(B, L + 1) code token ids -> decoder labels per the layout (think placeholders interleaved)."""
    if not config.num_thinking:
        return tokens
    think = torch.tensor([config.think_token_id(t) for t in range(config.num_thinking)])
    interleaved = torch.stack([think.expand(len(tokens), -1), tokens[:, : config.num_levels]], dim=2).flatten(
        1
    )
    return torch.cat([interleaved, tokens[:, config.num_levels :]], dim=1)


def histories(
    config: S2GRConfig, catalog: np.ndarray, items: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H) item indices (-1 = padding, at the left) -> input_ids and attention_mask (B, H * (L + 1))."""
    tokens = to_tokens(config, catalog)[items.clamp(min=0)]  # (B, H, L+1)
    mask = (items >= 0)[..., None].expand_as(tokens)
    tokens = tokens.masked_fill(~mask, config.pad_token_id)
    return tokens.flatten(1), mask.flatten(1).long()


def batch_inputs(config: S2GRConfig, catalog: np.ndarray, seed: int = 0, batch: int = 4):
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(0, len(catalog), (batch, 3), generator=generator)
    items[0, 0] = -1  # one left-padded history
    input_ids, attention_mask = histories(config, catalog, items)
    targets = torch.randint(0, len(catalog), (batch,), generator=generator)
    labels = make_labels(config, to_tokens(config, catalog)[targets])
    return input_ids, attention_mask, labels


def exhaustive_scores(
    model: S2GRForGenerativeRecommendation,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    catalog: np.ndarray,
) -> torch.Tensor:
    """Teacher-forced score of every catalog item for one history, renormalised at each step over the codes
    that follow the item's prefix somewhere in the catalog."""
    config, n_items = model.config, len(catalog)
    labels = make_labels(config, to_tokens(config, catalog))
    with torch.no_grad():
        logits = model(
            input_ids=input_ids.expand(n_items, -1),
            attention_mask=attention_mask.expand(n_items, -1),
            labels=labels,
        ).code_logits
    codes = torch.as_tensor(catalog)
    total = torch.zeros(n_items)
    for step in range(config.num_code_steps):
        same_prefix = (codes[:, None, :step] == codes[None, :, :step]).all(-1).float()  # (N, N)
        allowed = same_prefix @ F.one_hot(codes[:, step], logits.shape[-1]).float() > 0  # (N, V)
        log_probs = logits[:, step].masked_fill(~allowed, -torch.inf).log_softmax(-1)
        total += log_probs.gather(1, codes[:, step : step + 1])[:, 0]
    return total


# ----------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------


def test_config_defaults_follow_tiger_and_layout() -> None:
    config = S2GRConfig()
    assert (config.encoder_layers, config.decoder_layers, config.d_model) == (4, 4, 128)
    assert (config.num_heads, config.d_kv, config.d_ff, config.dropout_rate) == (6, 64, 1024, 0.1)
    assert config.num_thinking == config.num_levels == 3
    assert config.aux_decoder_layers == 2
    assert config.vocab_size == 4 + 3 * 256 + config.dedup_size + 3
    assert S2GRConfig(num_thinking=0).vocab_size == 4 + 3 * 256 + config.dedup_size
    assert config.label_length == 7 and S2GRConfig(num_thinking=0).label_length == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_thinking": 2}, "num_thinking"),
        ({"num_thinking": 4}, "num_thinking"),
        ({"align_temperature": 0.0}, "align_temperature"),
        ({"codebook_size": -1}, "codebook_size"),
        ({"dedup_size": 0}, "dedup_size"),
        ({"encoder_mode": "sideways"}, "encoder_mode"),
        ({"d_kv": None, "num_heads": 5}, "divisible"),
        ({"vocab_size": 100}, "vocab_size"),
        ({"num_clusters": 300}, "num_clusters"),
        ({"dropout_rate": 1.5}, "dropout_rate"),
        ({"reg_lambda": -1.0}, "reg_lambda"),
    ],
)
def test_config_rejects_invalid_values(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S2GRConfig(**overrides)


# ----------------------------------------------------------------------------------------------------------------
# Forward: shapes and losses
# ----------------------------------------------------------------------------------------------------------------


def test_forward_thinking_returns_every_loss_term() -> None:
    model = tiny_model(thinking=True)
    config, catalog = model.config, make_catalog(20)
    input_ids, attention_mask, labels = batch_inputs(config, catalog)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert out.code_logits.shape == (4, LEVELS + 1, CODES)
    assert out.thinking_states.shape == (4, LEVELS, 32)
    assert out.align_loss_per_level.shape == (LEVELS,)
    for name in ("loss", "rec_loss", "align_loss", "infonce_loss", "reg_loss"):
        assert out[name].dim() == 0 and torch.isfinite(out[name]), name
    expected = out.rec_loss + out.align_loss + out.infonce_loss + config.reg_lambda * out.reg_loss
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.align_loss, out.align_loss_per_level.sum())
    # Dedup logits beyond D are padding and never the argmax.
    assert (out.code_logits[:, LEVELS, DEDUP:] == torch.finfo(torch.float32).min).all()


def test_the_default_loss_leaves_out_the_cluster_alignment() -> None:
    assert S2GRConfig().align_loss_weight == 0.0
    paper = tiny_model(thinking=True)  # align_loss_weight 1
    default = tiny_model(thinking=True, align_loss_weight=0.0)
    input_ids, attention_mask, labels = batch_inputs(paper.config, make_catalog(20))
    a = paper(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    b = default(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert b.align_loss is None and b.align_loss_per_level is None  # not computed at all
    torch.testing.assert_close(b.loss, a.rec_loss + a.infonce_loss + paper.config.reg_lambda * a.reg_loss)
    torch.testing.assert_close(b.loss, a.loss - a.align_loss)


def test_forward_tiger_has_only_rec_loss() -> None:
    model = tiny_model(thinking=False, encoder_mode="bidirectional")
    input_ids, attention_mask, labels = batch_inputs(model.config, make_catalog(20))
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert out.thinking_states is None and out.align_loss is None
    assert out.infonce_loss is None and out.reg_loss is None
    assert model.aux_decoder is None
    torch.testing.assert_close(out.loss, out.rec_loss)
    assert torch.isfinite(out.loss)


def test_loss_weights_are_applied() -> None:
    base = tiny_model(thinking=True)
    weighted = tiny_model(thinking=True, align_loss_weight=0.5, infonce_loss_weight=0.0, rec_loss_weight=2.0)
    input_ids, attention_mask, labels = batch_inputs(base.config, make_catalog(20))
    a = base(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    b = weighted(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(
        b.loss, 2.0 * a.rec_loss + 0.5 * a.align_loss + base.config.reg_lambda * a.reg_loss
    )


def test_label_smoothing_spreads_over_the_valid_codes_of_each_step() -> None:
    plain = tiny_model(thinking=True)
    smoothed = tiny_model(thinking=True, label_smoothing=0.2)
    smoothed.load_state_dict(plain.state_dict())
    input_ids, attention_mask, labels = batch_inputs(plain.config, make_catalog(20))
    a = plain(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    b = smoothed(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    codes = plain._local_codes(labels_to_code_ids(plain.config, labels))
    # Per target: 0.8 × NLL + 0.2 × mean over the K (levels) or D (dedup) valid codes of −log p.
    expected = 0.0
    for logits, target in zip(a.code_logits, codes, strict=True):
        for step, size in enumerate([CODES] * LEVELS + [DEDUP]):
            log_probs = logits[step, :size].log_softmax(-1)
            expected += -(0.8 * log_probs[target[step]] + 0.2 * log_probs.mean())
    torch.testing.assert_close(b.rec_loss, expected / len(codes))
    assert torch.isfinite(b.loss)
    with pytest.raises(ValueError, match="label_smoothing"):
        tiny_config(label_smoothing=1.0)


@pytest.mark.parametrize("detach", [False, True])
def test_aux_detach_memory_keeps_infonce_out_of_the_encoder(detach: bool) -> None:
    model = tiny_model(thinking=True, aux_detach_memory=detach)
    input_ids, attention_mask, labels = batch_inputs(model.config, make_catalog(20))
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    out.infonce_loss.backward()
    # The encoder's own layers; the shared embedding table also feeds the auxiliary decoder's BOS input.
    encoder_grads = [p.grad for p in model.encoder.layers.parameters() if p.grad is not None]
    aux_grads = [p.grad for p in model.aux_decoder.parameters() if p.grad is not None]
    assert aux_grads and all(torch.isfinite(g).all() for g in aux_grads)
    assert any(g.abs().sum() > 0 for g in aux_grads)  # the auxiliary decoder learns either way
    reached_encoder = any(g.abs().sum() > 0 for g in encoder_grads)
    assert reached_encoder is not detach


def test_num_items_in_batch_gives_big_batch_scale() -> None:
    model = tiny_model(thinking=True)
    config = model.config
    input_ids, attention_mask, labels = batch_inputs(config, make_catalog(20))
    full = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    total = labels.numel()  # what Trainer counts: labels != -100
    halves = [
        model(
            input_ids=input_ids[part],
            attention_mask=attention_mask[part],
            labels=labels[part],
            num_items_in_batch=total,
        )
        for part in (slice(0, 2), slice(2, 4))
    ]
    for name in ("rec_loss", "align_loss", "reg_loss"):
        torch.testing.assert_close(halves[0][name] + halves[1][name], full[name])


def test_fast_mode_outputs() -> None:
    model = tiny_model(thinking=True)
    config, catalog = model.config, make_catalog(20)
    sequence_codes = to_tokens(config, catalog)[torch.randint(0, 20, (2, 6))]
    sequence_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    out = model(sequence_codes=sequence_codes, sequence_mask=sequence_mask)
    assert out.code_logits.shape == (2, 6, LEVELS + 1, CODES)
    assert out.thinking_states.shape == (2, 6, LEVELS, 32)
    assert out.target_mask.tolist() == [[False] + [True] * 5, [False] + [True] * 3 + [False] * 2]
    for name in ("loss", "rec_loss", "align_loss", "infonce_loss", "reg_loss"):
        assert torch.isfinite(out[name]), name
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ----------------------------------------------------------------------------------------------------------------
# Latent chain and caching
# ----------------------------------------------------------------------------------------------------------------


def test_gradient_flows_through_latent_chain() -> None:
    model = tiny_model(thinking=True)
    config = model.config
    input_ids, attention_mask, labels = batch_inputs(config, make_catalog(20))
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    think_1 = config.think_token_id(0)
    # t_2 = (decoder output at s_1) + p_2 is a differentiable function of t_1 = (output at BOS) + p_1.
    (grad,) = torch.autograd.grad(out.thinking_states[:, 1].sum(), model.shared.weight, retain_graph=True)
    assert grad[think_1].abs().sum() > 0
    # Only the dedup prediction: it reaches p_1 only through the chain and the KV cache of later steps.
    codes = labels[:, -1] - config.code_offset(LEVELS)
    F.cross_entropy(out.code_logits[:, LEVELS], codes).backward()
    assert model.shared.weight.grad[think_1].abs().sum() > 0


def test_gradient_checkpointing_matches() -> None:
    model = tiny_model(thinking=True).train()
    input_ids, attention_mask, labels = batch_inputs(model.config, make_catalog(20))
    reference = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    reference.loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    # `activation_checkpointing_enable` since transformers 5.2x, `gradient_checkpointing_enable` before.
    getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    out.loss.backward()
    torch.testing.assert_close(out.loss, reference.loss)
    for name, grad in expected.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, msg=name)


def test_cached_decoding_equals_uncached_thinking() -> None:
    model = tiny_model(thinking=True)
    config = model.config
    input_ids, attention_mask, labels = batch_inputs(config, make_catalog(20))
    with torch.no_grad():
        cached = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).code_logits
        states, bias = model._history_memory(input_ids, attention_mask)
        memory = model.decoder.project_memory(states, bias)
        offsets = model._thinking_offsets()
        codes = labels[:, 1 : 2 * LEVELS : 2]
        inputs = [model._bos(len(labels))[:, 0]]

        def rerun() -> torch.Tensor:  # the whole prefix, no cache
            return model.decoder(torch.stack(inputs, dim=1), memory, None)[0][:, -1]

        last, predictors = rerun(), []
        for level in range(LEVELS):
            inputs.append(last + offsets[level])
            predictors.append(rerun())
            inputs.append(model.shared(codes[:, level]))
            last = rerun()
        predictors.append(last)
        uncached = model._code_logits(torch.stack(predictors, dim=1))
    torch.testing.assert_close(cached, uncached, rtol=1e-5, atol=1e-5)


def test_cached_decoding_equals_uncached_tiger() -> None:
    from transformers import DynamicCache, EncoderDecoderCache

    model = tiny_model(thinking=False)
    config = model.config
    input_ids, attention_mask, labels = batch_inputs(config, make_catalog(20))
    decoder_input_ids = torch.cat([torch.full((4, 1), config.decoder_start_token_id), labels[:, :LEVELS]], 1)
    with torch.no_grad():
        uncached = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
        )
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        steps = []
        for t in range(LEVELS + 1):
            out = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids[:, t : t + 1],
                cache=cache,
            )
            steps.append(out.logits)
            cache = out.cache
        teacher_forced = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).code_logits
    torch.testing.assert_close(torch.cat(steps, 1), uncached.logits, rtol=1e-5, atol=1e-5)
    for step in range(LEVELS + 1):
        start = config.code_offset(step)
        size = config.level_size(step)
        torch.testing.assert_close(
            uncached.logits[:, step, start : start + size],
            teacher_forced[:, step, :size],
            rtol=1e-5,
            atol=1e-5,
        )


# ----------------------------------------------------------------------------------------------------------------
# Fast mode equals the sliding-window history computation
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("thinking", [True, False])
@pytest.mark.parametrize(("n_items", "window", "layers"), [(4, 4, 1), (17, 3, 2), (23, 4, 3)])
def test_fast_mode_equals_recommendation_path_for_every_target(
    thinking: bool, n_items: int, window: int, layers: int
) -> None:
    """Every target of multi-window sequences, in S2GR and TIGER mode: the fast (one-pass, chunked) logits
    equal the history API's on the target's whole prefix, and on its last `context_items` items (what the
    recommendation path feeds), left-padded inside a batch. Targets past the first window are the hard case:
    their encoder states carry context from before the window."""
    model = tiny_model(thinking=thinking, max_history_items=window, encoder_layers=layers)
    config, catalog = model.config, make_catalog(20)
    assert config.context_items == window + layers * (window - 1)
    items = torch.randint(0, len(catalog), (2, n_items), generator=torch.Generator().manual_seed(1))
    sequence_mask = torch.ones(2, n_items, dtype=torch.long)
    sequence_mask[1, n_items - 2 :] = 0
    tokens = to_tokens(config, catalog)
    with torch.no_grad():
        fast = model(sequence_codes=tokens[items], sequence_mask=sequence_mask)
        for row in range(2):
            length = int(sequence_mask[row].sum())
            prefixes = [items[row, :target] for target in range(1, length)]
            recent = [prefix[-config.context_items :] for prefix in prefixes]
            for feed in (prefixes, recent):
                width = max(len(prefix) for prefix in feed)
                padded = torch.stack([F.pad(prefix, (width - len(prefix), 0), value=-1) for prefix in feed])
                input_ids, attention_mask = histories(config, catalog, padded)
                labels = make_labels(config, tokens[items[row, 1:length]])
                slow = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
                torch.testing.assert_close(
                    fast.code_logits[row, 1:length], slow.code_logits, rtol=1e-4, atol=1e-5
                )
                if thinking:
                    torch.testing.assert_close(
                        fast.thinking_states[row, 1:length], slow.thinking_states, rtol=1e-4, atol=1e-5
                    )


def test_decoder_reads_only_the_last_window_in_causal_mode() -> None:
    """Items older than `context_items` change nothing; an item inside it but before the window does."""
    model = tiny_model(thinking=True, max_history_items=3, encoder_layers=1)
    config, catalog = model.config, make_catalog(20)
    assert config.context_items == 5
    base = torch.randint(0, len(catalog), (1, 7), generator=torch.Generator().manual_seed(4))
    changed_old, changed_context = base.clone(), base.clone()
    changed_old[0, 1] = (base[0, 1] + 1) % len(catalog)  # 6th item from the end: outside the context
    changed_context[0, 2] = (base[0, 2] + 1) % len(catalog)  # 5th from the end: inside, before the window
    labels = make_labels(config, to_tokens(config, catalog)[:1])
    logits = []
    with torch.no_grad():
        for history in (base, changed_old, changed_context):
            input_ids, attention_mask = histories(config, catalog, history)
            logits.append(
                model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).code_logits
            )
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-5, atol=1e-6)
    assert (logits[0] - logits[2]).abs().max() > 1e-3


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 3),
    n_chunks=st.integers(1, 4),
    chunk=st.integers(1, 3),
    features=st.sampled_from([(), (2,), (2, 3)]),
    seed=st.integers(0, 2**16),
)
def test_kept_chunk_windows_are_the_selected_windows(batch, n_chunks, chunk, features, seed) -> None:
    """Gathering only the kept windows gives what cutting every window and selecting would, values and
    gradients: chunk c's window is chunk c - 1 (zeros for c = 0) followed by chunk c."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_chunks * chunk, *features, generator=generator, requires_grad=True)
    keep = torch.rand(batch * n_chunks, generator=generator) > 0.5
    every = chunk_windows(x, chunk)  # (B * nc, 2 * chunk, ...)
    chunks = x.unflatten(1, (n_chunks, chunk)).flatten(0, 1)
    for window in range(batch * n_chunks):
        previous = chunks[window - 1] if window % n_chunks else torch.zeros_like(chunks[0])
        assert torch.equal(every[window], torch.cat([previous, chunks[window]]))
    kept = chunk_windows(x, chunk, keep)
    assert torch.equal(kept, every[keep])
    weights = torch.randn(kept.shape, generator=generator)
    (grad_kept,) = torch.autograd.grad((kept * weights).sum(), x)
    (grad_every,) = torch.autograd.grad((every[keep] * weights).sum(), x)
    torch.testing.assert_close(grad_kept, grad_every)


def test_fast_mode_target_mask_restricts_targets() -> None:
    model = tiny_model(thinking=True, max_history_items=3)
    config, catalog = model.config, make_catalog(20)
    items = torch.randint(0, len(catalog), (2, 8), generator=torch.Generator().manual_seed(3))
    sequence_codes = to_tokens(config, catalog)[items]
    sequence_mask = torch.ones(2, 8, dtype=torch.long)
    sequence_mask[1, 6:] = 0
    target_mask = torch.arange(8)[None, :].expand(2, -1) >= torch.tensor([[3], [6]])
    with torch.no_grad():
        everything = model(sequence_codes=sequence_codes, sequence_mask=sequence_mask)
        restricted = model(
            sequence_codes=sequence_codes, sequence_mask=sequence_mask, target_mask=target_mask
        )
    expected_targets = target_mask & sequence_mask.bool()
    assert torch.equal(restricted.target_mask, expected_targets)
    # Row 1 has no target: its first chunk (items 0-2) is skipped and stays zero.
    assert (restricted.code_logits[1, :3] == 0).all()
    torch.testing.assert_close(
        restricted.code_logits[expected_targets],
        everything.code_logits[expected_targets],
        rtol=1e-5,
        atol=1e-6,
    )
    codes = sequence_codes[expected_targets] - torch.tensor(
        [config.code_offset(j) for j in range(LEVELS + 1)]
    )
    # The SID's negative log-likelihood (summed over its code tokens), averaged over the targets.
    rec = F.cross_entropy(
        restricted.code_logits[expected_targets].flatten(0, 1), codes.flatten(), reduction="sum"
    ) / len(codes)
    torch.testing.assert_close(restricted.rec_loss, rec)


def test_chunked_encoder_equals_banded_full_encoder() -> None:
    model = tiny_model(thinking=True, max_history_items=3)
    config, catalog = model.config, make_catalog(20)
    steps = config.num_code_steps
    items = torch.randint(0, len(catalog), (2, 9), generator=torch.Generator().manual_seed(2))
    valid = torch.ones(2, 9, dtype=torch.bool)
    valid[1, 7:] = False
    input_ids = to_tokens(config, catalog)[items].masked_fill(~valid[..., None], 0).flatten(1)
    token_valid = valid.repeat_interleave(steps, dim=1)
    with torch.no_grad():
        chunked = model.encoder.encode_items(input_ids, token_valid, chunk=3 * steps)
        full = model.encoder.encode(input_ids, token_valid)
    torch.testing.assert_close(chunked[token_valid], full[token_valid], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Constrained beam search
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("thinking", [True, False])
def test_beam_search_equals_exhaustive_scoring(thinking: bool) -> None:
    model = tiny_model(thinking=thinking, seed=3)
    config, catalog = model.config, make_catalog(24)
    tables = build_prefix_tables(catalog)
    input_ids, attention_mask, _ = batch_inputs(config, catalog, batch=2)
    result = model.recommend(input_ids, attention_mask, tables, top_k=len(catalog), num_beams=len(catalog))
    for row in range(2):
        scores = exhaustive_scores(model, input_ids[row : row + 1], attention_mask[row : row + 1], catalog)
        order = torch.argsort(scores, descending=True)
        assert sorted(result.item_indices[row].tolist()) == list(range(len(catalog)))
        torch.testing.assert_close(result.scores[row], scores[order], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(result.scores[row], scores[result.item_indices[row]], rtol=1e-4, atol=1e-4)
        assert torch.equal(result.codes[row], torch.as_tensor(catalog)[result.item_indices[row]])
        # Probabilities renormalised per step: all items together have mass 1.
        torch.testing.assert_close(scores.exp().sum(), torch.tensor(1.0), rtol=1e-4, atol=1e-4)


def test_beam_search_is_exact_with_a_collision_group_wider_than_the_codebook() -> None:
    # 12 items share one prefix (dedup codes 0..11), so the dedup step's fan-out (12) exceeds K (8).
    model = tiny_model(thinking=True, seed=5, dedup_size=12)
    base = make_catalog(16)
    shared = base[0, :LEVELS]
    group = np.concatenate([np.repeat(shared[None], 12, axis=0), np.arange(12)[:, None]], axis=1)
    catalog = np.concatenate([base[(base[:, :LEVELS] != shared).any(1)], group])
    tables = build_prefix_tables(catalog)
    input_ids, attention_mask, _ = batch_inputs(model.config, catalog, batch=2)
    result = model.recommend(input_ids, attention_mask, tables, top_k=len(catalog), num_beams=len(catalog))
    for row in range(2):
        scores = exhaustive_scores(model, input_ids[row : row + 1], attention_mask[row : row + 1], catalog)
        assert sorted(result.item_indices[row].tolist()) == list(range(len(catalog)))
        torch.testing.assert_close(result.scores[row], scores[result.item_indices[row]], rtol=1e-4, atol=1e-4)
        assert torch.equal(result.codes[row], torch.as_tensor(catalog)[result.item_indices[row]])


def test_recommend_returns_valid_distinct_items_and_respects_exclusions() -> None:
    model = tiny_model(thinking=True, seed=4)
    config, catalog = model.config, make_catalog(32)
    tables = build_prefix_tables(catalog)
    input_ids, attention_mask, _ = batch_inputs(config, catalog, batch=3)
    full = model.recommend(input_ids, attention_mask, tables, top_k=32, num_beams=32)
    excluded = torch.stack([full.item_indices[:, 0], full.item_indices[:, 2], torch.full((3,), -1)], dim=1)
    excluded[1, 2] = full.item_indices[1, 5]
    result = model.recommend(input_ids, attention_mask, tables, top_k=10, num_beams=4, exclude_items=excluded)
    assert result.item_indices.shape == (3, 10) and result.codes.shape == (3, 10, LEVELS + 1)
    for row in range(3):
        items = result.item_indices[row].tolist()
        assert all(0 <= item < len(catalog) for item in items)
        assert len(set(items)) == 10
        assert not set(items) & set(excluded[row].tolist())
        assert torch.equal(result.codes[row], torch.as_tensor(catalog)[result.item_indices[row]])
        assert (result.scores[row][:-1] >= result.scores[row][1:]).all()
    # With a wide beam, excluding items only removes them from the exhaustive ranking.
    wide = model.recommend(input_ids, attention_mask, tables, top_k=10, num_beams=32, exclude_items=excluded)
    for row in range(3):
        kept = [i for i in full.item_indices[row].tolist() if i not in excluded[row].tolist()]
        assert wide.item_indices[row].tolist() == kept[:10]


def test_recommend_pads_only_when_catalog_is_smaller_than_top_k() -> None:
    model = tiny_model(thinking=False, seed=5)
    config, catalog = model.config, make_catalog(6)
    tables = build_prefix_tables(catalog)
    input_ids, attention_mask, _ = batch_inputs(config, catalog, batch=2)
    result = model.recommend(input_ids, attention_mask, tables, top_k=10, num_beams=3)
    for row in range(2):
        items = result.item_indices[row]
        assert sorted(items[:6].tolist()) == list(range(6))
        assert (items[6:] == -1).all() and (result.codes[row, 6:] == -1).all()
        assert torch.isinf(result.scores[row, 6:]).all()


def test_generate_tiger_yields_valid_sids_and_matches_greedy_recommend() -> None:
    model = tiny_model(thinking=False, seed=6, encoder_mode="bidirectional")
    config, catalog = model.config, make_catalog(24)
    tables = build_prefix_tables(catalog)
    tokens = to_tokens(config, catalog)
    allowed: dict[tuple[int, ...], set[int]] = {}
    for row in tokens.tolist():
        for step in range(config.num_code_steps):
            allowed.setdefault(tuple(row[:step]), set()).add(row[step])

    def prefix_allowed_tokens_fn(batch_id: int, sent: torch.Tensor) -> list[int]:
        return sorted(allowed.get(tuple(sent[1:].tolist()), {config.eos_token_id}))

    input_ids, attention_mask, _ = batch_inputs(config, catalog, batch=2)
    generated = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
        num_beams=4,
        num_return_sequences=4,
        max_new_tokens=config.num_code_steps,
        do_sample=False,
    )
    sids = {tuple(row) for row in tokens.tolist()}
    assert generated.shape == (8, 1 + config.num_code_steps)
    assert all(tuple(row[1:]) in sids for row in generated.tolist())
    for user in range(2):
        assert len({tuple(r) for r in generated[4 * user : 4 * user + 4].tolist()}) == 4
    greedy = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
        num_beams=1,
        max_new_tokens=config.num_code_steps,
        do_sample=False,
    )
    top_1 = model.recommend(input_ids, attention_mask, tables, top_k=1, num_beams=1)
    assert torch.equal(greedy[:, 1:], to_tokens(config, top_1.codes[:, 0]))


def test_cache_name_matches_what_generate_passes() -> None:
    """The one probe of transformers internals (`uses_legacy_cache_name`) must agree with what this version's
    `generate()` actually passes to `forward`; if this fails, transformers renamed the decoding cache again."""
    model = tiny_model(thinking=False, seed=6, encoder_mode="bidirectional")
    input_ids, attention_mask, _ = batch_inputs(model.config, make_catalog(24), batch=2)
    passed: set[str] = set()
    forward = model.forward

    def recording_forward(*args: object, **kwargs: object) -> object:
        passed.update(name for name in ("cache", "past_key_values") if kwargs.get(name) is not None)
        return forward(*args, **kwargs)

    model.forward = recording_forward
    model.generate(
        input_ids=input_ids, attention_mask=attention_mask, num_beams=2, max_new_tokens=3, do_sample=False
    )
    expected = {"past_key_values"} if uses_legacy_cache_name() else {"cache"}
    assert passed == expected, (
        f"generate() passed the decoding cache as {sorted(passed)}, but uses_legacy_cache_name() expects "
        f"{sorted(expected)}: update s2gr.modeling_s2gr.uses_legacy_cache_name for this transformers version."
    )


# ----------------------------------------------------------------------------------------------------------------
# Memorisation
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("thinking", [True, False])
def test_tiny_model_memorises_64_sequences(thinking: bool) -> None:
    model = tiny_model(thinking=thinking, seed=0, decoder_layers=1, encoder_mode="bidirectional")
    config, catalog = model.config, make_catalog(32)
    tables = build_prefix_tables(catalog)
    rng = torch.Generator().manual_seed(0)
    sequences = torch.randint(0, len(catalog), (64, 4), generator=rng)
    input_ids, attention_mask = histories(config, catalog, sequences[:, :3])
    targets = sequences[:, 3]
    labels = make_labels(config, to_tokens(config, catalog)[targets])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    recall = 0.0
    for step in range(1, 401):
        model.train()
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 25 == 0:
            model.eval()
            top = model.recommend(input_ids, attention_mask, tables, top_k=1, num_beams=4).item_indices[:, 0]
            recall = (top == targets).float().mean().item()
            if recall == 1.0:
                break
    assert recall == 1.0


# ----------------------------------------------------------------------------------------------------------------
# Hugging Face integration
# ----------------------------------------------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path: Path) -> None:
    model = tiny_model(thinking=True, seed=7)
    input_ids, attention_mask, labels = batch_inputs(model.config, make_catalog(20))
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    model.save_pretrained(tmp_path)
    saved = {p.name for p in tmp_path.iterdir()}
    code = {"configuration_s2gr.py", "modeling_s2gr.py", "layers_s2gr.py", "beam_search_s2gr.py", "errors.py"}
    assert {"model.safetensors", "config.json", *code} <= saved
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_s2gr.S2GRForGenerativeRecommendation"
    loaded = S2GRForGenerativeRecommendation.from_pretrained(tmp_path).eval()
    assert loaded.encoder.embed_tokens.weight is loaded.shared.weight
    assert torch.equal(loaded.code_clusters, model.code_clusters)
    with torch.no_grad():
        again = loaded(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(again.code_logits, expected.code_logits, rtol=0, atol=0)
    torch.testing.assert_close(again.loss, expected.loss, rtol=0, atol=0)


def test_trust_remote_code_load_in_fresh_process(tmp_path: Path) -> None:
    """A checkpoint of this layout (model, tokenizer and every module they import relatively) loads in a clean
    process with trust_remote_code=True, without the s2gr package, and gives the installed classes' logits and
    constrained recommendations: the same item indices and bit-identical scores."""
    from s2gr import S2GRRecommender
    from s2gr.tokenization_s2gr import S2GRTokenizer

    model = tiny_model(thinking=True, seed=8)
    catalog = make_catalog(20)
    input_ids, attention_mask, labels = batch_inputs(model.config, catalog)
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).code_logits
    tokenizer = S2GRTokenizer(
        item_ids=[f"item-{i}" for i in range(len(catalog))],
        codes=catalog,
        codebook_size=CODES,
        dedup_size=DEDUP,
        code_clusters=model.code_clusters.numpy(),
        max_history_items=model.config.context_items,
    )
    histories = [["item-3", "item-7", "item-1"], ["item-12"], [f"item-{i}" for i in range(9)]]
    recommended = S2GRRecommender(model, tokenizer).recommend(
        histories, top_k=8, num_beams=5, exclude=histories, return_scores=True
    )
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    code = {"modeling_s2gr.py", "layers_s2gr.py", "beam_search_s2gr.py", "configuration_s2gr.py", "errors.py"}
    code |= {"tokenization_s2gr.py", "catalog_s2gr.py", "layout_s2gr.py"}
    assert code <= {path.name for path in folder.iterdir()}
    torch.save(
        {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "expected": expected},
        tmp_path / "batch.pt",
    )
    imports = "import json\nimport sys\nimport torch\nfrom transformers import AutoModel, AutoTokenizer\n"
    script = (
        imports
        + PACKAGE_FREE_RECOMMEND
        + textwrap.dedent(
            """
        torch.set_num_threads(1)  # as in the parent: same float sums, bit-identical scores
        model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
        batch = torch.load(sys.argv[2])
        with torch.no_grad():
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
            ).code_logits
        torch.testing.assert_close(logits, batch["expected"], rtol=0, atol=0)
        # Constrained recommendation through the copied modules: token tensors in, item indices out.
        ranked = package_free_recommend(model, tokenizer, json.loads(sys.argv[3]), top_k=8, num_beams=5)
        assert "s2gr" not in sys.modules, "the s2gr package was imported"
        for obj in (model, tokenizer):
            assert type(obj).__module__.startswith("transformers_modules"), type(obj).__module__
        print("REMOTE-OK " + json.dumps(ranked))
        """
        )
    )
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path / "batch.pt"), json.dumps(histories)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("REMOTE-OK ")]
    remote = json.loads(line.removeprefix("REMOTE-OK "))
    assert all(len(row) == 8 for row in remote)
    assert remote == [[[item, score] for item, score in row] for row in recommended]  # ids and exact scores


def test_remote_code_of_one_folder_is_not_used_for_another(tmp_path: Path) -> None:
    """A folder loaded with trust_remote_code=True registers nothing globally: a second s2gr folder loaded
    without trust_remote_code is refused instead of silently running the first folder's code."""
    for name in ("a", "b"):
        tiny_model(thinking=True, seed=8).save_pretrained(tmp_path / name)
    with (tmp_path / "a" / "modeling_s2gr.py").open("a") as handle:
        handle.write("\nS2GRForGenerativeRecommendation.FOLDER = 'a'\n")
    script = textwrap.dedent(
        """
        import sys
        from transformers import AutoConfig, AutoModel

        first = AutoModel.from_pretrained(sys.argv[1] + "/a", trust_remote_code=True)
        assert type(first).FOLDER == "a"
        for load in (AutoConfig.from_pretrained, AutoModel.from_pretrained):
            try:
                second = load(sys.argv[1] + "/b", trust_remote_code=False)
            except ValueError as error:
                assert "trust_remote_code" in str(error), error
            else:
                raise SystemExit(f"{load.__qualname__} loaded folder b with {type(second).__module__}")
        assert "s2gr" not in sys.modules, "the s2gr package was imported"
        print("ISOLATED-OK")
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "ISOLATED-OK" in result.stdout


def test_auto_classes_resolve_registered_model() -> None:
    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

    config = tiny_config(thinking=False)
    assert isinstance(AutoConfig.for_model("s2gr"), S2GRConfig)
    assert isinstance(AutoModel.from_config(config), S2GRForGenerativeRecommendation)
    assert isinstance(AutoModelForSeq2SeqLM.from_config(config), S2GRForGenerativeRecommendation)


def test_lora_on_q_and_v_projections() -> None:
    from peft import LoraConfig, get_peft_model

    model = tiny_model(thinking=True, seed=9)
    config = model.config
    input_ids, attention_mask, labels = batch_inputs(config, make_catalog(20))
    with torch.no_grad():
        base = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    rank = 2
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    attention_blocks = config.encoder_layers + 2 * config.decoder_layers + 2 * config.aux_decoder_layers
    inner = config.num_heads * config.d_kv
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == attention_blocks * 2 * rank * (config.d_model + inner)
    out = peft_model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(out.loss, base)  # LoRA B starts at zero
    out.loss.backward()
    lora_grads = [p.grad for n, p in peft_model.named_parameters() if "lora_" in n]
    assert lora_grads and all(g is not None for g in lora_grads)
    assert any(g.abs().sum() > 0 for g in lora_grads)
    assert all(p.grad is None for n, p in peft_model.named_parameters() if "lora_" not in n)


# ----------------------------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors() -> None:
    model = tiny_model(thinking=True)
    config, catalog = model.config, make_catalog(20)
    input_ids, attention_mask, labels = batch_inputs(config, catalog)

    with pytest.raises(ValueError, match="only padding"):
        model(input_ids=input_ids, attention_mask=torch.zeros_like(attention_mask), labels=labels)
    with pytest.raises(ValueError, match="token ids in"):
        model(input_ids=input_ids.masked_fill(attention_mask.bool(), config.vocab_size), labels=labels)
    bad_labels = labels.clone()
    bad_labels[:, 1] = config.code_offset(1)  # a level-2 code where level 1 belongs
    with pytest.raises(ValueError, match="level 0"):
        model(input_ids=input_ids, attention_mask=attention_mask, labels=bad_labels)
    ignored = labels.clone()
    ignored[:, 1] = -100
    with pytest.raises(ValueError, match="-100"):
        model(input_ids=input_ids, attention_mask=attention_mask, labels=ignored)
    with pytest.raises(ValueError, match="placeholder"):
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels.roll(1, dims=1))
    with pytest.raises(ValueError, match="labels must be"):
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels[:, :-1])
    with pytest.raises(ValueError, match="whole items"):
        model(input_ids=input_ids[:, 1:], attention_mask=attention_mask[:, 1:], labels=labels)
    with pytest.raises(ValueError, match="set_code_clusters"):
        unclustered = S2GRForGenerativeRecommendation(config)
        unclustered(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(input_ids=input_ids, attention_mask=attention_mask)
    with pytest.raises(ValueError, match="TIGER mode"):
        model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=labels[:, :1])
    with pytest.raises(ValueError, match="No targets"):
        model(sequence_codes=to_tokens(config, catalog)[None, :3], target_mask=torch.tensor([[1, 0, 0]]))
    with pytest.raises(ValueError, match="right-padded"):
        model(sequence_codes=to_tokens(config, catalog)[None, :3], sequence_mask=torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match="cluster ids"):
        model.set_code_clusters(torch.full((LEVELS, CODES), CLUSTERS))
    bidirectional = tiny_model(thinking=True, encoder_mode="bidirectional")
    with pytest.raises(ValueError, match="causal"):
        bidirectional(sequence_codes=to_tokens(config, catalog)[None, :3])
    with pytest.raises(ValueError, match="prefix_tables"):
        model.recommend(input_ids, attention_mask, None)


def test_recommend_prunes_fully_excluded_prefixes_without_losing_slots() -> None:
    model = tiny_model(thinking=True, seed=6)
    config, catalog = model.config, make_catalog(32)
    tables = build_prefix_tables(catalog)
    input_ids, attention_mask, _ = batch_inputs(config, catalog, batch=2)
    everything = model.recommend(input_ids, attention_mask, tables, top_k=32, num_beams=32)
    # User 0 has seen 27 of 32 items (listed twice: duplicates must count once); user 1 all but 3.
    seen0 = everything.item_indices[0, :27].repeat(2)
    seen1 = everything.item_indices[1, 3:]
    excluded = torch.full((2, 60), -1)
    excluded[0, : len(seen0)], excluded[1, : len(seen1)] = seen0, seen1
    result = model.recommend(input_ids, attention_mask, tables, top_k=5, num_beams=5, exclude_items=excluded)
    assert sorted(result.item_indices[0].tolist()) == sorted(everything.item_indices[0, 27:].tolist())
    assert result.item_indices[1, :3].tolist() == everything.item_indices[1, :3].tolist()  # same order
    assert result.item_indices[1, 3:].tolist() == [-1, -1]  # only 3 unseen items exist
