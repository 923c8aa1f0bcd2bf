"""Data pipeline: k-core, ordering, leave-one-out, readers of every format, assets, embeddings, errors."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2gr.cli import main
from s2gr.data import (
    AssetError,
    Columns,
    DataFormatError,
    build_recdata,
    cache_root,
    chronological,
    embed_texts,
    fetch_asset,
    kcore_filter,
    leave_one_out,
    load_data,
    read_interactions_file,
)
from s2gr.data import assets as assets_module


def reference_kcore(rows: list[tuple[str, str]], k: int) -> set[tuple[str, str]]:
    """Peel one under-degree node at a time; the k-core is unique, so any peeling order agrees."""
    alive = list(rows)
    while True:
        users = Counter(user for user, _ in alive)
        items = Counter(item for _, item in alive)
        kept = [(u, i) for u, i in alive if users[u] >= k and items[i] >= k]
        if len(kept) == len(alive):
            return set(kept)
        alive = kept


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=0, max_size=150, unique=True),
    st.integers(1, 5),
)
def test_kcore_matches_reference_and_degrees(pairs: list[tuple[int, int]], k: int) -> None:
    rows = [(f"u{u}", f"i{i}") for u, i in pairs]
    frame = pd.DataFrame(rows or [], columns=["user_id", "item_id"]).astype(str)
    frame["timestamp"] = np.arange(len(frame), dtype=float)
    kept = kcore_filter(frame, k)
    kept_rows = set(zip(kept["user_id"], kept["item_id"], strict=True))
    assert kept_rows == reference_kcore(rows, k)  # nothing that could stay was removed
    if len(kept):
        assert kept.groupby("user_id").size().min() >= k
        assert kept.groupby("item_id").size().min() >= k


def test_tie_break_keeps_file_order_and_is_deterministic() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "b", "a", "a", "b", "a"],
            "item_id": ["x", "y", "z", "w", "x", "v"],
            "timestamp": [5.0, 1.0, 5.0, 3.0, 1.0, 9.0],
        }
    )
    ordered = chronological(frame)
    user_a = ordered[ordered["user_id"] == "a"]["item_id"].tolist()
    assert user_a == ["w", "x", "z", "v"]  # x before z: equal timestamps keep file order
    assert ordered[ordered["user_id"] == "b"]["item_id"].tolist() == ["y", "x"]
    pd.testing.assert_frame_equal(ordered, chronological(frame.copy()))


def test_leave_one_out_on_small_log() -> None:
    frame = pd.DataFrame(
        {"user_id": ["u"] * 6 + ["v"] * 2, "item_id": [*"abcdef", "a", "b"], "timestamp": range(8)}
    ).astype({"timestamp": float})
    splits = leave_one_out(chronological(frame), max_history=3)
    assert splits["train"]["user_id"] == ["u"]  # v has 2 items: too short for three splits
    assert splits["train"]["item_ids"] == [["a", "b", "c", "d"]]
    assert splits["validation"][0] == {"user_id": "u", "history": ["b", "c", "d"], "target": "e"}
    assert splits["test"][0] == {"user_id": "u", "history": ["c", "d", "e"], "target": "f"}
    with pytest.raises(ValueError, match="max_history"):
        leave_one_out(chronological(frame), max_history=0)


@pytest.fixture(scope="module")
def ml100k():
    return load_data("ml-100k")


def test_ml100k_stats_and_split_invariants(ml100k) -> None:
    assert (ml100k.raw_stats.users, ml100k.raw_stats.items, ml100k.raw_stats.interactions) == (
        943,
        1682,
        100_000,
    )
    assert ml100k.stats.users == 943 and ml100k.stats.items == len(ml100k.items)
    raw = pd.read_csv(fetch_asset("ml-100k") / "ml-100k.inter", sep="\t")
    raw.columns = ["user_id", "item_id", "rating", "timestamp"]
    raw = raw.astype({"user_id": str, "item_id": str})
    kept_items = set(ml100k.item_ids)
    train, validation, test = (ml100k.splits[name] for name in ("train", "validation", "test"))
    for index in range(0, 943, 37):  # a spread of users, checked against the raw file
        user = train[index]["user_id"]
        rows = raw[(raw["user_id"] == user) & raw["item_id"].isin(kept_items)]
        rows = rows.assign(position=np.arange(len(rows))).sort_values(
            ["timestamp", "position"], kind="stable"
        )
        sequence = rows["item_id"].tolist()
        assert test[index]["target"] == sequence[-1]
        assert validation[index]["target"] == sequence[-2]
        assert train[index]["item_ids"] == sequence[:-2]
        assert test[index]["history"] == sequence[-21:-1]
        assert validation[index]["history"] == sequence[-22:-2]
        assert test[index]["target"] not in train[index]["item_ids"]
        assert validation[index]["target"] not in train[index]["item_ids"]
    assert max(len(history) for history in test["history"]) == 20


def test_item_text_recipe_movielens(ml100k) -> None:
    first = ml100k.items[0]
    assert first["item_id"] == "1"
    assert first["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert len(set(ml100k.item_ids)) == len(ml100k.items)


def test_cli_data_stats_prints_counts(capsys) -> None:
    assert main(["data", "stats", "ml-100k"]) == 0
    out = capsys.readouterr().out
    assert "943" in out and "1,682" in out and "100,000" in out and "after 5-core" in out


# --- readers on fixture files --------------------------------------------------------------------

ROWS = [("u1", "i1", 3), ("u1", "i2", 1), ("u2", "i1", 2), ("u2", "i3", 7), ("u1", "i3", 2)]


def _expected() -> list[tuple[str, str, float]]:
    return [(u, i, float(t)) for u, i, t in ROWS]


def _as_tuples(frame: pd.DataFrame) -> list[tuple[str, str, float]]:
    return list(zip(frame["user_id"], frame["item_id"], frame["timestamp"], strict=True))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl", ".jsonl.gz"])
def test_generic_reader_formats_with_custom_columns(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame(ROWS, columns=["uid", "sku", "ts"])
    path = tmp_path / f"log{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        text = "\n".join(json.dumps(row) for row in frame.to_dict("records"))
        path.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())
    meta = tmp_path / "items.csv"
    pd.DataFrame({"sku": ["i1", "i2", "i3"], "name": ["A", "B", "C"], "kind": ["x", "y", "z"]}).to_csv(
        meta, index=False
    )
    columns = Columns(user="uid", item="sku", timestamp="ts", item_key="sku", text=("name",))
    interactions, items = read_interactions_file(path, meta, columns)
    assert _as_tuples(interactions) == _expected()
    assert items["item_id"].tolist() == ["i1", "i2", "i3"]
    assert items["text"].tolist() == ["name: A", "name: B", "name: C"]


def test_recbole_reader(tmp_path: Path) -> None:
    inter = tmp_path / "toy.inter"
    inter.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t5\t{t}\n" for u, i, t in ROWS)
    )
    (tmp_path / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "i1\tAlpha\t1990\tDrama\ni2\tBeta\tunknown\tComedy Horror\ni3\tGamma (2001)\t2001\t\n"
    )
    interactions, items = read_interactions_file(inter)
    assert _as_tuples(interactions) == _expected()
    assert items["text"].tolist() == [
        "Alpha (1990). Genres: Drama.",
        "Beta. Genres: Comedy, Horror.",
        "Gamma (2001).",
    ]


def _write_json_lines(path: Path, records: list, python_repr: bool = False) -> None:
    lines = [repr(record) if python_repr else json.dumps(record) for record in records]
    path.write_bytes(gzip.compress("\n".join(lines).encode()))


def test_amazon_2014_reader_with_python_dict_meta(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews_Beauty_5.json.gz"
    _write_json_lines(
        reviews, [{"reviewerID": u, "asin": i, "overall": 5.0, "unixReviewTime": t} for u, i, t in ROWS]
    )
    meta = tmp_path / "meta_Beauty.json.gz"
    _write_json_lines(
        meta,
        [
            {
                "asin": "i1",
                "title": "Soap",
                "brand": "Acme",
                "categories": [["Beauty", "Bath"]],
                "price": 3.5,
            },
            {"asin": "i2", "title": "Comb", "categories": [["Beauty"]]},
            {"asin": "i3", "description": "no title"},
        ],
        python_repr=True,
    )
    interactions, items = read_interactions_file(reviews, meta)
    assert _as_tuples(interactions) == _expected()
    assert items["text"].tolist() == [
        "Title: Soap. Brand: Acme. Categories: Beauty, Bath. Price: 3.5.",
        "Title: Comb. Categories: Beauty.",
        ".",
    ]


def test_amazon_2018_and_2023_readers(tmp_path: Path) -> None:
    reviews_2018 = tmp_path / "Beauty_5.json.gz"
    _write_json_lines(
        reviews_2018, [{"reviewerID": u, "asin": i, "unixReviewTime": t, "overall": 4} for u, i, t in ROWS]
    )
    assert _as_tuples(read_interactions_file(reviews_2018)[0]) == _expected()
    reviews_2023 = tmp_path / "All_Beauty.jsonl"
    records = [
        {"user_id": u, "parent_asin": i, "asin": "x", "timestamp": t * 1000, "rating": 5} for u, i, t in ROWS
    ]
    reviews_2023.write_text("\n".join(json.dumps(record) for record in records))
    meta = tmp_path / "meta_All_Beauty.jsonl"
    meta.write_text(
        json.dumps(
            {"parent_asin": "i1", "title": "Soap", "store": "Acme", "categories": ["Bath"], "price": None}
        )
    )
    interactions, items = read_interactions_file(reviews_2023, meta)
    assert _as_tuples(interactions) == _expected()
    assert items["text"].tolist() == ["Title: Soap. Brand: Acme. Categories: Bath."]


def test_own_files_through_load_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", float(t)) for t, (u, i) in enumerate(rng.integers(0, 12, size=(400, 2)))]
    path = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).drop_duplicates(
        ["user_id", "item_id"]
    ).to_csv(path, index=False)
    data = load_data(interactions=path, kcore=3, max_history=4)
    assert data.items["text"] == data.items["item_id"]  # no metadata: the id is the text
    assert all(len(history) <= 4 for history in data.splits["test"]["history"])
    assert set(data.splits["test"]["target"]) <= set(data.item_ids)


def test_datasets_objects_and_folders_load_like_the_same_rows_in_a_file(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        [(f"u{u}", f"i{i}", float(t)) for t, (u, i) in enumerate(rng.integers(0, 15, size=(500, 2)))],
        columns=["uid", "iid", "ts"],
    ).drop_duplicates(["uid", "iid"])
    items = pd.DataFrame({"iid": [f"i{i}" for i in range(15)], "title": [f"Movie {i}" for i in range(15)]})
    frame.to_csv(tmp_path / "log.csv", index=False)
    items.to_csv(tmp_path / "items.csv", index=False)
    columns = Columns(user="uid", item="iid", timestamp="ts", item_key="iid")
    reference = load_data(
        interactions=tmp_path / "log.csv", items=tmp_path / "items.csv", columns=columns, kcore=3
    )
    half = len(frame) // 2
    as_dict = DatasetDict(
        {
            "a": Dataset.from_pandas(frame[:half], preserve_index=False),
            "b": Dataset.from_pandas(frame[half:], preserve_index=False),
        }
    )
    Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(tmp_path / "saved"))
    sources = [frame, Dataset.from_pandas(frame, preserve_index=False), as_dict, tmp_path / "saved"]
    for source in sources:
        data = load_data(interactions=source, items=Dataset.from_pandas(items), columns=columns, kcore=3)
        for split in ("train", "validation", "test"):
            assert data.splits[split].to_dict() == reference.splits[split].to_dict(), (type(source), split)
        assert data.items["text"] == reference.items["text"]
    with pytest.raises(DataFormatError, match=r"the Dataset: missing column.*\['uid'\]"):
        load_data(
            interactions=Dataset.from_pandas(frame.rename(columns={"uid": "user"}), preserve_index=False),
            columns=columns,
        )
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataFormatError, match="no `datasets` folder"):
        load_data(interactions=tmp_path / "plain", columns=columns)


# --- bad input ---------------------------------------------------------------------------------


def test_missing_column_names_file_and_flag(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    pd.DataFrame(ROWS, columns=["user", "item", "time"]).to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"log\.csv.*missing column.*--user-col"):
        read_interactions_file(path)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataFormatError, match=r"empty\.csv: the file is empty"):
        read_interactions_file(empty)
    header = tmp_path / "header.csv"
    header.write_text("user_id,item_id,timestamp\n")
    with pytest.raises(DataFormatError, match="no rows"):
        read_interactions_file(header)


def test_non_numeric_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\na,b,1\na,c,yesterday\n")
    with pytest.raises(DataFormatError, match=r"non-numeric value 'yesterday' \(row 2\)"):
        read_interactions_file(path)


def test_unknown_format_missing_file_unknown_dataset(tmp_path: Path) -> None:
    odd = tmp_path / "log.xlsx"
    odd.write_text("x")
    with pytest.raises(DataFormatError, match="unknown format"):
        read_interactions_file(odd)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_interactions_file(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match=r"Unknown data set 'ml-10m'.*--interactions"):
        load_data("ml-10m")
    assert main(["data", "stats", "--interactions", str(tmp_path / "absent.csv")]) == 2


def test_kcore_leaving_nothing_is_explained() -> None:
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1.0, 2.0]})
    with pytest.raises(ValueError, match="lower --kcore"):
        build_recdata("tiny", frame, None, kcore=5)


@pytest.fixture()
def private_cache(tmp_path: Path) -> Path:
    """A fresh cache holding only a copy of the already-downloaded wheels (no registry access)."""
    fetch_asset("ml-100k")
    shutil.copytree(cache_root() / "wheels", tmp_path / "wheels")
    return tmp_path


def test_corrupt_cached_file_is_extracted_again(private_cache: Path) -> None:
    folder = fetch_asset("ml-100k", private_cache)
    good = (folder / "ml-100k.inter").read_bytes()
    (folder / "ml-100k.inter").write_bytes(good[:1000])  # truncated: checksum mismatch
    assert fetch_asset("ml-100k", private_cache) == folder
    assert (folder / "ml-100k.inter").read_bytes() == good
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_failed_download_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    class Failed:
        returncode, stderr = 1, "ERROR: No matching distribution found"

    monkeypatch.setattr(assets_module.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(AssetError, match=r"Could not download recbole==1\.2\.1"):
        fetch_asset("ml-100k", tmp_path)
    assert list((tmp_path / "wheels").iterdir()) == []
    assert not (tmp_path / "assets" / "ml-100k").exists()


def test_write_atomically_replaces_whole_or_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "scores.bin"
    assets_module.write_atomically(path, lambda stream: stream.write(b"first"))
    assert path.read_bytes() == b"first"

    def interrupted(stream) -> None:
        stream.write(b"half of a new ")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        assets_module.write_atomically(path, interrupted)
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["scores.bin"]  # no temporary file left
    assets_module.write_atomically(path, lambda stream: stream.write(b"second"))
    assert path.read_bytes() == b"second"


def test_embeddings_unit_norm_cached_and_semantic() -> None:
    texts = [
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        "Toy Story 2 (1999). Genres: Animation.",
        "Heat (1995). Genres: Crime, Thriller.",
    ]
    vectors = embed_texts(texts, progress=False)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2]  # the two Toy Story films are closer than Heat
    again = embed_texts(texts, progress=False)
    np.testing.assert_array_equal(vectors, again)
    cached = list((cache_root() / "embeddings").glob("*.npy"))
    assert cached and not list((cache_root() / "embeddings").glob("*.tmp"))


def test_max_users_slice_is_a_consistent_smaller_dataset() -> None:
    data = load_data("ml-100k", max_users=50)
    assert data.raw_stats.users == 50 and len(data.splits["test"]) <= 50
    catalog = set(data.item_ids)
    assert set(data.splits["test"]["target"]) <= catalog
    assert {item for items in data.splits["train"]["item_ids"] for item in items} <= catalog
    with pytest.raises(ValueError, match="max_users"):
        load_data("ml-100k", max_users=0)
