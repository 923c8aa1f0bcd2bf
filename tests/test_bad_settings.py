"""A mistake in a run's settings fails at once, as one `error:` line that names the field, the value and what
is expected, before any data is read; numbers such as 1e-3 are numbers; `train --help` lists the settings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from s2gr.cli import build_parser, main, run_config_from_args
from s2gr.errors import InputError
from s2gr.training.config import RunConfig, apply_assignments, settings_help
from s2gr.training.presets import DEMO

# (--set assignment, phrase the error message must hold)
BAD_SETTINGS = [
    ("lr=0", "lr must be > 0, got 0"),
    ("lr=abc", "lr must be a number > 0, got 'abc'"),
    ("lr=.nan", "lr must be a number > 0"),
    ("batch_size=abc", "batch_size must be an integer ≥ 1, got 'abc'"),
    ("batch_size=2.5", "batch_size must be an integer ≥ 1, got 2.5"),
    ("epochs=[1]", "epochs must be a number, got [1]"),
    ("epochs=0", "epochs must be > 0 (or set max_steps), got 0"),
    ("columns.usr=uid", "Unknown columns field(s) ['usr'] (did you mean columns.user?)"),
    ("columns.text=title", "columns.text must be a list of strings, got 'title'"),
    ("columns.user=", "columns.user must be a non-empty string, got None"),
    ("gradient_accumulation_steps=0", "gradient_accumulation_steps must be ≥ 1, got 0"),
    ("warmup_ratio=5", "warmup_ratio must be in [0, 1), got 5"),
    ("warmup_ratio=-0.1", "warmup_ratio must be in [0, 1), got -0.1"),
    ("weight_decay=-1", "weight_decay must be ≥ 0, got -1"),
    ("kcore=-3", "kcore must be ≥ 1, got -3"),
    ("max_history=0", "max_history must be ≥ 1, got 0"),
    ("max_users=0", "max_users must be ≥ 1 (or null), got 0"),
    ("recent_targets=0", "recent_targets must be ≥ 1 (or null), got 0"),
    ("eval_every_epochs=0", "eval_every_epochs must be > 0, got 0"),
    ("patience=-1", "patience must be ≥ 0, got -1"),
    ("num_beams=0", "num_beams must be ≥ 1, got 0"),
    ("seed=-1", "seed must be in [0, 4294967295], got -1"),
    ("max_steps=-2", "max_steps must be ≥ -1, got -2"),
    ("time_budget_minutes=0", "time_budget_minutes must be > 0 (or null), got 0"),
    ("exclude_seen=maybe", "exclude_seen must be true or false, got 'maybe'"),
    ("exclude_seen=yes", "exclude_seen must be true or false, got 'yes'"),  # YAML 1.2: only true/false
    ("refit=1", "refit must be true or false, got 1"),
    ("mixed_precision=fp16", "mixed_precision must be one of 'auto', 'bf16', 'no', got 'fp16'"),
    ("encoder_mode=sideways", "encoder_mode must be one of 'causal', 'bidirectional', got 'sideways'"),
    ("dataset=ml-10m", "dataset must be one of 'ml-100k', 'ml-1m' (or null), got 'ml-10m'"),
    ("dataset=null", "Give dataset (one of ml-100k, ml-1m) or interactions"),
    ("items=meta.csv", "items is the item file of your own interactions: set interactions too"),
    ("num_thinking=-1", "num_thinking must be ≥ 0 (or null), got -1"),
    ("epoch=3", "unknown field(s) ['epoch'] (did you mean epochs?)"),
    ("learning_rate=1e-3", "unknown field(s) ['learning_rate']; known: output_dir, dataset"),
    ("codebook.levels=3", "Unknown codebook field(s) ['levels'] (did you mean codebook.num_levels?)"),
    ("codebook.balance_cap=-1", "codebook.balance_cap must be >= 0, got -1"),
    ("codebook.hidden_dims=[64, x]", "codebook.hidden_dims must be a list of integers, got [64, 'x']"),
    ("model.d_modl=64", "Unknown model field(s) ['d_modl'] (did you mean model.d_model?)"),
    ("model.d_model=x", "model.d_model must be an integer, got 'x'"),
    ("model.dropout_rate=1.5", "model.dropout_rate must be in [0, 1), got 1.5"),
    ("model.encoder_mode=causal", "model.encoder_mode cannot be set: it comes from the run's encoder_mode"),
    ("model.codebook_size=64", "model.codebook_size cannot be set: it comes from the codebook"),
    ("model=3", "model must be a mapping of field: value, got 3"),
    ("lr.peak=1", "lr must be a number > 0, got {'peak': 1}"),
    ("batch_size", "--set: expected KEY=VALUE, got 'batch_size'"),
    ("lr=[1", "lr: '[1' is not valid YAML: expected ',' or ']'"),
]


def train_error(tmp_path: Path, capsys, *args: str) -> str:
    """stderr of `s2gr train` with ``args``, which must fail at once (status 2) without touching the run folder."""
    run = tmp_path / "run"
    started = time.perf_counter()
    status = main(["train", "--output-dir", str(run), *args])
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    assert status == 2, err
    assert seconds < 2 and not run.exists()  # no data, codebook or model work began
    assert err.startswith("error: ") and err.count("\n") == 1  # one line, no traceback
    return err


@pytest.mark.parametrize(("assignment", "phrase"), BAD_SETTINGS)
def test_a_bad_setting_is_one_error_line_naming_field_value_and_expectation(
    tmp_path: Path, capsys, assignment: str, phrase: str
) -> None:
    err = train_error(tmp_path, capsys, "--set", assignment)
    field = assignment.partition("=")[0].split(".")[0]
    assert field in err and phrase in err, err


@pytest.mark.parametrize(
    ("yaml_text", "phrase"),
    [
        ("lr: 0\n", "lr must be > 0, got 0"),
        ("kcore: -3\n", "kcore must be ≥ 1, got -3"),
        ("exclude_seen: maybe\n", "exclude_seen must be true or false"),
        ("columns:\n  usr: uid\n", "did you mean columns.user?"),
        ("epochs: 3\nepoch: 3\n", "did you mean epochs?"),
        ("lr: [1\n", "run.yaml is not valid YAML: expected ',' or ']', but got '<stream end>' (line 2"),
        ("- lr\n", "a run config must be a YAML mapping"),
    ],
)
def test_a_bad_config_file_fails_the_same_way(tmp_path: Path, capsys, yaml_text: str, phrase: str) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text)
    assert phrase in train_error(tmp_path, capsys, "--config", str(config))


def parsed(*assignments: str) -> RunConfig:
    args = ["train"] + [part for assignment in assignments for part in ("--set", assignment)]
    return run_config_from_args(build_parser().parse_args(args))


def test_exponent_numbers_are_floats_from_set_and_yaml(tmp_path: Path) -> None:
    config = parsed("lr=1e-3", "weight_decay=5E-4", "epochs=1e3", "model.layer_norm_epsilon=1e-7")
    assert config.lr == 0.001 and isinstance(config.lr, float)
    assert config.weight_decay == 0.0005 and config.epochs == 1000.0 and isinstance(config.epochs, float)
    assert config.model == {"layer_norm_epsilon": 1e-7}
    path = tmp_path / "run.yaml"
    path.write_text("lr: 1e-3\nwarmup_ratio: 5E-2\nmixed_precision: no\nbatch_size: 010\n")
    config = RunConfig.from_yaml(path)
    assert config.lr == 0.001 and isinstance(config.lr, float) and config.warmup_ratio == 0.05
    assert config.mixed_precision == "no" and config.batch_size == 10  # YAML 1.2: a string, a decimal
    assert run_config_from_args(build_parser().parse_args(["train", "--config", str(path)])).lr == 0.001
    # a saved config (safe_dump writes 1e-07 as 1.0e-07) reads back equal
    saved = RunConfig(lr=1e-5, model={"layer_norm_epsilon": 1e-7}, codebook={"hidden_dims": [64, 32]})
    saved.save(path)
    assert RunConfig.from_yaml(path) == saved


def test_valid_settings_still_pass() -> None:
    config = parsed(
        "columns.user=uid",
        "columns.text=[title, genre]",
        "kcore=1",
        "exclude_seen=false",
        "max_steps=10",
        "epochs=0",  # max_steps replaces epochs
        "num_thinking=0",
        "time_budget_minutes=2.5",
        "codebook.num_levels=2",
        "model.d_model=48",
        "model.num_heads=2",
    )
    assert config.columns == {"user": "uid", "text": ["title", "genre"]} and config.exclude_seen is False
    assert parsed("num_thinking=2", "codebook.num_levels=2").num_thinking == 2
    assert parsed("dataset=null", "interactions=log.csv", "items=meta.csv").items == "meta.csv"
    assert RunConfig.from_dict(DEMO).model == DEMO["model"]
    assert apply_assignments({"model": {"d_kv": 16}}, ["model.d_model=64"]) == {
        "model": {"d_kv": 16, "d_model": 64}
    }


def test_train_help_lists_every_setting(capsys) -> None:
    for command in ("train", "finetune"):
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        for text in ("columns.user=user_id", "kcore=5", "max_history=10", "iterative k-core filter"):
            assert text in out, text
        for field in ("gradient_accumulation_steps", "codebook.KEY", "balance_cap", "model.KEY", "d_model"):
            assert field in out, field
    listed = settings_help()
    assert all(f"  {spec}=" in listed for spec in RunConfig.__dataclass_fields__)


def test_train_data_hints_name_set_not_flags_train_lacks(tmp_path: Path, capsys) -> None:
    log = tmp_path / "log.csv"
    log.write_text("uid,iid,ts\na,x,1\na,y,2\nb,x,3\n")
    assert main(["train", "--output-dir", str(tmp_path / "a"), "--interactions", str(log)]) == 2
    err = capsys.readouterr().err
    assert "--set columns.user=NAME" in err and "--user-col" not in err, err
    columns = ["--set", "columns.user=uid", "--set", "columns.item=iid", "--set", "columns.timestamp=ts"]
    assert main(["train", "--output-dir", str(tmp_path / "b"), "--interactions", str(log), *columns]) == 2
    err = capsys.readouterr().err
    assert "lower --set kcore=N" in err and "--kcore" not in err, err
    # the data commands have the flags, and keep naming them
    assert main(["data", "stats", "--interactions", str(log)]) == 2
    assert "--user-col" in capsys.readouterr().err


def test_report_to_names_an_installed_integration_or_fails_early(monkeypatch) -> None:
    import transformers.integrations as integrations

    assert RunConfig(report_to="none").report_targets() == []
    with pytest.raises(InputError, match=r"report_to: unknown integration\(s\) \['tensorbored'\]"):
        RunConfig(report_to="tensorbored")
    monkeypatch.setattr(integrations, "get_available_reporting_integrations", lambda: ["tensorboard"])
    assert RunConfig(report_to="tensorboard, ").report_targets() == ["tensorboard"]
    with pytest.raises(InputError, match=r"\['wandb'\] not installed here: pip install wandb"):
        RunConfig(report_to="tensorboard,wandb")
