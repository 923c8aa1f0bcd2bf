"""Fine-tuning a trained S2GR model on a new catalog: new items get Semantic IDs, the model learns them.

``finetune_run(base_dir, config, lora=False)`` (``s2gr finetune --base FOLDER --dataset ... [--lora]``):

1. **Base.** The base model and its tokenizer, read by ``s2gr.checkpoint.load_checkpoint`` (the loader of
   ``s2gr evaluate`` and ``recommend`` too): a ``model/`` folder of a training run, or the run folder itself; a
   missing or unreadable folder is a clear ``FileNotFoundError``/``ValueError``.
2. **Catalog.** Every item of the new data set that the tokenizer lacks gets a SID from the *frozen* codebook
   (``extend_catalog``): the tokenizer's stored quantizer state is rebuilt (``FrozenQuantizer.from_state_dict``)
   and assigns the new items' features; ``S2GRTokenizer.add_items`` appends them with free dedup codes. Old
   items keep their SIDs and token ids (append-only), so everything the base model learnt stays valid.
   Features: the new items' content embeddings propagated over the new data's co-occurrence graph
   (``aligned_features`` with the run's codebook settings: the ``H_align`` the base codebook was trained on,
   so a new item lands near the items it is consumed with; an item without co-occurrences keeps its content
   embedding, exactly ``H_align`` for an isolated item). Pass the base run's ``codebook`` fields if it changed
   the graph settings.
3. **Vocabulary.** The layout ``4 + L*K + D + T`` does not depend on the items: new items reuse the existing
   code tokens, and the tokenizer reserves free dedup codes (headroom) for collisions. So the embedding matrix
   does **not** grow, and this is verified (``tokenizer.vocab_size == model.config.vocab_size``). When a
   collision group would need a dedup code ``≥ D`` the vocabulary would have to grow, shifting the thinking-
   token ids the base was trained with; that is refused with a ``ValueError`` that says so (nothing is added).
4. **Training** with the run's own ``build_trainer`` (same samples, schedule, validation and best-checkpoint
   logic as ``s2gr train``) on the new data set, either fully (every weight) or with PEFT LoRA
   (``lora=True``): rank-``r`` adapters on the attention projections ``q_proj/k_proj/v_proj/o_proj`` of
   encoder, decoder and auxiliary decoder, plus ``trainable_token_indices`` on the code-token rows that the
   new items' SIDs use (see *Why trainable token rows* below). Architecture fields (``model``, ``encoder_mode``,
   ``num_thinking``) come from the base; ``config.model`` is ignored.
5. **Output** in ``config.output_dir``::

       adapter/        (LoRA only) PEFT adapter + the extended tokenizer: PeftModel.from_pretrained(base, adapter/)
       model/          merged full model (merge_and_unload) + extended tokenizer + card: what from_pretrained and
                       `s2gr push` accept (written by the same `save_model` as `s2gr train`)
       checkpoint-*/   Trainer checkpoints (adapter-only under LoRA)
       run_config.yaml, run.json (with "finetune": base, method, new items), metrics.json

Why trainable token rows, not ``modules_to_save``
-------------------------------------------------
The code embedding ``shared`` is the same module as ``encoder.embed_tokens`` and its ``.weight`` is read
directly by the tied per-level code heads, the thinking offsets and BOS. ``modules_to_save=["shared"]`` deep-
copies the module under one name only: the encoder would keep reading the frozen original while the heads read
the trained copy (and ``save_pretrained`` re-ties them, so the merged model would silently differ). PEFT's
``TrainableTokensWrapper`` instead wraps *both* aliases with one tied delta and exposes ``.weight`` as the
merged matrix, so encoder inputs, decoder inputs and code heads all see the same trained rows, and
``merge_and_unload`` writes them into the one shared matrix. Which rows: every token of a new item's SID
(level codes and dedup code). Those include the rows the base never trained as targets (codes no base item used,
headroom dedup codes), which a new item cannot be generated without; rows of codes that no new item uses stay
bit-identical to the base. The adapter stores only these rows (``|rows| × d_model`` floats).

Full fine-tuning by default, LoRA as an option
----------------------------------------------
A new item's level codes usually form a pair of first- and second-level codes that no base item has: an
association the base model has learnt to suppress, and the second level is where new items lose most of their
likelihood. Rewriting it takes the feed-forward layers, which attention-only LoRA leaves frozen, so at the same
budget LoRA learns new items far more slowly than full fine-tuning, which is therefore the default
(``lora=False``, as in the CLI); LoRA suits small catalog changes. ``lora_targets=(*ATTENTION_PROJECTIONS,
*FEED_FORWARD)`` puts LoRA on the FFNs too. ``benchmarks/finetune_new_catalog.py`` measures both (results:
``benchmarks/RESULTS.md``).

Evaluation on held-out catalog items (``hold_out_items``)
--------------------------------------------------------
``hold_out_items(data, fraction, seed)`` removes a random share of items and all their interactions, to train a
base model that has never seen them (``benchmarks/finetune_new_catalog.py``). Each user's full sequence is
rebuilt (training items, validation and test targets), the held-out items are dropped from it and the leave-
one-out split is redone, so the base data is exactly the full data minus those items; users left with fewer
than 3 items are dropped. No second k-core pass (it would change the user set); an item whose every user was
dropped disappears too and is reported with the held-out ones.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import set_seed

from ..checkpoint import load_checkpoint, resolve_model_folder
from ..codebook import CodebookConfig, FrozenQuantizer, aligned_features
from ..codebook.stats import collision_stats, level_usage
from ..data import RecData, embed_items
from ..data.loading import build_recdata
from ..errors import InputError
from ..evaluation import final_metrics
from ..modeling_s2gr import S2GRForGenerativeRecommendation
from ..titles import item_titles, load_titles
from ..tokenization_s2gr import S2GRTokenizer
from .config import RunConfig
from .run import (
    MODEL_DIR,
    RunResult,
    build_trainer,
    load_run_data,
    process_state,
    run_summary,
    save_model,
)
from .run_folder import CONFIG_FILE, prepare_run_folder, write_json

ADAPTER_DIR = "adapter"
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
FEED_FORWARD = ("wi", "wo")  # add to `lora_targets` for LoRA on the FFNs too (see the module docstring)
DEFAULT_LORA_RANK = 16


@dataclass
class FinetuneResult(RunResult):
    """``RunResult`` of a fine-tuning run, plus where the adapter went and which items were new."""

    adapter_dir: Path | None = None  # None for full fine-tuning
    new_items: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- held-out items


def hold_out_items(data: RecData, fraction: float, seed: int = 0) -> tuple[RecData, list[str]]:
    """``data`` without a random ``fraction`` of its items and their interactions, and the removed item ids
    (in ``data``'s item order; see the module docstring for what else may go)."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"fraction must lie in (0, 1), got {fraction}.")
    items = data.item_ids
    count = max(1, round(fraction * len(items)))
    chosen = np.random.default_rng(seed).choice(len(items), size=count, replace=False)
    held = {items[i] for i in chosen}
    log = full_sequences(data)
    log = log[~log["item_id"].isin(held)]
    metadata = data.items.to_pandas()
    metadata = metadata[~metadata["item_id"].isin(held)]
    name = f"{data.name} minus {count} held-out items"
    # kcore=1: no second filter, so the base keeps every user and item that still has a sequence.
    base = build_recdata(name, log, metadata, kcore=1, max_history=data.max_history)
    kept = set(base.item_ids)
    return dataclasses.replace(base, kcore=data.kcore), [item for item in items if item not in kept]


def full_sequences(data: RecData) -> pd.DataFrame:
    """Every user's whole sequence (training items, validation target, test target) as a log with columns
    ``user_id``, ``item_id`` and ``timestamp`` = position in the sequence (so chronological order is kept)."""
    splits = data.splits
    sequences = [
        [*train, valid, test]
        for train, valid, test in zip(
            splits["train"]["item_ids"], splits["validation"]["target"], splits["test"]["target"], strict=True
        )
    ]
    log = pd.DataFrame({"user_id": splits["train"]["user_id"], "item_id": sequences}).explode("item_id")
    log["timestamp"] = log.groupby("user_id", sort=False).cumcount()
    return log.reset_index(drop=True)


# -------------------------------------------------------------------------------------------------- catalog


def extend_catalog(
    tokenizer: S2GRTokenizer,
    data: RecData,
    embeddings: np.ndarray,
    codebook: CodebookConfig | None = None,
) -> list[str]:
    """Give every item of ``data`` that ``tokenizer`` lacks a SID from the tokenizer's frozen codebook.

    embeddings: ``(N, E)`` content embeddings aligned with ``data.items``. codebook: the graph settings of
    the feature propagation (default ``CodebookConfig()``, as in a default training run).
    Returns the new item ids in ``data`` order (empty when there are none); they are appended to the tokenizer.
    Raises ``ValueError`` when the tokenizer has no stored quantizer or the dedup level is full.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(data.items):
        raise InputError(
            f"embeddings must be (N, E) with N = {len(data.items)} items, got {embeddings.shape}."
        )
    known = set(tokenizer.item_ids)
    rows = [row for row, item in enumerate(data.item_ids) if item not in known]
    if not rows:
        return []
    new_ids = [data.item_ids[row] for row in rows]
    state = tokenizer.quantizer_state
    if state is None:
        raise InputError(
            f"{len(new_ids)} new items need SIDs, but the base tokenizer stores no quantizer state to assign them "
            "(it was not built by build_semantic_ids); give their codes with tokenizer.add_items(ids, codes=...)."
        )
    sequences = [np.asarray(sequence, dtype=np.int64) for sequence in data.train_sequences()]
    features = aligned_features(embeddings, sequences, codebook or CodebookConfig())  # (N, E)
    codes = FrozenQuantizer.from_state_dict(state).assign(embeddings[rows], graph_features=features[rows])
    vocab_size = tokenizer.vocab_size
    try:
        tokenizer.add_items(new_ids, codes=codes)  # (M, L) level codes; add_items picks the dedup codes
    except ValueError as error:
        raise InputError(
            f"cannot add {len(new_ids)} new items without growing the vocabulary: {error}. Growing the dedup "
            f"level (D = {tokenizer.dedup_size}) would shift the thinking-token ids and the embedding rows the "
            "base model was trained with, so fine-tuning refuses it; train the base model on a catalog that "
            "includes these items (or with a tokenizer built with a larger dedup_size)."
        ) from error
    if (
        tokenizer.vocab_size != vocab_size
    ):  # add_items promises a fixed layout; a change would corrupt the model
        raise RuntimeError(f"the vocabulary changed from {vocab_size} to {tokenizer.vocab_size} tokens.")
    return new_ids


def sid_token_ids(tokenizer: S2GRTokenizer, item_ids: Sequence[str]) -> list[int]:
    """Sorted distinct token ids (level codes and dedup code) of the items' SIDs."""
    if not item_ids:
        return []
    codes = np.array([tokenizer.item_to_sid(item) for item in item_ids], dtype=np.int64)  # (M, L+1)
    steps = np.arange(tokenizer.num_levels + 1)[None, :]  # (1, L+1): code step of each column
    return sorted(set(np.asarray(tokenizer.code_token_id(steps, codes)).ravel().tolist()))


def catalog_stats(tokenizer: S2GRTokenizer) -> dict[str, Any]:
    """Codebook statistics of the tokenizer's current catalog (the extended one after ``extend_catalog``)."""
    levels = tokenizer.codes[:, :-1]  # (N, L)
    return {**level_usage(levels, tokenizer.codebook_size), **collision_stats(levels)}


# ----------------------------------------------------------------------------------------------------- model


def lora_model(
    model: S2GRForGenerativeRecommendation,
    token_ids: Sequence[int],
    rank: int = DEFAULT_LORA_RANK,
    targets: Sequence[str] = ATTENTION_PROJECTIONS,
) -> PeftModel:
    """LoRA on the ``targets`` linear layers (default the attention projections), plus the code-token rows
    ``token_ids`` of ``shared`` (tied to the encoder's embedding and the code heads; see the module docstring)."""
    if rank < 1:
        raise InputError(f"LoRA rank must be ≥ 1, got {rank}.")
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,  # the base model's own dropout already regularises the residual stream
        target_modules=list(targets),
        trainable_token_indices=list(token_ids) or None,
    )
    with warnings.catch_warnings():
        # transformers deprecation noise raised inside PEFT's wrapping; nothing to act on here
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, config)


# ------------------------------------------------------------------------------------------------------ run


def finetune_run(
    base_dir: str | Path,
    config: RunConfig,
    lora: bool = False,
    *,
    lora_rank: int = DEFAULT_LORA_RANK,
    lora_targets: Sequence[str] = ATTENTION_PROJECTIONS,
    data: RecData | None = None,
    embeddings: np.ndarray | None = None,
    overwrite: bool = False,
    **training_overrides: Any,
) -> FinetuneResult:
    """Fine-tune the model in ``base_dir`` on ``config``'s data set (or ``data``) and write the folder described
    in the module docstring. ``embeddings``: ``(N, E)`` item embeddings aligned with ``data.items`` (default:
    computed with ``config.encoder``, cached). ``lora_rank``/``lora_targets``: LoRA rank and linear layers
    (default the attention projections). ``overwrite``: delete an earlier run in ``config.output_dir`` first
    (else such a folder is refused, as by ``train_run``). ``training_overrides``: ``TrainingArguments`` fields.

    Under ``accelerate launch`` every process runs this (the catalog extension is deterministic); only the main
    process writes files, as in ``train_run``."""
    started = time.perf_counter()
    base = resolve_model_folder(base_dir)
    model, tokenizer = load_checkpoint(base)
    config = _config_for_base(config, model)
    set_seed(config.seed)
    output = Path(config.output_dir)
    if process_state().is_main_process:  # the other ranks of `accelerate launch` write nothing
        prepare_run_folder(config, overwrite=overwrite)
        output.mkdir(parents=True, exist_ok=True)
    data = data if data is not None else load_run_data(config)
    if embeddings is None:
        embeddings = embed_items(data.items, config.encoder, cache_dir=config.cache_dir)
    new_items = extend_catalog(tokenizer, data, embeddings, config.codebook_config())
    token_ids = sid_token_ids(tokenizer, new_items)
    trainable = lora_model(model, token_ids, lora_rank, lora_targets) if lora else model
    trainer = build_trainer(config, data, tokenizer, trainable, **training_overrides)
    trainer.train()
    trained = trainer.model  # best on validation (load_best_model_at_end)
    metrics = final_metrics(trained, tokenizer, data, config)
    main_process = trainer.is_world_process_zero()
    adapter_dir = output / ADAPTER_DIR if lora else None
    if adapter_dir is not None:
        if main_process:
            trained.save_pretrained(adapter_dir)
            tokenizer.save_pretrained(adapter_dir)  # the adapter is useless without the extended catalog
        trained = trained.merge_and_unload()  # same outputs, a plain S2GR model again
    seconds = time.perf_counter() - started
    method = f"LoRA r={lora_rank} on {'/'.join(lora_targets)} + new SID token rows" if lora else "full"
    summary = run_summary(config, data, tokenizer, catalog_stats(tokenizer), trained, metrics, seconds)
    summary["model_name"] = f"s2gr-{data.name}-finetuned"
    summary["finetune"] = {"base": str(base), "method": method, "new_items": len(new_items)}
    summary["training"].update(fine_tuned_from=str(base), method=method)
    if main_process:
        titles = {**(load_titles(base) or {}), **item_titles(data.items)}
        _write_run(output, config, trained, tokenizer, metrics, summary, titles)
    trainer.accelerator.wait_for_everyone()
    return FinetuneResult(
        output_dir=output,
        model_dir=output / MODEL_DIR,
        metrics=metrics,
        seconds=seconds,
        model=trained,
        log_history=trainer.state.log_history,
        is_main_process=main_process,
        adapter_dir=adapter_dir,
        new_items=new_items,
    )


def _write_run(
    output: Path,
    config: RunConfig,
    model: S2GRForGenerativeRecommendation,
    tokenizer: S2GRTokenizer,
    metrics: dict[str, Any],
    summary: dict[str, Any],
    titles: dict[str, str],
) -> None:
    """The merged model folder (the same ``save_model`` as ``s2gr train``) and the run's files."""
    save_model(model, tokenizer, output / MODEL_DIR, summary, titles)
    config.save(output / CONFIG_FILE)
    write_json(output / "metrics.json", metrics)
    write_json(output / "run.json", summary)


def _config_for_base(config: RunConfig, model: S2GRForGenerativeRecommendation) -> RunConfig:
    """The architecture is the base's: its encoder mode decides the training samples, its thinking steps the
    labels; model fields of the run config would describe another network."""
    if config.model:
        warnings.warn(
            f"fine-tuning keeps the base architecture; ignoring model fields {sorted(config.model)}.",
            stacklevel=3,
        )
    base = model.config
    return dataclasses.replace(
        config,
        # Only what decides the samples: the encoder depth and window set how much context each target needs.
        model={"encoder_layers": base.encoder_layers},
        max_history=base.max_history_items,
        encoder_mode=base.encoder_mode,
        num_thinking=base.num_thinking,
    )


def load_finetuned_adapter(base_dir: str | Path, adapter_dir: str | Path) -> tuple[PeftModel, S2GRTokenizer]:
    """The base model with a saved adapter on top, and the extended tokenizer saved with it."""
    model, _ = load_checkpoint(base_dir)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    return peft_model, S2GRTokenizer.from_pretrained(adapter_dir)
