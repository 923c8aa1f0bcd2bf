"""`s2gr evaluate`, `recommend` and `push` on a tiny saved model, run in-process through `main` (the console
script's function), checked against the `S2GRRecommender` API they rely on."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import HubServer
from huggingface_hub import HfApi
from tiny_runs import single_thread

from s2gr import S2GRRecommender
from s2gr.cli import main
from s2gr.data import load_data
from s2gr.evaluation import evaluate_split, seen_items, user_sequence

METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")  # column order of the printed table
# A ranked row of `s2gr recommend`: rank, item id, score (4 decimals), optional text.
ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(-?\d+\.\d{4})(?:\s+(.*))?$")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny matmuls: a second thread only adds contention on a shared 2-core machine (30x slower when busy).
    with single_thread():
        yield


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *phrases: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, (phrase, err)


def table_row(out: str, label: str) -> dict[str, float]:
    """The metric values of the `format_results` row starting with `label`."""
    (line,) = [line for line in out.splitlines() if line.startswith(label + " ")]
    return dict(zip(METRICS, map(float, line.split()[2:]), strict=True))


def method_row(out: str, method: str, split: str) -> dict[str, float]:
    """The metric values of `method` on `split` in a `format_results` table."""
    (line,) = [line for line in out.splitlines() if line.split()[:2] == [method, split]]
    return dict(zip(METRICS, map(float, line.split()[2:]), strict=True))


def ranked_rows(out: str) -> list[tuple[str, float, str | None]]:
    rows = [ROW.match(line) for line in out.splitlines()]
    rows = [row for row in rows if row]
    assert [int(row.group(1)) for row in rows] == list(range(1, len(rows) + 1))
    return [(row.group(2), float(row.group(3)), row.group(4)) for row in rows]


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder`, by relative path."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("evaluate", ["--model", "--split", "--num-beams", "--no-exclude-seen", "--out", "--dataset"]),
        ("recommend", ["--model", "--user", "--history", "--top-k", "--no-exclude-seen", "--dataset"]),
        ("push", ["--model", "--repo-id", "--private", "--token"]),
    ],
)
def test_help_lists_the_options(capsys: pytest.CaptureFixture[str], command: str, flags: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in flags:
        assert flag in out, flag


# ------------------------------------------------------------------------------------------------ evaluate


def test_evaluate_prints_and_writes_what_evaluate_split_computes(
    tiny_s2gr, loaded, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model, tokenizer = loaded
    rows = tiny_s2gr.data.splits["validation"]
    seen = seen_items(tiny_s2gr.data.splits, "validation")
    expected = evaluate_split(model, tokenizer, rows, seen=seen, num_beams=tiny_s2gr.num_beams)
    assert any(expected.values()), "an all-zero reference would not test the numbers"

    code, out, _ = run_cli(
        capsys,
        "evaluate",
        "--model",
        tiny_s2gr.folder,
        *tiny_s2gr.data_args,
        "--split",
        "validation",
        "--num-beams",
        tiny_s2gr.num_beams,
        "--out",
        tmp_path / "eval",
    )
    assert code == 0
    assert table_row(out, "S2GR") == pytest.approx({k: round(v, 4) for k, v in expected.items()}, abs=1e-9)
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["s2gr"] == {"validation": expected}
    assert set(written["most_popular"]["validation"]) == set(METRICS)
    assert "40 users" in out and "seen items excluded" in out


def test_evaluate_without_seen_item_filtering(tiny_s2gr, loaded, capsys: pytest.CaptureFixture[str]) -> None:
    model, tokenizer = loaded
    rows = tiny_s2gr.data.splits["validation"]
    expected = evaluate_split(model, tokenizer, rows, seen=None, num_beams=3)
    code, out, _ = run_cli(
        capsys,
        "evaluate",
        "--model",
        tiny_s2gr.folder,
        *tiny_s2gr.data_args,
        "--split",
        "validation",
        "--num-beams",
        3,
        "--no-exclude-seen",
    )
    assert code == 0
    assert table_row(out, "S2GR") == pytest.approx({k: round(v, 4) for k, v in expected.items()}, abs=1e-9)
    assert "validation_unfiltered" in out and "seen items kept" in out


def test_evaluate_errors_say_what_to_pass(
    tiny_s2gr, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "evaluate", "--model", tmp_path / "nowhere", *tiny_s2gr.data_args)
    assert_clean_error(code, err, "not a model folder", "s2gr train")
    # 60 users bring items the 40-user model has never seen.
    code, _, err = run_cli(
        capsys, "evaluate", "--model", tiny_s2gr.folder, "--dataset", "ml-100k", "--max-users", 60
    )
    assert_clean_error(code, err, "not in the model's catalog", "--max-users")


# ------------------------------------------------------------------------------------------------ recommend


def test_recommend_for_a_history_excludes_it_and_matches_the_api(
    tiny_s2gr, loaded, capsys: pytest.CaptureFixture[str]
) -> None:
    model, tokenizer = loaded
    history = tiny_s2gr.data.splits["test"][0]["history"]
    code, out, _ = run_cli(
        capsys,
        "recommend",
        "--model",
        tiny_s2gr.folder,
        "--history",
        *history,
        "--top-k",
        7,
        "--num-beams",
        5,
    )
    assert code == 0
    rows = ranked_rows(out)
    ids, scores = [item for item, _, _ in rows], [score for _, score, _ in rows]
    assert len(ids) == 7 and len(set(ids)) == 7
    assert set(ids) <= set(tokenizer.item_ids) and not set(ids) & set(history)
    assert scores == sorted(scores, reverse=True)
    assert all(text is None for _, _, text in rows)  # no data set given: no texts
    (expected,) = S2GRRecommender(model, tokenizer).recommend(
        [history], top_k=7, num_beams=5, exclude=[history], return_scores=True
    )
    assert [(item, round(score, 4)) for item, score in expected] == list(zip(ids, scores, strict=True))


def test_recommend_without_exclusion_matches_the_api(
    tiny_s2gr, loaded, capsys: pytest.CaptureFixture[str]
) -> None:
    model, tokenizer = loaded
    history = tiny_s2gr.data.splits["validation"][3]["history"]
    code, out, _ = run_cli(
        capsys,
        "recommend",
        "--model",
        tiny_s2gr.folder,
        "--history",
        *history,
        "--num-beams",
        5,
        "--no-exclude-seen",
    )
    assert code == 0
    (expected,) = S2GRRecommender(model, tokenizer).recommend([history], top_k=10, num_beams=5)
    assert [item for item, _, _ in ranked_rows(out)] == expected


def test_recommend_for_a_user_reads_everything_known_and_shows_texts(
    tiny_s2gr, loaded, capsys: pytest.CaptureFixture[str]
) -> None:
    model, tokenizer = loaded
    splits = tiny_s2gr.data.splits
    user = splits["train"][1]["user_id"]
    known = [*splits["train"][1]["item_ids"], splits["validation"][1]["target"], splits["test"][1]["target"]]
    assert user_sequence(splits, user) == known
    history = known[-tokenizer.max_history_items :]
    code, out, _ = run_cli(
        capsys,
        "recommend",
        "--model",
        tiny_s2gr.folder,
        "--user",
        user,
        *tiny_s2gr.data_args,
        "--num-beams",
        5,
    )
    assert code == 0
    assert (
        " ".join(history) in out
        and f"user {user}: {len(known)} known items, the model reads the last {len(history)}" in out
    )
    rows = ranked_rows(out)
    (expected,) = S2GRRecommender(model, tokenizer).recommend(
        [history], top_k=10, num_beams=5, exclude=[known]
    )
    assert [item for item, _, _ in rows] == expected
    assert not set(expected) & set(known)
    texts = dict(zip(tiny_s2gr.data.items["item_id"], tiny_s2gr.data.items["text"], strict=True))
    for item, _, text in rows:
        assert text and texts[item].startswith(text.rstrip("…"))


def test_recommend_errors_say_what_to_do(tiny_s2gr, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tiny_s2gr.folder
    code, _, err = run_cli(
        capsys, "recommend", "--model", folder, "--user", "no-such-user", *tiny_s2gr.data_args
    )
    assert_clean_error(code, err, "unknown user id 'no-such-user'", "--history")
    code, _, err = run_cli(capsys, "recommend", "--model", folder, "--history", "1", "no-such-item")
    assert_clean_error(code, err, "unknown item id(s) ['no-such-item']", "item_ids.json")
    with pytest.raises(SystemExit) as exit_info:  # --user and --history exclude each other
        main(["recommend", "--model", str(folder), "--user", "1", "--history", "1"])
    assert exit_info.value.code == 2 and "--user" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "recommend", "--model", folder)  # nobody to recommend to
    assert_clean_error(code, err, "--user USER_ID", "--history", "--output FILE")


# ------------------------------------------------------------------------------------------------ push


def test_push_uploads_the_folder(
    tiny_s2gr, hub_server: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    before = fingerprint(tiny_s2gr.folder)
    code, out, _ = run_cli(
        capsys,
        "push",
        "--model",
        tiny_s2gr.folder,
        "--repo-id",
        "user/cli-tiny",
        "--private",
        "--token",
        hub_server.token,
    )
    assert code == 0
    info = HfApi(endpoint=hub_server.url, token=hub_server.token).model_info("user/cli-tiny")
    assert f"/user/cli-tiny/commit/{info.sha}" in out
    files = {sibling.rfilename for sibling in info.siblings}
    assert {"modeling_s2gr.py", "tokenization_s2gr.py", "configuration_s2gr.py", "README.md"} <= files
    assert hub_server.repos[("model", "user/cli-tiny")].private
    assert fingerprint(tiny_s2gr.folder) == before


def test_push_errors_exit_2_and_leave_the_folder(
    tiny_s2gr, hub_server: HubServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder, before = tiny_s2gr.folder, fingerprint(tiny_s2gr.folder)
    hub_server.fail_all = True
    code, _, err = run_cli(
        capsys, "push", "--model", folder, "--repo-id", "user/down", "--token", hub_server.token
    )
    assert_clean_error(code, err, "HTTP 500", "retry", "not modified")
    hub_server.fail_all = False
    code, _, err = run_cli(capsys, "push", "--model", folder, "--repo-id", "user/secret", "--token", "wrong")
    assert_clean_error(code, err, "refused the token")
    assert fingerprint(folder) == before
    sent = len(hub_server.requests)
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "push", "--model", tmp_path / "empty", "--repo-id", "user/empty")
    assert_clean_error(code, err, "not a complete checkpoint", "config.json")
    # The modules the auto_map files import relatively travel with a checkpoint too: a folder without them
    # would fail to load from the Hub.
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    for module in ("layers_s2gr.py", "catalog_s2gr.py"):
        (partial / module).unlink()
    code, _, err = run_cli(capsys, "push", "--model", partial, "--repo-id", "user/partial")
    assert_clean_error(code, err, "not a complete checkpoint", "catalog_s2gr.py, layers_s2gr.py")
    assert len(hub_server.requests) == sent  # refused before any request


def test_run_config_from_a_yaml_file_then_flags_then_set(tmp_path) -> None:
    import argparse

    from s2gr.cli import add_run_args, run_config_from_args

    config_file = tmp_path / "run.yaml"
    config_file.write_text("epochs: 3\nlr: 0.01\nmodel:\n  d_model: 32\n  num_heads: 2\n")
    parser = argparse.ArgumentParser()
    add_run_args(parser)
    args = parser.parse_args(
        [
            "--config",
            str(config_file),
            "--epochs",
            "5",
            "--no-thinking",
            "--set",
            "model.d_model=48",
            "--set",
            "codebook.num_clusters=8",
            "--set",
            "exclude_seen=false",
        ]
    )
    config = run_config_from_args(args)
    assert config.epochs == 5 and config.lr == 0.01 and config.num_thinking == 0
    assert config.model == {"d_model": 48, "num_heads": 2}  # --set changes one nested key, keeps the others
    assert config.codebook == {"num_clusters": 8} and config.exclude_seen is False
    with pytest.raises(ValueError, match="--set: expected KEY=VALUE"):
        run_config_from_args(parser.parse_args(["--set", "epochs"]))
    with pytest.raises(ValueError, match="unknown field"):
        run_config_from_args(parser.parse_args(["--set", "epoch=3"]))


def test_tiger_is_the_benchmarks_tiger_and_no_thinking_keeps_the_coba_codebook(tmp_path) -> None:
    """`--tiger` trains what the benchmarks and the README call TIGER: plain RQ-VAE codebook, no thinking."""
    import argparse
    import sys
    from dataclasses import replace

    from s2gr.cli import add_run_args, run_config_from_args
    from s2gr.codebook import CodebookConfig
    from s2gr.training.presets import METHODS

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import quality

    parser = argparse.ArgumentParser()
    add_run_args(parser)
    tiger = run_config_from_args(parser.parse_args(["--tiger", "--seed", "3", "--output-dir", str(tmp_path)]))
    benchmark = quality.run_config("tiger", 3, {}, tmp_path)
    assert tiger.num_thinking == 0 and tiger.codebook_config() == CodebookConfig.plain()
    # The benchmark also seeds the codebook with the run's seed; everything else is the same model.
    assert (
        benchmark.num_thinking == 0
        and replace(benchmark.codebook_config(), seed=0) == tiger.codebook_config()
    )
    assert quality.GENERATIVE["tiger"] == METHODS["tiger"]
    # Codebook settings a benchmark shares with S2GR (collaborative block, quantizer) never reach the
    # text-only TIGER baseline; the no-thinking ablation keeps S2GR's codes.
    shared = {"codebook": {"collab_dim": 32, "quantizer": "rkmeans", "num_clusters": 8}}
    tiger_shared = quality.run_config("tiger", 0, shared, tmp_path).codebook_config()
    assert tiger_shared == CodebookConfig.plain(num_clusters=8)
    coba_shared = quality.run_config("coba-only", 0, shared, tmp_path).codebook_config()
    assert (coba_shared.collab_dim, coba_shared.quantizer) == (32, "rkmeans")
    coba = run_config_from_args(parser.parse_args(["--no-thinking"]))
    assert coba.num_thinking == 0 and coba.codebook_config() == CodebookConfig()
    # The codebook flags of --set still apply on top of a method.
    plain_more = run_config_from_args(parser.parse_args(["--tiger", "--set", "codebook.num_clusters=8"]))
    assert plain_more.codebook_config() == CodebookConfig.plain(num_clusters=8)
    with pytest.raises(SystemExit):
        parser.parse_args(["--tiger", "--no-thinking"])


def test_demo_preset_is_the_base_and_flags_override_it() -> None:
    import argparse

    from s2gr.cli import add_run_args, run_config_from_args
    from s2gr.training.config import RunConfig
    from s2gr.training.presets import DEMO

    parser = argparse.ArgumentParser()
    add_run_args(parser)
    config = run_config_from_args(parser.parse_args([]), base=DEMO)
    # the demo-size model's learning rate, not RunConfig's general (TIGER-size) default
    assert config.dataset == "ml-100k" and config.lr == DEMO["lr"] != RunConfig().lr
    assert config.model == DEMO["model"] and config.time_budget_minutes == DEMO["time_budget_minutes"]
    changed = run_config_from_args(
        parser.parse_args(["--epochs", "2", "--set", "max_history=20", "--set", "model.d_model=32"]),
        base=DEMO,
    )
    assert (changed.epochs, changed.max_history, changed.model["d_model"]) == (2, 20, 32)
    # --set changed the run's copy, not the preset
    assert changed.model["num_heads"] == DEMO["model"]["num_heads"] and DEMO["model"]["d_model"] == 64


def test_codebook_flags_then_set_reach_every_codebook_field() -> None:
    import argparse

    from s2gr.cli import add_codebook_args, codebook_from_args

    parser = argparse.ArgumentParser()
    add_codebook_args(parser)
    args = ["--no-uniformity", "--set", "balance_cap=0.2", "--set", "hidden_dims=[64, 32]", "--clusters", "8"]
    config = codebook_from_args(parser.parse_args(args))
    assert config.balance_cap == 0.2 and config.hidden_dims == (64, 32)
    assert config.uniformity_weight == 0.0 and config.num_clusters == 8 and config.balance  # the rest stays
    # --set comes after the flags: it can switch back on what a flag switched off
    config = codebook_from_args(parser.parse_args(["--no-balance", "--set", "reset_dead_codes=true"]))
    assert config.reset_dead_codes and not config.balance
    # an unknown field: the message lists the known ones
    with pytest.raises(ValueError, match=r"--set: .*balance_cap"):
        codebook_from_args(parser.parse_args(["--set", "balance_cp=0.2"]))
    with pytest.raises(ValueError, match=r"--set: .*balance_cap must be >= 0"):
        codebook_from_args(parser.parse_args(["--set", "balance_cap=-1"]))
    for dotted in (
        "balance.cap=0.2",
        "codebook.balance_cap=0.2",
    ):  # RunConfig's spelling is not a codebook field
        with pytest.raises(ValueError, match="--set: codebook fields are flat"):
            codebook_from_args(parser.parse_args(["--set", dotted]))


# ------------------------------------------------------------------------------------------------ baseline


def test_baselines_from_the_command_line_match_the_package(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from s2gr.baselines import SASRecConfig, most_popular_metrics, train_sasrec

    data_args = ["--dataset", "ml-100k", "--max-users", "40", "--max-history", "5"]
    code, out, _ = run_cli(capsys, "baseline", "sasrec", *data_args, "--epochs", 2, "--out", tmp_path)
    assert code == 0
    written = json.loads((tmp_path / "metrics.json").read_text())
    data = load_data("ml-100k", max_users=40, max_history=5)
    expected = train_sasrec(data, SASRecConfig(epochs=2, seed=0))
    for split, values in expected.metrics.items():  # the same seed gives the same model and numbers
        assert written["sasrec"][split] == pytest.approx(values)
    for split, values in most_popular_metrics(data).items():
        assert written["most_popular"][split] == pytest.approx(values)
    assert set(written["sasrec"]) == {"validation", "test", "validation_unfiltered", "test_unfiltered"}
    assert method_row(out, "SASRec", "test")["ndcg@10"] == pytest.approx(
        expected.metrics["test"]["ndcg@10"], abs=1e-4
    )
    capsys.readouterr()  # the direct train_sasrec call above printed its epochs
    code, out, _ = run_cli(capsys, "baseline", "most-popular", *data_args, "--no-exclude-seen")
    unfiltered = most_popular_metrics(data, exclude_seen=False)
    assert code == 0 and "SASRec" not in out
    assert method_row(out, "most-popular", "test")["recall@10"] == pytest.approx(
        unfiltered["test"]["recall@10"], abs=1e-4
    )
    code, _, err = run_cli(capsys, "baseline", "sasrec", *data_args, "--epochs", 0)
    assert_clean_error(code, err, "SASRec epochs must be ≥ 1")
