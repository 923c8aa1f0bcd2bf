"""Fine-tuning on a new catalog (``s2gr.training.finetune``) on a real ML-100K slice with a tiny model.

One base run on the slice minus 10 % of its items and one LoRA fine-tuning run on the full slice are shared by
the tests (module fixture); each trains a few steps only: the tests check the mechanics (SIDs, vocabulary,
adapter, merge, files, errors), the benchmark ``benchmarks/finetune_new_catalog.py`` measures quality.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import TINY_CODEBOOK, TINY_MODEL

from s2gr import S2GRRecommender
from s2gr.checkpoint import load_checkpoint
from s2gr.cli import main
from s2gr.codebook import FrozenQuantizer
from s2gr.data import RecData, embed_items, load_data
from s2gr.hub import check_checkpoint
from s2gr.modeling_s2gr import S2GRForGenerativeRecommendation
from s2gr.tokenization_s2gr import S2GRTokenizer
from s2gr.training.config import RunConfig
from s2gr.training.finetune import (
    extend_catalog,
    finetune_run,
    hold_out_items,
    load_finetuned_adapter,
    lora_model,
    sid_token_ids,
)
from s2gr.training.run import train_run

TINY = {
    "model": TINY_MODEL,
    "codebook": TINY_CODEBOOK,
    "batch_size": 16,
    "eval_batch_size": 128,
    "num_beams": 10,
    "patience": 0,
    "eval_every_epochs": 100,  # one validation pass, at the end
    "logging_steps": 50,
}
QUIET = {"disable_tqdm": True}


@dataclass
class Runs:
    data: RecData
    embeddings: np.ndarray
    base: RecData
    held_out: list[str]
    base_dir: Path
    output: Path
    new_items: list[str]
    merged: S2GRForGenerativeRecommendation


def tiny_config(output_dir: Path, max_steps: int, **extra: object) -> RunConfig:
    return RunConfig.from_dict({**TINY, "output_dir": str(output_dir), "max_steps": max_steps, **extra})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("finetune")
    data = load_data("ml-100k", max_users=100)
    embeddings = embed_items(data.items, progress=False)  # (N, E), cached after the first run
    base, held_out = hold_out_items(data, 0.1, seed=0)
    index = data.item_index()
    base_embeddings = embeddings[[index[item] for item in base.item_ids]]  # a vector depends on its text only
    base_run = train_run(tiny_config(root / "base", 20), data=base, embeddings=base_embeddings, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny config's model fields are ignored on purpose
        result = finetune_run(
            base_run.model_dir,
            tiny_config(root / "ft", 20),
            lora=True,
            lora_rank=4,
            data=data,
            embeddings=embeddings,
            **QUIET,
        )
    return Runs(
        data,
        embeddings,
        base,
        held_out,
        base_run.model_dir,
        result.output_dir,
        result.new_items,
        result.model,
    )


def test_hold_out_removes_items_and_their_interactions(runs: Runs) -> None:
    held = set(runs.held_out)
    assert abs(len(held) - round(0.1 * len(runs.data.items))) <= 2
    assert held.isdisjoint(runs.base.item_ids)
    assert set(runs.base.item_ids) | held == set(runs.data.item_ids)
    for name in ("validation", "test"):
        split = runs.base.splits[name]
        assert held.isdisjoint(split["target"])
        assert all(held.isdisjoint(history) for history in split["history"])
    assert all(held.isdisjoint(items) for items in runs.base.splits["train"]["item_ids"])
    # Every remaining interaction is kept, in order: a user's base sequence is the full one minus held-out items.
    full = {
        row["user_id"]: [*row["item_ids"], v, t]
        for row, v, t in zip(
            runs.data.splits["train"],
            runs.data.splits["validation"]["target"],
            runs.data.splits["test"]["target"],
            strict=True,
        )
    }
    train = runs.base.splits["train"]
    for user, items, v, t in zip(
        train["user_id"],
        train["item_ids"],
        runs.base.splits["validation"]["target"],
        runs.base.splits["test"]["target"],
        strict=True,
    ):
        assert [*items, v, t] == [item for item in full[user] if item not in held]


def test_new_items_get_sids_old_sids_unchanged(runs: Runs) -> None:
    _, base_tokenizer = load_checkpoint(runs.base_dir)
    tokenizer = S2GRTokenizer.from_pretrained(runs.output / "model")
    old = base_tokenizer.num_items
    assert sorted(runs.new_items) == sorted(runs.held_out)
    assert tokenizer.item_ids[:old] == base_tokenizer.item_ids
    assert tokenizer.item_ids[old:] == runs.new_items
    np.testing.assert_array_equal(tokenizer.codes[:old], base_tokenizer.codes)
    assert tokenizer.vocab_size == base_tokenizer.vocab_size  # the embedding matrix did not grow
    # Every new item is a leaf of the constrained-decoding trie and decodes back from its SID.
    leaves = set(tokenizer.prefix_tables().items.tolist())
    assert set(range(old, tokenizer.num_items)) <= leaves
    assert all(tokenizer.sid_to_item(tokenizer.item_to_sid(item)) == item for item in runs.new_items)


def test_new_items_are_recommendable(runs: Runs) -> None:
    model = S2GRForGenerativeRecommendation.from_pretrained(runs.output / "model")
    tokenizer = S2GRTokenizer.from_pretrained(runs.output / "model")
    old_items = [item for item in tokenizer.item_ids if item not in set(runs.new_items)]
    histories = runs.data.splits["test"]["history"][:4]
    # With every old item excluded, beam search must reach new items: they are valid SIDs to the model.
    rankings = S2GRRecommender(model, tokenizer).recommend(
        histories, top_k=5, exclude=[old_items] * len(histories)
    )
    assert all(len(ranking) == 5 and set(ranking) <= set(runs.new_items) for ranking in rankings)
    # The base model cannot name them: they are not in its catalog.
    base_model, base_tokenizer = load_checkpoint(runs.base_dir)
    known = set(base_tokenizer.item_ids)
    base_histories = [[item for item in history if item in known] for history in histories]
    base_rankings = S2GRRecommender(base_model, base_tokenizer).recommend(base_histories, top_k=10)
    assert not set(runs.new_items) & {item for ranking in base_rankings for item in ranking}


def test_adapter_reload_and_merged_model_agree(runs: Runs) -> None:
    tokenizer = S2GRTokenizer.from_pretrained(runs.output / "model")
    histories = runs.data.splits["test"]["history"][:8]
    peft_model, adapter_tokenizer = load_finetuned_adapter(runs.base_dir, runs.output / "adapter")
    assert adapter_tokenizer.item_ids == tokenizer.item_ids
    reloaded = S2GRForGenerativeRecommendation.from_pretrained(runs.output / "model")
    outputs = [
        S2GRRecommender(model, tokenizer).recommend(histories, top_k=10, return_scores=True)
        for model in (runs.merged, peft_model, reloaded)
    ]
    for other in outputs[1:]:
        for ranking, other_ranking in zip(outputs[0], other, strict=True):
            assert [item for item, _ in ranking] == [item for item, _ in other_ranking]
            np.testing.assert_allclose([s for _, s in ranking], [s for _, s in other_ranking], atol=1e-4)
    check_checkpoint(runs.output / "model")  # what `s2gr push` needs


def test_lora_round_trip_and_merge_on_trained_tokens(tmp_path: Path) -> None:
    """Unit check without training: random adapter weights and token deltas survive save/reload, and merging
    them gives the same outputs (the tied embedding is updated once, for encoder, decoder and heads)."""
    from peft import PeftModel

    from s2gr.configuration_s2gr import S2GRConfig

    torch.manual_seed(0)
    config = S2GRConfig(
        num_levels=3, codebook_size=16, dedup_size=4, num_clusters=4, encoder_mode="causal", **TINY["model"]
    )
    base = S2GRForGenerativeRecommendation(config)
    base.set_code_clusters(torch.randint(0, 4, (3, 16)))
    base.save_pretrained(tmp_path / "base")
    model = lora_model(
        S2GRForGenerativeRecommendation.from_pretrained(tmp_path / "base"), [5, 30, 52], rank=4
    )
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:  # LoRA B starts at zero; make every adapter weight matter
                parameter.normal_(std=0.5)
    batch = {
        "sequence_codes": torch.stack(
            [torch.randint(0, 16, (3, 6)) + 4 + 16 * level for level in range(3)]
            + [torch.randint(52, 56, (3, 6))],
            dim=-1,
        ),  # (B, n, L+1) token ids
        "sequence_mask": torch.ones(3, 6, dtype=torch.long),
        "target_mask": torch.ones(3, 6, dtype=torch.bool),
    }

    def loss(net: torch.nn.Module) -> float:
        net.eval()
        with torch.no_grad():
            return float(net(**batch).loss)

    before = loss(model)
    assert before != pytest.approx(loss(base))
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(
        S2GRForGenerativeRecommendation.from_pretrained(tmp_path / "base"), tmp_path / "adapter"
    )
    assert loss(reloaded) == pytest.approx(before, abs=1e-5)
    merged = model.merge_and_unload()
    assert merged.encoder.embed_tokens is merged.shared
    assert loss(merged) == pytest.approx(before, abs=1e-4)


def test_no_new_items_still_fine_tunes(runs: Runs, tmp_path: Path) -> None:
    _, base_tokenizer = load_checkpoint(runs.base_dir)
    index = runs.data.item_index()
    base_embeddings = runs.embeddings[[index[item] for item in runs.base.item_ids]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = finetune_run(
            runs.base_dir,
            tiny_config(tmp_path, 2),
            lora=False,
            data=runs.base,
            embeddings=base_embeddings,
            **QUIET,
        )
    assert result.new_items == [] and result.adapter_dir is None
    tokenizer = S2GRTokenizer.from_pretrained(result.model_dir)
    assert tokenizer.item_ids == base_tokenizer.item_ids
    assert sid_token_ids(tokenizer, []) == []


def test_full_dedup_level_is_a_clear_error(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    _, tokenizer = load_checkpoint(runs.base_dir)
    crowded = tokenizer.codes[0, :-1]  # every new item lands on the first item's level codes
    monkeypatch.setattr(
        FrozenQuantizer, "assign", lambda self, x, graph_features=None: np.tile(crowded, (len(x), 1))
    )
    items_before = tokenizer.item_ids
    with pytest.raises(ValueError, match="without growing the vocabulary"):
        extend_catalog(tokenizer, runs.data, runs.embeddings)
    assert tokenizer.item_ids == items_before  # nothing was added


def test_bad_base_folders(tmp_path: Path, runs: Runs) -> None:
    config = tiny_config(tmp_path / "out", 1)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        finetune_run(tmp_path / "missing", config, data=runs.data, embeddings=runs.embeddings)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a loadable S2GR model folder"):
        load_checkpoint(corrupt)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for file in runs.base_dir.iterdir():
        (truncated / file.name).write_bytes(file.read_bytes())
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a loadable S2GR model folder"):
        load_checkpoint(truncated)
    # The CLI turns it into a message and exit code 2.
    assert main(["finetune", "--base", str(tmp_path / "missing"), "--dataset", "ml-100k"]) == 2
    # A run folder is accepted for its model/ folder.
    run_folder = runs.base_dir.parent
    _, tokenizer = load_checkpoint(run_folder)
    assert tokenizer.item_ids == load_checkpoint(runs.base_dir)[1].item_ids
    # One loader: `s2gr recommend` and `evaluate` accept the run folder that `finetune --base` accepts.
    history = ["--history", tokenizer.item_ids[0], "--num-beams", "2", "--device", "cpu"]
    assert main(["recommend", "--model", str(run_folder), *history]) == 0
