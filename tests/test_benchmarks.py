"""The benchmark scripts on a tiny real slice: their tables have the right structure and sane values."""

from __future__ import annotations

import importlib
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_runs import MAX_USERS, TINY_CODEBOOK, TINY_MODEL, child_env

from s2gr.configuration_s2gr import S2GRConfig
from s2gr.data import Columns, load_data
from s2gr.data.assets import fetch_asset
from s2gr.data.preprocess import chronological
from s2gr.evaluation import most_popular, per_user_scores, ranking_metrics
from s2gr.training.config import RunConfig
from s2gr.training.run import context_items, native_bf16
from s2gr.training.samples import sliding_window_samples

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def benchmark_module(name: str):
    """A script of benchmarks/ imported as a module (the folder is not a package)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def tiny_sets() -> list[str]:
    sets = [f"codebook.{key}={value}" for key, value in TINY_CODEBOOK.items()]
    sets += [f"model.{key}={value}" for key, value in TINY_MODEL.items()]
    # History 20: the tiny one-epoch runs whose every method has test hits (paired.py needs them).
    return [*sets, "num_beams=5", "batch_size=8", "segment_items=8", "patience=0", "max_history=20"]


def run_script(name: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, str(BENCHMARKS / name), *args]
    env = child_env() | {"OMP_NUM_THREADS": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow  # runs a benchmark script end to end
@pytest.mark.timeout(420)  # two paired.py reruns on top of the runs; 265 s with the cores shared
def test_quality_script_reports_every_method_and_resumes(tmp_path) -> None:
    out = tmp_path / "quality"
    args = ["--max-users", str(MAX_USERS), "--epochs", "1", "--seeds", "2", "--sasrec-epochs", "2"]
    args += ["--methods", "s2gr", "tiger", "sasrec", "most-popular", "--out", str(out)]
    for assignment in tiny_sets():
        args += ["--set", assignment]
    done = run_script("quality.py", *args)
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert list(summary) == ["s2gr", "tiger", "sasrec", "most-popular"]
    assert summary["s2gr"]["seeds"] == [0, 1] and summary["tiger"]["seeds"] == [0, 1]
    assert summary["sasrec"]["seeds"] == [0]  # only S2GR and TIGER run every seed
    for method, entry in summary.items():
        for split in ("validation", "test", "validation_unfiltered", "test_unfiltered"):
            values = {metric: entry[f"{split}/{metric}"] for metric in METRICS}
            assert all(0.0 <= value <= 1.0 for value in values.values()), (method, split, values)
            assert values["recall@5"] <= values["recall@10"] and values["ndcg@5"] <= values["ndcg@10"]
            assert values["ndcg@10"] <= values["recall@10"] + 1e-12
    # A mean ± std over the two seeds' own results.
    runs = [json.loads((out / "runs" / f"s2gr-seed{seed}" / "result.json").read_text()) for seed in (0, 1)]
    test_values = [run["metrics"]["test"]["ndcg@10"] for run in runs]
    assert summary["s2gr"]["test/ndcg@10"] == pytest.approx(sum(test_values) / 2)
    # Most-popular is what the package's baseline computes on the same slice.
    data = load_data("ml-100k", max_users=MAX_USERS)
    expected = ranking_metrics(most_popular(data.splits, "test"), data.splits["test"]["target"])
    assert summary["most-popular"]["test/recall@10"] == pytest.approx(expected["recall@10"])
    # The table has a header, a separator and one row per method; the targets are checked.
    table = (out / "quality.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0][2:] for row in rows[1:]] == list(summary)
    assert len({row.count("|") for row in rows}) == 1
    assert "S2GR vs TIGER test NDCG@10" in done.stdout and "S2GR vs SASRec" in done.stdout
    assert (out / "quality.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    # The paired bootstrap ranks the same users the same way: its per-group means are the table's means.
    seed_runs = {
        method: [str(out / "runs" / f"{method}-seed{seed}") for seed in (0, 1)]
        for method in ("s2gr", "tiger")
    }
    paired_out = tmp_path / "paired.json"
    paired_args = ["--a", *seed_runs["s2gr"], "--b", *seed_runs["tiger"], "--num-beams", "5"]
    paired_args += ["--resamples", "200", "--out", str(paired_out)]
    run_script("paired.py", *paired_args)
    paired = json.loads(paired_out.read_text())
    assert paired["users"] == len(data.splits["test"])
    assert paired["mean_a"] == pytest.approx(summary["s2gr"]["test/ndcg@10"])
    assert paired["mean_b"] == pytest.approx(summary["tiger"]["test/ndcg@10"])
    assert paired["ci95_low"] <= paired["relative_difference"] <= paired["ci95_high"]
    # Each run's per-user scores are kept and reused while what they depend on is unchanged: zeroed, they
    # are what a rerun reads (group A averages two seeds per user); once the run's settings file changes,
    # the run is ranked again.
    first = Path(seed_runs["s2gr"][0])
    cache = first / "user-ndcg10-test-beam5.npz"
    kept = dict(np.load(cache))
    assert kept["scores"].shape == (paired["users"],) and kept["scores"].mean() > 0
    np.savez(cache, scores=np.zeros_like(kept["scores"]), key=kept["key"])
    run_script("paired.py", *paired_args)
    assert json.loads(paired_out.read_text())["mean_a"] == pytest.approx(
        paired["mean_a"] - kept["scores"].mean() / 2
    )
    with (first / "run_config.yaml").open("a") as config:
        config.write("# edited\n")
    run_script("paired.py", *paired_args)
    assert json.loads(paired_out.read_text()) == paired
    cache.write_bytes(cache.read_bytes()[:100])  # cut short, as by a run killed mid-write: ranked again
    run_script("paired.py", *paired_args)
    assert json.loads(paired_out.read_text()) == paired
    assert np.load(cache)["scores"].shape == kept["scores"].shape
    # A rerun reuses every finished run and rebuilds the same report.
    stamps = {path: path.stat().st_mtime for path in (out / "runs").glob("*/result.json")}
    run_script("quality.py", *args)
    assert {path: path.stat().st_mtime for path in stamps} == stamps
    assert json.loads((out / "results.json").read_text())["summary"] == summary


@pytest.mark.slow  # runs a benchmark script end to end
@pytest.mark.timeout(300)
def test_speed_script_reports_rates_ratios_and_scaling(tmp_path) -> None:
    out = tmp_path / "speed.json"
    args = [
        "--dataset",
        "ml-100k",
        "--max-users",
        "60",
        "--steps",
        "1",
        "--users",
        "8",
        "--tiny",
        "--rounds",
        "2",
    ]
    done = run_script("speed.py", *args, "--sizes", "300", "600", "--out", str(out))
    results = json.loads(out.read_text())
    assert results["gemm_gflops"] > 0
    cases = results["cases"]
    bf16 = native_bf16()  # the bf16 cases run only where the hardware computes bf16
    assert len(cases) == (12 if bf16 else 10)
    assert (results["gemm_gflops_bf16"] or 0) > 0 if bf16 else results["gemm_gflops_bf16"] is None
    for label, case in cases.items():
        # Two rounds of one timed pass (over a training case's batches, or the recommendation users) each, pooled.
        assert len(case["rates"]) == 2 and case["rate"] == pytest.approx(np.median(case["rates"])), label
        assert case["round_rates"] == pytest.approx(case["rates"]), label  # one repeat per round
        assert case["rate"] > 0 and case["iqr"] >= 0, label
        assert case["peak_mb"] > 10, label
        if label.startswith("demo epoch"):  # a whole Trainer epoch: not FLOP-counted, its padding measured
            assert case["flops_per_unit"] is None and 0 < case["padding"] < 1, label
        else:
            assert case["flops_per_unit"] > 1e5, label
        assert case["unit"] == ("users/s" if label.startswith(("recommend", "generate")) else "targets/s"), (
            label
        )
    # Thinking adds work per target; the sliding window re-encodes the history for every target.
    fast, tiger = cases["train fast (causal) S2GR"], cases["train fast (causal) TIGER mode"]
    assert fast["flops_per_unit"] > tiger["flops_per_unit"]
    assert cases["train sliding-window S2GR"]["flops_per_unit"] > fast["flops_per_unit"]
    # Random batches pad short segments to the longest of their batch: more FLOPs per target.
    assert cases["train fast (causal) S2GR, length-grouped"]["flops_per_unit"] < fast["flops_per_unit"]
    grouped, random = cases["demo epoch (Trainer), length-grouped"], cases["demo epoch (Trainer)"]
    assert grouped["padding"] < random["padding"]
    if bf16:  # the same batches and operations, only in another dtype
        assert cases["train fast (causal) S2GR, bf16"]["flops_per_unit"] == fast["flops_per_unit"]
        assert "fast S2GR bf16 vs HF T5 bf16" in done.stdout
    catalogs = results["scaling"]["catalogs"]
    assert list(catalogs) == ["300", "600"]
    assert catalogs["600"]["tables_mb"] > catalogs["300"]["tables_mb"] > 0
    for row in catalogs.values():  # any collision needs a dedup code > 0
        assert 0.0 <= row["collision_rate"] <= 1.0 and 0.0 < row["recon_mse"] < 1.5
        assert row["epochs"] == 2  # the short 1 + 1 schedule unless --full-codebook-schedule
        assert row["dedup_size"] >= 1 and (row["dedup_size"] > 1) == (row["collision_rate"] > 0)
    # Each comparison is the median over rounds of a ratio of the same round's two medians.
    comparisons = results["comparisons"]
    assert len(comparisons) == (10 if bf16 else 7)
    faster, slower = cases["recommend TIGER mode"], cases["generate + trie TIGER mode"]
    per_round = [a / b for a, b in zip(faster["round_rates"], slower["round_rates"], strict=True)]
    assert comparisons["recommend vs generate (TIGER mode)"]["per_round"] == pytest.approx(per_round)
    for comparison in comparisons.values():
        assert comparison["ratio"] == pytest.approx(np.median(comparison["per_round"]))
    for line in ("fast S2GR vs HF T5", "recommend vs generate", "thinking overhead, training", "recon MSE"):
        assert line in done.stdout


def test_speed_batches_hold_the_same_rows_grouped_by_length_or_not() -> None:
    speed = benchmark_module("speed")
    lengths = np.random.default_rng(1).integers(1, 90, size=503).tolist()
    rows = Dataset.from_dict({"row": list(range(503)), "length": lengths})

    def collate(batch: list[dict]) -> dict:
        return {key: torch.tensor([row[key] for row in batch]) for key in ("row", "length")}

    spans, picked = {}, {}
    for grouped in (True, False):
        batches = speed._sampled_batches(rows, collate, batch_size=8, count=5, grouped=grouped)
        assert [len(batch["row"]) for batch in batches] == [8] * 5
        picked[grouped] = torch.cat([batch["row"] for batch in batches]).tolist()
        assert len(set(picked[grouped])) == 40  # 40 different rows
        for batch in batches:
            assert batch["length"].tolist() == [lengths[row] for row in batch["row"].tolist()]
        spans[grouped] = sum(int(batch["length"].max() - batch["length"].min()) for batch in batches)
    assert sorted(picked[True]) == sorted(picked[False])  # only the batching differs
    assert spans[True] < spans[False] / 2  # rows of similar length together


@given(st.lists(st.text(min_size=1), min_size=2, max_size=12, unique=True), st.integers(1, 6))
def test_speed_rounds_run_every_case_once_in_alternating_order(labels: list[str], rounds: int) -> None:
    speed = benchmark_module("speed")
    orders = [speed.round_order(labels, r) for r in range(rounds)]
    assert all(sorted(order) == sorted(labels) for order in orders)  # each case once per round
    assert orders[0] == labels
    for first, second in itertools.pairwise(orders):
        assert second == first[::-1]  # drift meets each pair in both orders
    # Over two rounds every case sits, on average, mid-round: no case is always first.
    if rounds >= 2:
        positions = {label: orders[0].index(label) + orders[1].index(label) for label in labels}
        assert set(positions.values()) == {len(labels) - 1}


def test_speed_table_of_a_scaling_only_run_has_no_case_rows() -> None:
    # `--parts scaling` times no case: the table still forms, with its header and the catalog rows only.
    speed = benchmark_module("speed")
    row = {"epochs": 3, "codebook_s": 1.5, "tables_s": 0.25, "tables_mb": 2.0}
    row |= {"collision_rate": 0.01, "dedup_size": 2, "recon_mse": 0.123}
    results = {"cases": {}, "gemm_gflops": 100.0, "device": "cpu", "dataset": "synthetic"}
    table = speed.format_table(results | {"scaling": {"catalogs": {"10000": row}}}).splitlines()
    assert table[2].split() == ["case", "rate", "IQR", "MFLOP/unit", "%", "GEMM", "peak", "MB"]
    assert table[3:5] == ["", ""]  # no case row, no comparison
    assert table[5].split()[:2] == ["catalog", "items"]
    assert table[6].split() == ["10,000", "3", "1.5", "0.25", "2.0", "1.0%", "2", "0.123"] and len(table) == 7


def test_synthetic_catalog_has_the_power_law_spectrum_of_text_embeddings() -> None:
    speed = benchmark_module("speed")
    x = speed.text_like_embeddings(20000, np.random.default_rng(0), dim=64)
    assert x.shape == (20000, 64) and x.dtype == np.float32
    eigenvalues = np.linalg.eigvalsh(np.cov(x.T))[::-1]  # (64,) descending
    # Eigenvalue i ∝ i^-decay: the log-log slope over the leading directions recovers the decay.
    slope = np.polyfit(np.log(np.arange(1, 33)), np.log(eigenvalues[:32]), 1)[0]
    assert slope == pytest.approx(-speed.SPECTRUM_DECAY, abs=0.1)


def _summary_entry(validation: float, tests: list[float]) -> dict:
    return {
        "validation/ndcg@10": validation,
        "test/ndcg@10": sum(tests) / len(tests),
        "test/ndcg@10/values": tests,
    }


def test_targets_check_the_thinking_variant_chosen_on_validation() -> None:
    quality = benchmark_module("quality")
    summary = {
        "s2gr": _summary_entry(0.050, [0.050, 0.052]),
        "thinking-only": _summary_entry(0.060, [0.070, 0.072]),
        "tiger": _summary_entry(0.055, [0.060, 0.062]),
        "sasrec": _summary_entry(0.050, [0.072]),
    }
    versus_tiger, versus_sasrec = quality.targets(summary)
    assert versus_tiger.startswith("S2GR (thinking-only, best on validation) vs TIGER")
    assert "+16.4%" in versus_tiger and "do not overlap" in versus_tiger and versus_tiger.endswith("met")
    assert "0.0710 vs 0.0720" in versus_sasrec and versus_sasrec.endswith("missed")
    # The better validation score decides, not test: with s2gr ahead on validation, s2gr is checked.
    summary["s2gr"]["validation/ndcg@10"] = 0.061
    versus_tiger, _ = quality.targets(summary)
    assert versus_tiger.startswith("S2GR vs TIGER") and "seed ranges overlap" in versus_tiger
    assert versus_tiger.endswith("missed")
    # Overlapping seed ranges miss the target even with a large mean gain.
    summary["s2gr"]["test/ndcg@10/values"] = [0.061, 0.200]
    summary["s2gr"]["test/ndcg@10"] = 0.1305
    assert quality.targets(summary)[0].endswith("missed")
    # One seed has no range: a large gain is reported but the target is not called met.
    summary["s2gr"]["test/ndcg@10/values"] = [0.1305]
    versus_tiger = quality.targets(summary)[0]
    assert "+113.9%" in versus_tiger and versus_tiger.endswith("not checked: needs --seeds ≥ 2")


def test_paired_test_skip_ranks_the_test_item_from_the_validation_history() -> None:
    paired = benchmark_module("paired")
    splits = load_data("ml-100k", max_users=MAX_USERS).splits
    rows, seen = paired.split_rows(splits, "test-skip")
    assert rows["history"] == splits["validation"]["history"]
    assert rows["target"] == splits["test"]["target"]
    assert seen == paired.split_rows(splits, "test")[1]  # the skipped validation item stays excluded
    for history, target, user_seen, validation in zip(
        rows["history"], rows["target"], seen, splits["validation"]["target"], strict=True
    ):
        assert validation not in history and validation in user_seen and target not in history
    rows, seen = paired.split_rows(splits, "validation")
    assert rows["target"] == splits["validation"]["target"]


def test_paired_bootstrap_scores_and_interval() -> None:
    paired = benchmark_module("paired")
    rankings = [["a", "b", "c"], ["c", "a"], ["b"], ["x"] * 3]
    targets = ["a", "a", "c", "y"]
    scores = per_user_scores(rankings, targets, k=[10])["ndcg@10"]
    assert scores == pytest.approx([1.0, 1 / np.log2(3), 0.0, 0.0])
    assert np.mean(scores) == pytest.approx(ranking_metrics(rankings, targets)["ndcg@10"])
    rng = np.random.default_rng(0)
    b = rng.random(500) * (rng.random(500) < 0.2)
    same = paired.paired_bootstrap(b, b, resamples=300)
    assert same["relative_difference"] == 0.0 and same["ci95_low"] == same["ci95_high"] == 0.0
    # A uniform 20 % lift is a ratio every resample keeps: the interval collapses onto it.
    lifted = paired.paired_bootstrap(1.2 * b, b, resamples=300)
    assert lifted["relative_difference"] == pytest.approx(0.2)
    assert lifted["ci95_low"] == pytest.approx(0.2) and lifted["ci95_high"] == pytest.approx(0.2)
    # Unrelated noise of the same mean: the interval straddles 0.
    noisy = paired.paired_bootstrap(rng.permutation(b), b, resamples=300)
    assert noisy["ci95_low"] < 0.0 < noisy["ci95_high"]
    with pytest.raises(ValueError, match="equal-length"):
        paired.paired_bootstrap(b, b[:10])


def test_every_method_reads_the_data_settings_of_set() -> None:
    """SASRec and most-popular load the split through ``base_data``: ``--set max_history`` must reach them."""
    quality = benchmark_module("quality")
    args = quality.parse_args(["--max-users", str(MAX_USERS), "--set", "max_history=3", "--set", "kcore=10"])
    base = quality.base_values(args)
    data = quality.base_data(base)
    # The data hold what the generative models read: the causal context of a 3-item window.
    context = context_items(RunConfig.from_dict(base))
    assert context == 3 + S2GRConfig().encoder_layers * 2
    assert (data.max_history, data.kcore) == (context, 10)
    assert max(len(history) for history in data.splits["test"]["history"]) == context
    default_base = quality.base_values(quality.parse_args(["--max-users", str(MAX_USERS)]))
    default = quality.base_data(default_base)
    longest = max(len(history) for history in default.splits["test"]["history"])
    assert longest == min(
        context_items(RunConfig.from_dict(default_base)),
        max(map(len, default.splits["train"]["item_ids"])) + 1,
    )
    assert len(data.items) < len(default.items)  # the stricter k-core drops items


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(2, 30), min_size=1, max_size=5), st.integers(1, 6), st.none() | st.integers(1, 12)
)
def test_sasrec_chunks_train_on_the_targets_of_the_generative_models(lengths, max_history, recent) -> None:
    """SASRec's chunks predict exactly the items the generative models train on: every training item but
    each user's first, or each user's last ``recent_targets``."""
    from s2gr.baselines import sasrec

    sequences = [[100 * user + j + 1 for j in range(length)] for user, length in enumerate(lengths)]
    train = Dataset.from_dict({"item_ids": [[str(i) for i in s] for s in sequences]})
    chunks = sasrec.training_chunks(sequences, max_history, recent)
    assert chunks.shape[1] == max_history + 1
    inputs, targets = chunks[:, :-1], chunks[:, 1:]
    predicted = targets[(inputs != 0) & (targets != 0)]  # what SASRec's loss reads
    windows = sliding_window_samples(train, max_history, recent_targets=recent)
    assert sorted(predicted.tolist()) == sorted(int(item) for item in windows["target"])


def test_sasrec_flags_reach_its_config_and_bad_values_are_refused(monkeypatch) -> None:
    quality = benchmark_module("quality")
    from s2gr import baselines
    from s2gr.baselines import sasrec

    seen: list = []

    def fake_train(data, config):
        # SASRec reads --set max_history; the shared data hold the generative models' longer context.
        seen.append((config.max_history, config))
        assert data.max_history >= config.max_history
        return sasrec.SASRecResult({}, [], 0.0, 0)

    monkeypatch.setattr(baselines, "train_sasrec", fake_train)  # quality.py imports it from the package
    base = ["--max-users", str(MAX_USERS), "--set", "max_history=5", "--set", "recent_targets=4"]
    base += ["--set", "refit=true"]
    for flags, expected in (
        ([], (sasrec.SASRecConfig().epochs, 128)),
        (["--quick"], (10, 128)),
        (["--quick", "--sasrec-epochs", "3", "--sasrec-batch-size", "32"], (3, 32)),
    ):
        args = quality.parse_args([*base, *flags])
        quality.run_sasrec(7, quality.base_values(args), args)
        max_history, config = seen.pop()
        assert (max_history, config.seed, config.epochs, config.batch_size) == (5, 7, *expected)
        assert config.recent_targets == 4  # the generative runs' training targets, for SASRec too
        assert config.refit  # and their protocol
    with pytest.raises(ValueError, match="batch_size must be ≥ 1"):
        args = quality.parse_args([*base, "--sasrec-batch-size", "0"])
        quality.run_sasrec(0, quality.base_values(args), args)
    with pytest.raises(ValueError, match="epochs must be ≥ 1"):
        sasrec.SASRecConfig(epochs=0)
    with pytest.raises(ValueError, match="recent_targets must be ≥ 1"):
        sasrec.SASRecConfig(recent_targets=0)
    with pytest.raises(ValueError, match="recent_targets must be ≥ 1"):
        sasrec.training_chunks([[1, 2, 3]], 2, recent_targets=0)


def test_sasrec_refit_trains_on_the_validation_items_and_reads_test_only(monkeypatch) -> None:
    from s2gr.baselines import sasrec

    trained_on: list = []
    chunks = sasrec.training_chunks
    monkeypatch.setattr(
        sasrec,
        "training_chunks",
        lambda sequences, *args: trained_on.append(sequences) or chunks(sequences, *args),
    )
    data = load_data("ml-100k", max_users=MAX_USERS)
    result = sasrec.train_sasrec(data, sasrec.SASRecConfig(epochs=2, patience=1, refit=True))
    index = {item: position + 1 for position, item in enumerate(data.item_index())}
    splits = data.splits
    expected = [
        [index[item] for item in [*items, target]]
        for items, target in zip(splits["train"]["item_ids"], splits["validation"]["target"], strict=True)
    ]
    assert trained_on == [expected]
    assert [entry["epoch"] for entry in result.history] == [1, 2]  # no evaluation, so no early stop
    assert not any("eval_ndcg@10" in entry for entry in result.history) and result.best_epoch == 2
    assert set(result.metrics) == {"test", "test_unfiltered"}
    assert all(0.0 <= value <= 1.0 for values in result.metrics.values() for value in values.values())


def test_quality_report_of_refit_runs_has_no_validation_column_values(tmp_path) -> None:
    quality = benchmark_module("quality")
    metrics = {metric: 0.1 for metric in METRICS}

    def result(method: str, seed: int, ndcg: float) -> dict:
        test = {**metrics, "ndcg@10": ndcg}
        return {
            "method": method,
            "seed": seed,
            "device": "cpu",
            "metrics": {"test": test, "test_unfiltered": metrics},
            "seconds": 60.0,
            "best_epoch": 20,
            "curve": [],
        }

    results = [result("s2gr", 0, 0.110), result("s2gr", 1, 0.112), result("tiger", 0, 0.100)]
    results.append(result("tiger", 1, 0.101))
    summary = quality.summarise(results)
    assert "validation/ndcg@10" not in summary["s2gr"]
    assert summary["s2gr"]["test/ndcg@10"] == pytest.approx(0.111)
    row = quality.format_table(summary, "ml-1m").splitlines()[2].split(" | ")
    assert row[0] == "| s2gr" and row[-3] == "–"  # val N@10
    (versus_tiger,) = quality.targets(summary)
    assert (
        versus_tiger.startswith("S2GR vs TIGER") and "+10.4%" in versus_tiger and versus_tiger.endswith("met")
    )
    # No validation curve to draw: the bars are plotted, curves.png is not (and an earlier one goes).
    (tmp_path / "curves.png").write_bytes(b"stale")
    quality.plot(summary, results, tmp_path, "refit")
    assert (tmp_path / "quality.png").stat().st_size > 0 and not (tmp_path / "curves.png").exists()
    results[0]["curve"] = [[2, 0.09], [4, 0.1]]
    quality.plot(summary, results, tmp_path, "one curve")
    assert (tmp_path / "curves.png").stat().st_size > 0


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=4, max_value=9), min_size=1, max_size=6),
    drop_last=st.integers(min_value=1, max_value=3),
)
def test_shifted_log_drops_each_users_last_rows(lengths: list[int], drop_last: int) -> None:
    shifted_log = benchmark_module("shifted_holdout").shifted_log
    rows = [
        (f"u{user}", f"i{step % 3}", float(step // 2)) for user, n in enumerate(lengths) for step in range(n)
    ]
    log = pd.DataFrame(rows[::-1], columns=["user_id", "item_id", "timestamp"])  # newest first: order matters
    if min(lengths) - drop_last < 3:
        with pytest.raises(ValueError, match="lower --drop-last"):
            shifted_log(log, drop_last, kcore=1)
        return
    kept = shifted_log(log, drop_last, kcore=1)
    ordered = chronological(log)
    for user, n in enumerate(lengths):
        ours = ordered[ordered["user_id"] == f"u{user}"]
        assert (
            kept[kept["user_id"] == f"u{user}"].to_numpy().tolist()
            == ours.head(n - drop_last).to_numpy().tolist()
        )


def test_shifted_holdout_moves_validation_one_item_back(tmp_path: Path) -> None:
    """With one interaction dropped the new test is the old validation and the new validation the old last
    training item, on real ML-100K."""
    shifted = benchmark_module("shifted_holdout")
    out = shifted.main(["--dataset", "ml-100k", "--drop-last", "1", "--out", str(tmp_path / "shift1.inter")])
    items = fetch_asset("ml-100k") / "ml-100k.item"
    new = load_data(interactions=out, items=items, kcore=1, max_history=10).splits
    old = load_data("ml-100k", max_history=10).splits
    assert new["test"].to_list() == old["validation"].to_list()
    old_train = {row["user_id"]: row["item_ids"] for row in old["train"]}
    for row in new["validation"]:
        assert row["target"] == old_train[row["user_id"]][-1]
        assert row["history"] == old_train[row["user_id"]][:-1][-10:]
    with pytest.raises(SystemExit):
        shifted.main(["--out", str(tmp_path / "shift.csv")])
    with pytest.raises(ValueError, match=">= 1"):
        shifted.shifted_log(pd.DataFrame(columns=["user_id", "item_id", "timestamp"]), 0)


@pytest.mark.slow  # runs a benchmark script end to end
@pytest.mark.timeout(300)
def test_context_cost_times_the_exact_and_the_earlier_context(tiny_s2gr, tmp_path: Path) -> None:
    from tiny_runs import tiny_config

    run = tmp_path / "run"
    shutil.copytree(tiny_s2gr.folder, run / "model")
    config = tiny_config(run)
    config.save(run / "run_config.yaml")
    out = tmp_path / "cost.json"
    command = [sys.executable, str(BENCHMARKS / "context_cost.py"), "--run", str(run), "--rounds", "1"]
    finished = subprocess.run(
        [*command, "--threads", "1", "--out", str(out)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    table = json.loads(out.read_text())
    window, layers = config.max_history, TINY_MODEL["encoder_layers"]
    assert (table["window"], table["context_items"]) == (window, window + layers * (window - 1))
    assert len(table["median_seconds"]) == 4 and all(s > 0 for s in table["median_seconds"].values())
    # More context per segment: strictly more item positions once some user has more than one segment.
    positions = table["segment_item_positions"]
    assert positions["exact"] > positions["earlier"]
    assert table["recommend_ratio"] > 0 and table["train_ratio"] > 0
    assert "exact / earlier" in finished.stdout


def test_committed_config_is_the_setting_of_its_flags(tmp_path: Path) -> None:
    """configs/ml-100k-hist10-36ep.yaml gives every method the run config of the flags it replaces."""
    quality = benchmark_module("quality")
    config = Path(__file__).resolve().parents[1] / "configs" / "ml-100k-hist10-36ep.yaml"
    from_file = quality.base_values(quality.parse_args(["--config", str(config)]))
    flags = [
        "--model-size",
        "demo",
        "--epochs",
        "36",
        "--set",
        "num_beams=20",
        "--set",
        "eval_every_epochs=3",
    ]
    flags += ["--set", "patience=0", "--set", "max_history=10"]
    flags += [
        "--set",
        "codebook.collab_dim=0",
        "--set",
        "model.align_loss_weight=1",
    ]  # defaults when measured
    from_flags = quality.base_values(quality.parse_args(flags))
    defaults = S2GRConfig()
    for method in ("s2gr", "tiger"):
        for seed in (0, 2):
            a, b = (quality.run_config(method, seed, base, tmp_path) for base in (from_file, from_flags))
            # The file spells out defaults the flags leave implicit: compare what each resolves to.
            assert a.codebook_config() == b.codebook_config()
            keys = a.model.keys() | b.model.keys()
            assert {k: a.model.get(k, getattr(defaults, k)) for k in keys} == {
                k: b.model.get(k, getattr(defaults, k)) for k in keys
            }
            rest = ("codebook", "model")
            assert {k: v for k, v in a.to_dict().items() if k not in rest} == {
                k: v for k, v in b.to_dict().items() if k not in rest
            }


def test_sample_efficiency_finds_the_first_epoch_at_tigers_final_validation(tmp_path) -> None:
    efficiency = benchmark_module("sample_efficiency")

    def write(method: str, seed: int, curve: list[list[float]], final: float, seconds: float) -> None:
        folder = tmp_path / "runs" / f"{method}-seed{seed}"
        folder.mkdir(parents=True)
        result = {"method": method, "seed": seed, "curve": curve, "seconds": seconds}
        result["metrics"] = {"validation": {"ndcg@10": final}}
        (folder / "result.json").write_text(json.dumps(result))

    write("tiger", 0, [[2, 0.05], [4, 0.08], [6, 0.07]], final=0.08, seconds=600)
    write("tiger", 1, [[2, 0.04], [4, 0.06], [6, 0.10]], final=0.10, seconds=600)
    write("s2gr", 0, [[2, 0.07], [4, 0.095], [6, 0.11]], final=0.11, seconds=1200)
    write("s2gr", 1, [[2, 0.05], [4, 0.06], [6, 0.07]], final=0.07, seconds=1200)
    text, data = efficiency.table(tmp_path)
    assert data["bar"] == pytest.approx(0.09)  # mean of TIGER's two finals
    rows = {(row["method"], row["seed"]): row for row in data["rows"]}
    assert rows["s2gr", 0]["epoch"] == 4 and rows["s2gr", 0]["minutes"] == pytest.approx(20 * 4 / 6)
    assert rows["s2gr", 1]["epoch"] is None and "not reached" in text
    assert rows["tiger", 1]["epoch"] == 6 and rows["tiger", 0]["epoch"] is None


def test_quality_runs_on_a_users_own_log(tmp_path) -> None:
    quality = benchmark_module("quality")
    from s2gr.baselines import most_popular_metrics

    rng = np.random.default_rng(2)
    events = pd.DataFrame(
        [(f"u{u}", f"i{i}", t) for t, (u, i) in enumerate(rng.integers(0, 30, size=(900, 2)))],
        columns=["uid", "iid", "ts"],
    ).drop_duplicates(["uid", "iid"])
    events.to_csv(tmp_path / "log.csv", index=False)
    pd.DataFrame({"iid": [f"i{i}" for i in range(30)], "title": [f"Film {i}" for i in range(30)]}).to_csv(
        tmp_path / "items.csv", index=False
    )
    columns = ["--set", "columns.user=uid", "--set", "columns.item=iid", "--set", "columns.timestamp=ts"]
    columns += ["--set", "columns.item_key=iid", "--set", "kcore=3"]
    args = quality.parse_args(
        ["--interactions", str(tmp_path / "log.csv"), "--items", str(tmp_path / "items.csv"), *columns]
    )
    assert args.label == tmp_path.name and args.out.endswith(f"quality-{tmp_path.name}")
    base = quality.base_values(args)
    assert base["dataset"] is None and base["interactions"] == str(tmp_path / "log.csv")
    result = quality.run_most_popular(base)
    data = load_data(
        interactions=tmp_path / "log.csv",
        items=tmp_path / "items.csv",
        columns=Columns(user="uid", item="iid", timestamp="ts", item_key="iid"),
        kcore=3,
        max_history=context_items(RunConfig.from_dict(base)),  # the shared data's history length
    )
    assert result["metrics"] == most_popular_metrics(data)
    with pytest.raises(SystemExit, match="not both"):
        quality.parse_args(["--dataset", "ml-100k", "--interactions", str(tmp_path / "log.csv")])
    with pytest.raises(SystemExit, match="--items is the item file"):
        quality.parse_args(["--items", str(tmp_path / "items.csv")])
