"""Mistakes a user makes with run folders, checkpoints and the recommendation API: each one is a clear,
early error (exit status 2 and a message that says what to do) and nothing on disk is lost.

Settings are in `test_bad_settings.py`, data files in `test_bad_data.py`.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from tiny_runs import tiny_config

from s2gr import S2GRRecommender
from s2gr.cli import main


def folder_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def train_cli(capsys: pytest.CaptureFixture[str], config_file: Path, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["train", "--config", str(config_file), *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config file, run folder) of a finished tiny run with its checkpoints."""
    root = tmp_path_factory.mktemp("finished")
    config = tiny_config(root / "run", max_steps=4, eval_every_epochs=0.5)
    config_file = root / "run.yaml"
    config.save(config_file)
    assert main(["train", "--config", str(config_file)]) == 0
    return config_file, root / "run"


@pytest.fixture
def run_copy(finished_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the finished run (config file pointing at it) that a test may damage."""
    config_file, folder = finished_run
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    values = yaml.safe_load(config_file.read_text()) | {"output_dir": str(copy)}
    copy_file = tmp_path / "run.yaml"
    copy_file.write_text(yaml.safe_dump(values))
    return copy_file, copy


def with_settings(config_file: Path, **changes: object) -> Path:
    changed = config_file.with_name("changed.yaml")
    changed.write_text(yaml.safe_dump(yaml.safe_load(config_file.read_text()) | changes))
    return changed


# ------------------------------------------------------------------------------------------------ run folders


def test_a_second_run_cannot_clobber_the_first(run_copy, capsys) -> None:
    config_file, folder = run_copy
    before = folder_digest(folder)
    assert any(name.startswith("checkpoint-") for name in before) and "model/model.safetensors" in before
    code, _, err = train_cli(capsys, with_settings(config_file, lr=0.01))
    assert code == 2
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert folder_digest(folder) == before


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"lr": 0.01}, "lr: 0.002 -> 0.01"),
        ({"model": {"d_model": 64}}, "model.d_model: 32 -> 64"),
        ({"seed": 7, "epochs": 3}, "seed: 42 -> 7"),
    ],
)
def test_resume_refuses_other_settings_and_lists_them(run_copy, capsys, changes, expected) -> None:
    config_file, folder = run_copy
    shutil.rmtree(folder / "model")  # an unfinished run: checkpoints, no final model
    before = folder_digest(folder)
    values = yaml.safe_load(config_file.read_text())
    for key, value in changes.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) else value
    changed = config_file.with_name("changed.yaml")
    changed.write_text(yaml.safe_dump(values))
    code, _, err = train_cli(capsys, changed, "--resume")
    assert code == 2
    assert "other settings" in err and expected in err
    assert folder_digest(folder) == before


def test_resume_of_a_finished_run_is_refused(run_copy, capsys) -> None:
    config_file, folder = run_copy
    before = folder_digest(folder)
    code, _, err = train_cli(capsys, config_file, "--resume")
    assert code == 2 and "finished run" in err
    assert folder_digest(folder) == before


def test_resume_with_only_a_new_time_budget_is_allowed(run_copy, capsys) -> None:
    config_file, folder = run_copy
    shutil.rmtree(folder / "model")
    code, _, _ = train_cli(capsys, with_settings(config_file, time_budget_minutes=30), "--resume")
    assert code == 0
    assert (folder / "model" / "model.safetensors").is_file()


def test_overwrite_deletes_the_earlier_run_only_when_asked(run_copy, capsys) -> None:
    config_file, folder = run_copy
    old_weights = (folder / "model" / "model.safetensors").read_bytes()
    code, out, _ = train_cli(capsys, with_settings(config_file, seed=3), "--overwrite")
    assert code == 0 and "deleted the earlier run" in out
    assert yaml.safe_load((folder / "run_config.yaml").read_text())["seed"] == 3
    assert (folder / "model" / "model.safetensors").read_bytes() != old_weights
    assert not list(folder.parent.glob(".model-*"))  # no temporary folder left behind


def test_a_folder_that_holds_no_run_is_never_emptied(tmp_path, capsys) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    config_file = tmp_path / "run.yaml"
    tiny_config(folder).save(config_file)
    for extra in ((), ("--overwrite",)):
        code, _, err = train_cli(capsys, config_file, *extra)
        assert code == 2 and "holds no run" in err
    assert (folder / "thesis.tex").read_text() == "years of work"


# ------------------------------------------------------------------------------------------------ files


@pytest.fixture
def model_copy(tiny_s2gr, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_s2gr.folder, folder)
    return folder


def cut_in_half(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize(
    ("file", "loader"),
    [("model.safetensors", "model"), ("sid_arrays.safetensors", "tokenizer")],
)
def test_a_file_cut_short_names_itself_and_the_remedy(model_copy, tiny_s2gr, capsys, file, loader) -> None:
    from transformers import AutoModel

    from s2gr import S2GRTokenizer
    from s2gr.errors import CorruptFileError

    cut_in_half(model_copy / file)
    load = AutoModel if loader == "model" else S2GRTokenizer
    with pytest.raises(CorruptFileError, match="incomplete or corrupt") as caught:
        load.from_pretrained(model_copy)
    assert str(model_copy) in str(caught.value) and "download it again" in str(caught.value)
    capsys.readouterr()
    code = main(["evaluate", "--model", str(model_copy), *tiny_s2gr.data_args, "--num-beams", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "incomplete or corrupt" in err and "Traceback" not in err


def test_errors_that_are_not_the_users_keep_their_traceback(monkeypatch, capsys) -> None:
    """Only the package's own errors become one line; a bug or an out-of-memory must show where it came from."""
    import argparse
    from types import SimpleNamespace

    import s2gr.cli as cli
    from s2gr.errors import InputError

    def command(error: Exception):
        def handler(args: argparse.Namespace) -> None:
            raise error

        parser = SimpleNamespace(parse_args=lambda argv: argparse.Namespace(handler=handler))
        monkeypatch.setattr(cli, "build_parser", lambda: parser)

    command(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes"):
        cli.main([])
    command(InputError("top_k must be >= 1"))
    assert cli.main([]) == 2
    assert capsys.readouterr().err == "error: top_k must be >= 1\n"


# ------------------------------------------------------------------------------------------------ API


def test_unknown_items_raise_or_are_skipped_as_asked(loaded, tiny_s2gr) -> None:
    from s2gr.errors import S2GRError

    model, tokenizer = loaded
    history = list(tiny_s2gr.data.splits["validation"][0]["history"])
    with pytest.raises(S2GRError, match="on_unknown='skip'"):
        S2GRRecommender(model, tokenizer).recommend([[*history, "no-such-item"]], num_beams=3)
    skipped = S2GRRecommender(model, tokenizer).recommend(
        [[*history, "no-such-item"]], num_beams=3, on_unknown="skip"
    )
    assert skipped == S2GRRecommender(model, tokenizer).recommend([history], num_beams=3)
    with pytest.raises(S2GRError, match="empty after skipping"):
        S2GRRecommender(model, tokenizer).recommend([["no-such-item"]], num_beams=3, on_unknown="skip")


def test_integer_ids_mean_their_strings_and_other_types_are_refused(loaded, tiny_s2gr) -> None:
    from s2gr.errors import S2GRError

    model, tokenizer = loaded
    history = list(tiny_s2gr.data.splits["validation"][0]["history"])
    assert all(item.isdigit() for item in history)  # MovieLens ids
    as_ints = [int(item) for item in history]
    assert S2GRRecommender(model, tokenizer).recommend([as_ints], num_beams=3, exclude=[as_ints]) == (
        S2GRRecommender(model, tokenizer).recommend([history], num_beams=3, exclude=[history])
    )
    with pytest.raises(S2GRError, match="item ids are strings"):
        S2GRRecommender(model, tokenizer).recommend([[float(history[0])]], num_beams=3)


def test_top_k_beyond_the_catalog_returns_the_catalog_once(loaded, tiny_s2gr) -> None:
    import time

    model, tokenizer = loaded
    history = list(tiny_s2gr.data.splits["validation"][0]["history"])
    started = time.perf_counter()
    (ranking,) = S2GRRecommender(model, tokenizer).recommend(
        [history], top_k=10**6, num_beams=3, exclude=[history]
    )
    seconds = time.perf_counter() - started
    expected = set(tokenizer.item_ids) - set(history)
    assert len(ranking) == len(expected) and set(ranking) == expected
    (capped,) = S2GRRecommender(model, tokenizer).recommend([history], top_k=tokenizer.num_items, num_beams=3)
    assert len(capped) == tokenizer.num_items
    assert seconds < 30  # 10**6 beams would allocate gigabytes and take minutes


def test_a_checkpoint_killed_while_writing_its_state_is_not_resumed_from(tmp_path: Path) -> None:
    from s2gr.training.run_folder import last_checkpoint

    for step, state in (
        (4, '{"global_step": 4}'),
        (8, ""),
        (12, '{"global_step": 1'),
    ):  # 8 empty, 12 cut short
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-16").mkdir()  # no state file at all
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("")
    assert last_checkpoint(tmp_path) is None
