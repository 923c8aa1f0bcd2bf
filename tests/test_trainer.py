"""Training infrastructure on a small real slice of ML-100K: ``S2GRTrainer`` and ``train_run``.

Gradient accumulation, logged loss terms, evaluation / best checkpoint / early stopping, resume after a
killed run, and the run folder end to end. Every run is tiny (40 users, d_model 32, a few steps).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from tiny_runs import (
    EXACT_MODEL,
    METRIC_KEYS,
    SGD,
    assert_same_weights,
    child_command,
    child_env,
    model_weights,
    saved_weights,
    single_thread,
    tiny_config,
    without_timing,
)
from transformers import set_seed

import s2gr.catalog as catalog_module
import s2gr.training.trainer as trainer_module
from s2gr import S2GRRecommender
from s2gr.catalog import build_catalog
from s2gr.evaluation import evaluate_split, seen_items
from s2gr.modeling_s2gr import S2GRForGenerativeRecommendation
from s2gr.tokenization_s2gr import S2GRTokenizer
from s2gr.training.config import RunConfig
from s2gr.training.run import build_trainer, cpu_flags, load_run_data, new_model, train_run, trains_in_bf16
from s2gr.training.samples import count_targets

NO_EVAL = {
    "eval_strategy": "no",
    "save_strategy": "no",
    "load_best_model_at_end": False,
    "disable_tqdm": True,
}
LOSS_TERMS = ("rec_loss", "align_loss", "infonce_loss", "reg_loss")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for the whole module: on a few busy cores more threads are much slower, and the
    child processes use one too, so in-process and subprocess runs compute the same floating-point sums."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(data, tokenizer) of the tiny slice, built once for the module."""
    config = tiny_config(tmp_path_factory.mktemp("catalog"))
    data = load_run_data(config)
    catalog = build_catalog(data, config.codebook_config(), encoder=config.encoder, progress=False)
    return data, catalog.tokenizer


def fresh_trainer(tiny, config: RunConfig, seed: int = 0, **overrides):
    data, tokenizer = tiny
    set_seed(seed)
    model = new_model(tokenizer, config)
    return build_trainer(config, data, tokenizer, model, **overrides)


def record_forward_outputs(model: torch.nn.Module) -> list[dict]:
    """Every training forward's loss terms (floats) and its inputs' target count, in call order."""
    records: list[dict] = []

    def hook(module, args, kwargs, output):
        if not module.training:
            return
        entry = {name: float(getattr(output, name).detach()) for name in ("loss", *LOSS_TERMS)}
        for level, value in enumerate(output.align_loss_per_level.tolist()):
            entry[f"align_loss_l{level + 1}"] = value
        entry["num_items_in_batch"] = kwargs.get("num_items_in_batch")
        if "target_mask" in kwargs:
            entry["targets"] = int(kwargs["target_mask"].sum())
        else:
            entry["targets"] = len(kwargs["labels"])
        records.append(entry)

    model.register_forward_hook(hook, with_kwargs=True)
    return records


# --- 1. gradient accumulation ----------------------------------------------------------------------------------


def one_sgd_step(
    tiny, tmp_path: Path, mode: str, batch: int, accumulation: int, loss_kwargs: bool = True, **fields
):
    """One SGD step of the real trainer on the same 8 rows; returns (update per weight, log, forwards).
    ``fields``: further ``RunConfig`` fields."""
    config = tiny_config(
        tmp_path / f"{mode}-{batch}x{accumulation}",
        encoder_mode=mode,
        batch_size=batch,
        gradient_accumulation_steps=accumulation,
        model=EXACT_MODEL,
        **fields,
    )
    trainer = fresh_trainer(tiny, config, **SGD, **NO_EVAL, learning_rate=0.5, max_steps=1, logging_steps=1)
    # One epoch of exactly these 8 rows is the optimiser step: the same rows whatever the sampler's order.
    trainer.train_dataset = trainer.train_dataset.select(range(8))
    trainer.model_accepts_loss_kwargs = loss_kwargs
    before = model_weights(trainer.model)
    forwards = record_forward_outputs(trainer.model)
    trainer.train()
    after = model_weights(trainer.model)
    update = {name: after[name] - before[name] for name in before}
    return update, trainer.state.log_history[0], forwards


@pytest.mark.parametrize("mode", ["causal", "bidirectional"])
def test_gradient_accumulation_gives_the_update_of_one_big_batch(tiny, tmp_path, mode) -> None:
    big, big_log, big_forwards = one_sgd_step(tiny, tmp_path, mode, batch=8, accumulation=1)
    split, split_log, split_forwards = one_sgd_step(tiny, tmp_path, mode, batch=4, accumulation=2)
    assert len(big_forwards) == 1 and len(split_forwards) == 2
    targets = sum(forward["targets"] for forward in split_forwards)
    assert big_forwards[0]["targets"] == targets
    # The trainer passed the whole accumulated batch's label-token count to both micro-batches.
    label_length = tiny[1].num_levels * 2 + 1  # [<think_l>, s_l] * L + dedup
    assert [int(forward["num_items_in_batch"]) for forward in split_forwards] == [targets * label_length] * 2
    assert split_log["loss"] == pytest.approx(big_log["loss"], rel=1e-5)
    assert sum(abs(value).sum() for value in big.values()) > 0
    for name in big:
        torch.testing.assert_close(
            split[name], big[name], rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}"
        )
    if mode == "causal":
        # Segments hold different numbers of targets, so per-micro-batch means (what the model computes without
        # num_items_in_batch) weight the rows differently: the check above can tell them apart.
        counts = [forward["targets"] for forward in split_forwards]
        assert counts[0] != counts[1]
        unscaled, _, _ = one_sgd_step(
            tiny, tmp_path / "unscaled", mode, batch=4, accumulation=2, loss_kwargs=False
        )
        difference = max(float((unscaled[name] - big[name]).abs().max()) for name in big)
        assert difference > 1e-4


def test_bf16_trains_under_autocast_with_float32_weights(tiny, tmp_path, monkeypatch) -> None:
    """mixed_precision='bf16' on a CPU: the projections compute in bf16, the weights and their update stay
    float32, and the step is the float32 step up to bf16 rounding."""
    dtypes: list[torch.dtype] = []
    forward = torch.nn.Linear.forward
    monkeypatch.setattr(
        torch.nn.Linear, "forward", lambda self, x: dtypes.append(out := forward(self, x)) or out
    )
    full, full_log, _ = one_sgd_step(tiny, tmp_path / "no", "causal", batch=8, accumulation=1)
    assert {out.dtype for out in dtypes} == {torch.float32}
    dtypes.clear()
    half, half_log, _ = one_sgd_step(
        tiny, tmp_path / "bf16", "causal", batch=8, accumulation=1, mixed_precision="bf16"
    )
    assert {out.dtype for out in dtypes} == {torch.bfloat16}
    assert half_log["loss"] != full_log["loss"]  # rounded differently, so it really ran in bf16
    assert half_log["loss"] == pytest.approx(full_log["loss"], rel=2e-2)
    weights = [name for name, update in full.items() if update.is_floating_point()]
    assert weights and all(half[name].dtype == torch.float32 for name in weights)
    flat = [torch.cat([updates[name].flatten() for name in weights]) for updates in (full, half)]
    assert torch.nn.functional.cosine_similarity(*flat, dim=0) > 0.99


def test_mixed_precision_auto_is_float32_on_a_cpu() -> None:
    assert not torch.cuda.is_available()  # the suite runs on CPUs
    assert trains_in_bf16("auto") is False and trains_in_bf16("no") is False
    assert trains_in_bf16("bf16") is True
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        RunConfig(mixed_precision="fp16")


def test_cpu_bf16_detection_reads_the_cpu_flags_as_torch_does() -> None:
    """`native_bf16` reads the kernel's CPU flags instead of torch's private probes; where those probes exist
    (and /proc/cpuinfo does), both must agree."""
    probes = [
        getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    flags = cpu_flags()
    if None in probes or not flags:
        pytest.skip("no torch CPU probes or no /proc/cpuinfo to compare with")
    assert ("avx512_bf16" in flags) == probes[0]()
    assert ("amx_bf16" in flags) == probes[1]()  # AMX tiles come with AMX-BF16 on every CPU that has them


def one_epoch_of_batches(tiny, tmp_path: Path, mode: str, group_by_length: bool) -> list[dict]:
    config = tiny_config(
        tmp_path / f"{mode}-{group_by_length}", encoder_mode=mode, group_by_length=group_by_length
    )
    trainer = fresh_trainer(tiny, config, **NO_EVAL)
    return list(trainer.get_train_dataloader())


@pytest.mark.parametrize("mode", ["causal", "bidirectional"])
def test_length_grouped_batches_cover_every_target_once_with_less_padding(tiny, tmp_path, mode) -> None:
    data = tiny[0]
    batches = {grouped: one_epoch_of_batches(tiny, tmp_path, mode, grouped) for grouped in (True, False)}
    padding = {}
    for grouped, epoch in batches.items():
        if mode == "causal":
            targets = sum(int(batch["target_mask"].sum()) for batch in epoch)
            padding[grouped] = sum(int((batch["sequence_mask"] == 0).sum()) for batch in epoch)
        else:
            targets = sum(len(batch["labels"]) for batch in epoch)
            padding[grouped] = sum(int((batch["attention_mask"] == 0).sum()) for batch in epoch)
        assert targets == count_targets(
            data.splits["train"]
        )  # every training target once, whatever the order
    assert len(batches[True]) == len(batches[False])
    assert padding[True] < 0.8 * padding[False]


# --- 2. loss terms in the log ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["causal", "bidirectional"])
def test_every_loss_term_is_logged_as_its_mean_since_the_last_log(tiny, tmp_path, mode) -> None:
    config = tiny_config(
        tmp_path, encoder_mode=mode, batch_size=4, gradient_accumulation_steps=2, logging_steps=2
    )
    trainer = fresh_trainer(tiny, config, **NO_EVAL, max_steps=4)
    forwards = record_forward_outputs(trainer.model)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logs] == [2, 4]
    assert len(forwards) == 4 * 2  # micro-batches
    model_config = trainer.model.config
    levels = [f"align_loss_l{level + 1}" for level in range(model_config.num_levels)]
    weights = {
        "rec_loss": model_config.rec_loss_weight,
        "align_loss": model_config.align_loss_weight,
        "infonce_loss": model_config.infonce_loss_weight,
        "reg_loss": model_config.reg_lambda,
    }
    for index, entry in enumerate(logs):
        # Micro-batch terms are sums over the accumulated batch's target count: an optimiser step's term is the
        # sum over its 2 micro-batches; the log holds the mean over the 2 steps since the previous log.
        window = forwards[index * 4 : (index + 1) * 4]
        for name in (*LOSS_TERMS, *levels):
            assert name in entry, name
            expected = sum(forward[name] for forward in window) / 2
            assert entry[name] == pytest.approx(expected, rel=1e-5), name
        assert entry["loss"] == pytest.approx(
            sum(weights[name] * entry[name] for name in LOSS_TERMS), rel=1e-5
        )
        assert entry["align_loss"] == pytest.approx(sum(entry[name] for name in levels), rel=1e-5)
        assert entry["rec_loss"] > 0 and entry["infonce_loss"] > 0


# --- 3. evaluation, best checkpoint, early stopping ------------------------------------------------------------


def test_evaluation_picks_the_best_checkpoint_on_validation_ndcg(tiny, tmp_path) -> None:
    data, tokenizer = tiny
    config = tiny_config(tmp_path, lr=0.01, warmup_ratio=0.0)
    trainer = fresh_trainer(tiny, config, max_steps=8, eval_steps=2, save_steps=2, disable_tqdm=True)
    trainer.train()
    evals = [entry for entry in trainer.state.log_history if "eval_ndcg@10" in entry]
    assert [entry["step"] for entry in evals] == [2, 4, 6, 8]
    for entry in evals:
        for key in METRIC_KEYS:
            assert 0.0 <= entry[f"eval_{key}"] <= 1.0
        assert entry["eval_recall@5"] <= entry["eval_recall@10"]
    scores = [entry["eval_ndcg@10"] for entry in evals]
    best_step = evals[scores.index(max(scores))]["step"]
    assert trainer.state.best_metric == max(scores)
    assert Path(trainer.state.best_model_checkpoint).name == f"checkpoint-{best_step}"
    # The model at the end is the best checkpoint's ...
    assert_same_weights(model_weights(trainer.model), saved_weights(trainer.state.best_model_checkpoint))
    # ... and its recall/NDCG, computed again with constrained beam search on the validation users (seen items
    # excluded), are the ones logged at that step.
    again = evaluate_split(
        trainer.model,
        tokenizer,
        data.splits["validation"],
        seen=seen_items(data.splits, "validation"),
        num_beams=config.num_beams,
    )
    best = evals[scores.index(max(scores))]
    assert again == pytest.approx({key: best[f"eval_{key}"] for key in METRIC_KEYS}, abs=1e-9)
    assert trainer.evaluate()["eval_ndcg@10"] == pytest.approx(max(scores), abs=1e-9)


def test_early_stopping_after_patience_evaluations_without_gain(tiny, tmp_path, monkeypatch) -> None:
    # Scripted validation scores: the best is the 2nd evaluation; the 3rd is lower and the 4th only ties it.
    scores = iter([0.1, 0.3, 0.2, 0.3, 0.5, 0.6])
    monkeypatch.setattr(
        trainer_module,
        "evaluate_split",
        lambda *args, **kwargs: {"recall@5": 0.0, "recall@10": 0.0, "ndcg@5": 0.0, "ndcg@10": next(scores)},
    )
    config = tiny_config(tmp_path, patience=2, lr=0.01, warmup_ratio=0.0)
    trainer = fresh_trainer(tiny, config, max_steps=20, eval_steps=1, save_steps=1, disable_tqdm=True)
    trainer.train()
    evals = [entry["eval_ndcg@10"] for entry in trainer.state.log_history if "eval_ndcg@10" in entry]
    assert evals == [0.1, 0.3, 0.2, 0.3]  # stopped after 2 evaluations without improvement
    assert trainer.state.global_step == 4
    assert trainer.state.best_metric == 0.3
    assert Path(trainer.state.best_model_checkpoint).name == "checkpoint-2"
    final = model_weights(trainer.model)
    assert_same_weights(final, saved_weights(tmp_path / "checkpoint-2"))
    last = saved_weights(tmp_path / "checkpoint-4")
    assert any(
        not torch.equal(final[name], last[name]) for name in last
    )  # the best, not the last, was loaded


def test_time_budget_stops_training_with_a_last_evaluation(tiny, tmp_path) -> None:
    config = tiny_config(tmp_path, time_budget_minutes=0.5, lr=0.01)
    trainer = fresh_trainer(tiny, config, max_steps=20, eval_steps=100, save_steps=100, disable_tqdm=True)
    (budget,) = [
        c for c in trainer.callback_handler.callbacks if isinstance(c, trainer_module.TimeBudgetCallback)
    ]
    # Every reading of the clock is 10 s after the previous one: with 0.5 min = 30 s the readings are at train
    # begin (0 s) and after steps 1, 2, 3 (10, 20, 30 s).
    readings = iter(range(0, 10_000, 10))
    budget.clock = lambda: float(next(readings))
    trainer.train()
    assert trainer.state.global_step == 3
    evals = [entry["step"] for entry in trainer.state.log_history if "eval_ndcg@10" in entry]
    assert evals == [3]  # evaluated at the stop although eval_steps is 100 ...
    assert Path(trainer.state.best_model_checkpoint).name == "checkpoint-3"  # ... and saved
    with pytest.raises(ValueError, match="time_budget_minutes"):
        tiny_config(tmp_path, time_budget_minutes=0)


def _targets(trainer) -> int:
    return sum(len(row["item_ids"]) - row["first_target"] for row in trainer.train_dataset)


def test_refit_trains_on_the_validation_items_for_the_whole_schedule(tiny, tmp_path) -> None:
    data, _ = tiny
    # patience and evaluations every half epoch would stop or select in a normal run; a refit has neither.
    config = tiny_config(tmp_path, refit=True, patience=1, eval_every_epochs=0.5, epochs=2, lr=0.01)
    trainer = fresh_trainer(tiny, config, disable_tqdm=True)
    normal = fresh_trainer(tiny, tiny_config(tmp_path / "normal"), disable_tqdm=True)
    assert _targets(trainer) == _targets(normal) + len(data.splits["validation"])  # + each validation item
    trainer.train()
    assert not any("eval_ndcg@10" in entry for entry in trainer.state.log_history)
    steps_per_epoch = -(-len(trainer.train_dataset) // config.batch_size)
    assert trainer.state.global_step == 2 * steps_per_epoch
    assert trainer.state.best_model_checkpoint is None
    # The final weights are the last step's (saved there for resume), not an earlier checkpoint's.
    assert_same_weights(
        model_weights(trainer.model), saved_weights(tmp_path / f"checkpoint-{trainer.state.global_step}")
    )


def test_refit_stops_at_the_time_budget_without_evaluating(tiny, tmp_path) -> None:
    config = tiny_config(tmp_path, refit=True, time_budget_minutes=0.5, lr=0.01)
    trainer = fresh_trainer(tiny, config, max_steps=20, save_steps=100, disable_tqdm=True)
    (budget,) = [
        c for c in trainer.callback_handler.callbacks if isinstance(c, trainer_module.TimeBudgetCallback)
    ]
    readings = iter(range(0, 10_000, 10))  # 10 s per clock reading: the budget ends after step 3
    budget.clock = lambda: float(next(readings))
    trainer.train()
    assert trainer.state.global_step == 3
    assert not any("eval_ndcg@10" in entry for entry in trainer.state.log_history)
    assert (tmp_path / "checkpoint-3").is_dir()


# --- 4. resume after a killed run ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path) -> None:
    """SIGKILL a run between its first and second checkpoint, resume it: same weights, logs and metrics as a
    run that was never interrupted (dropout on: the Trainer restores the RNG states and the data order)."""
    overrides = {"max_steps": 8, "eval_steps": 4, "save_steps": 4}
    killed = tiny_config(tmp_path / "killed", lr=0.01)
    config_file = tmp_path / "killed.yaml"
    killed.save(config_file)
    # The child's output goes to a file, not a pipe: a full pipe would block it before its checkpoint.
    log = tmp_path / "killed.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            child_command(config_file, tmp_path / "killed", overrides, "--slow-after-save", "1.0"),
            env=child_env(),
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        first = tmp_path / "killed" / "checkpoint-4" / "trainer_state.json"
        deadline = time.monotonic() + 150
        while not first.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = process.poll() is None
        # After its first save the child sleeps 1 s per step: it dies before step 8's checkpoint.
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    if not first.is_file() or not alive:
        pytest.fail(f"no kill between the checkpoints:\n{log.read_text()[-4000:]}")
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "metrics.json").exists()  # killed before the end
    assert not (tmp_path / "killed" / "checkpoint-8" / "trainer_state.json").exists()

    resumed = train_run(RunConfig.from_yaml(config_file), resume=True, **overrides)
    reference = train_run(tiny_config(tmp_path / "reference", lr=0.01), **overrides)

    assert resumed.log_history[0]["step"] == 2  # the history before the kill came from the checkpoint
    # train_loss (last entry) is the mean loss of this train() call only: steps 5-8 after the resume.
    resumed_history, reference_history = (
        without_timing(resumed.log_history),
        without_timing(reference.log_history),
    )
    assert resumed_history[-1].pop("train_loss") != reference_history[-1].pop("train_loss")
    assert resumed_history == reference_history
    assert_same_weights(model_weights(resumed.model), model_weights(reference.model))
    assert resumed.metrics == reference.metrics
    assert json.loads((tmp_path / "killed" / "metrics.json").read_text()) == reference.metrics


# --- 6. the run folder end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    config = tiny_config(output, lr=0.01, max_steps=6, eval_every_epochs=0.03)
    return config, train_run(config)


def test_train_run_writes_the_run_folder(finished_run) -> None:
    config, result = finished_run
    output = Path(config.output_dir)
    assert result.output_dir == output and result.model_dir == output / "model"
    for name in ("metrics.json", "run.json", "run_config.yaml", "training_curves.png", "code_usage.png"):
        assert (output / name).is_file(), name
    for name in ("config.json", "model.safetensors", "README.md", "run.json"):
        assert (result.model_dir / name).is_file(), name
    for name in ("training_curves.png", "code_usage.png"):
        assert (output / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert RunConfig.from_yaml(output / "run_config.yaml") == config
    assert yaml.safe_load((output / "run_config.yaml").read_text())["max_users"] == config.max_users

    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics == result.metrics
    splits = {
        "validation",
        "validation_unfiltered",
        "test",
        "test_unfiltered",
    }  # exclude_seen=True by default
    assert set(metrics) >= {"s2gr", "most_popular"}
    for method in ("s2gr", "most_popular"):
        assert set(metrics[method]) == splits
        for values in metrics[method].values():
            assert set(values) >= set(METRIC_KEYS)
            assert all(0.0 <= values[key] <= 1.0 for key in METRIC_KEYS)
    summary = json.loads((output / "run.json").read_text())
    assert summary["dataset"]["num_users"] == config.max_users
    assert summary["metrics"]["validation"] == metrics["s2gr"]["validation"]
    assert any("eval_ndcg@10" in entry for entry in result.log_history)
    assert any("rec_loss" in entry for entry in result.log_history)


def test_saved_model_reloads_and_recommends_the_same(finished_run) -> None:
    config, result = finished_run
    data = load_run_data(config)
    model = S2GRForGenerativeRecommendation.from_pretrained(result.model_dir)
    tokenizer = S2GRTokenizer.from_pretrained(result.model_dir)
    assert_same_weights(model_weights(model), model_weights(result.model))
    rows = data.splits["validation"]
    seen = seen_items(data.splits, "validation")
    kwargs = {"top_k": 10, "num_beams": config.num_beams, "exclude": seen}
    reloaded = S2GRRecommender(model, tokenizer).recommend(rows["history"], **kwargs)
    original = S2GRRecommender(result.model, tokenizer).recommend(rows["history"], **kwargs)
    metrics = evaluate_split(model, tokenizer, rows, seen=seen, num_beams=config.num_beams)
    assert reloaded == original
    assert all(len(ranking) == 10 for ranking in reloaded)
    assert metrics == pytest.approx(result.metrics["s2gr"]["validation"], abs=1e-9)


def test_refit_run_reports_test_only(tmp_path, monkeypatch) -> None:
    graphs: list = []
    build = catalog_module.build_semantic_ids
    monkeypatch.setattr(
        catalog_module,
        "build_semantic_ids",
        lambda embeddings, sequences, *args, **kwargs: (
            graphs.append(sequences) or build(embeddings, sequences, *args, **kwargs)
        ),
    )
    config = tiny_config(tmp_path, refit=True, max_steps=2)
    result = train_run(config)
    # The codebook's co-occurrence graph sees what training sees: each validation item too.
    data = load_run_data(config)
    index = data.item_index()
    expected = [
        [index[item] for item in [*items, target]]
        for items, target in zip(
            data.splits["train"]["item_ids"], data.splits["validation"]["target"], strict=True
        )
    ]
    assert [sequence.tolist() for sequence in graphs[0]] == expected
    assert set(result.metrics["s2gr"]) == {"test", "test_unfiltered"}
    for values in result.metrics["s2gr"].values():
        assert set(values) == set(METRIC_KEYS) and all(0.0 <= v <= 1.0 for v in values.values())
    summary = json.loads((tmp_path / "run.json").read_text())
    assert list(summary["metrics"]) == ["test"] and "refit" in summary["split"]["protocol"]
    card = (tmp_path / "model" / "README.md").read_text()
    assert "| test |" in card and "| validation |" not in card


def test_report_to_reaches_the_trainer_and_writes_tensorboard_events(tiny, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    config = tiny_config(tmp_path / "run", report_to="tensorboard", max_steps=2, logging_steps=1)
    trainer = fresh_trainer(tiny, config)
    assert trainer.args.report_to == ["tensorboard"]
    trainer.train()
    assert list(
        (tmp_path / "run").rglob("events.out.tfevents.*")
    )  # the losses went to TensorBoard (run/runs/)
    assert fresh_trainer(tiny, tiny_config(tmp_path / "run2")).args.report_to in ([], "none", ["none"])
