"""Batch recommendation (s2gr.batch, `s2gr recommend --output`) on the tiny model's real ml-100k slice."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from s2gr import S2GRRecommender
from s2gr.batch import dataset_histories, read_history_file, recommend_to_file
from s2gr.cli import main
from s2gr.errors import CorruptFileError, InputError
from s2gr.titles import TITLES_FILE, item_titles, load_titles


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def expected_rankings(
    loaded, histories: list[list[str]], exclude: bool = True
) -> list[list[tuple[str, float]]]:
    model, tokenizer = loaded
    return S2GRRecommender(model, tokenizer).recommend(
        histories, top_k=4, num_beams=5, exclude=histories if exclude else None, return_scores=True
    )


def test_every_user_of_the_data_set_gets_the_apis_ranking(tiny_s2gr, loaded, capsys, tmp_path: Path) -> None:
    output = tmp_path / "recs.parquet"
    code, out, _ = run_cli(
        capsys, "recommend", "--model", tiny_s2gr.folder, *tiny_s2gr.data_args,
        "--output", output, "--top-k", 4, "--num-beams", 5, "--batch-size", 7,
    )  # fmt: skip
    assert code == 0
    table = pd.read_parquet(output)
    users, histories = dataset_histories(tiny_s2gr.data)
    assert list(table.columns) == ["user_id", "rank", "item_id", "score", "title"]
    assert table["user_id"].drop_duplicates().tolist() == users  # every user, in data order
    assert f"{len(table):,} rows for {len(users):,} of {len(users):,} users" in out
    expected = expected_rankings(loaded, histories)
    for (_, group), history, ranking in zip(
        table.groupby("user_id", sort=False), histories, expected, strict=True
    ):
        assert group["rank"].tolist() == list(range(1, len(ranking) + 1))
        assert group["item_id"].tolist() == [item for item, _ in ranking]
        assert group["score"].tolist() == pytest.approx([score for _, score in ranking], abs=1e-5)
        assert not set(group["item_id"]) & set(history)  # seen items are excluded
    titles = item_titles(tiny_s2gr.data.items)
    assert table["title"].tolist() == [titles[item] for item in table["item_id"]]
    assert all(table["title"].str.len() > 0)


def test_an_events_csv_with_unknown_items_and_users_is_counted(
    tiny_s2gr, loaded, capsys, tmp_path: Path
) -> None:
    splits = tiny_s2gr.data.splits
    first, second = splits["test"][0]["history"], splits["test"][1]["history"]
    # Events out of time order, one unknown item inside user a's history, user c knows nothing of the catalog.
    events = [("a", item, 100 - t) for t, item in enumerate(reversed(first))]
    events += [("a", "no-such-item", 50), ("b", second[0], 1), ("c", "unknown-1", 1), ("c", "unknown-2", 2)]
    events += [("b", item, 10 + t) for t, item in enumerate(second[1:])]
    frame = pd.DataFrame(events, columns=["uid", "iid", "ts"]).astype({"ts": int})
    frame.to_csv(tmp_path / "events.csv", index=False)
    output = tmp_path / "recs.csv"
    code, out, _ = run_cli(
        capsys, "recommend", "--model", tiny_s2gr.folder, "--input", tmp_path / "events.csv",
        "--user-col", "uid", "--item-col", "iid", "--time-col", "ts",
        "--output", output, "--top-k", 4, "--num-beams", 5,
    )  # fmt: skip
    assert code == 0
    assert "3 history items outside the model's catalog were skipped" in out
    assert "1 users had no item of the catalog" in out
    table = pd.read_csv(output, dtype={"user_id": str, "item_id": str})
    # No data set or item file: the titles saved in the model folder by the run.
    assert load_titles(tiny_s2gr.folder) == item_titles(tiny_s2gr.data.items)
    assert table["title"].tolist() == [item_titles(tiny_s2gr.data.items)[item] for item in table["item_id"]]
    assert table["user_id"].drop_duplicates().tolist() == ["a", "b"]
    expected = expected_rankings(loaded, [first, second])  # the events, ordered by time, without the unknown
    for user, ranking in zip("ab", expected, strict=True):
        assert table.loc[table["user_id"] == user, "item_id"].tolist() == [item for item, _ in ranking]


def test_a_histories_file_one_row_per_user(tiny_s2gr, loaded, tmp_path: Path) -> None:
    histories = [tiny_s2gr.data.splits["validation"][row]["history"] for row in range(3)]
    path = tmp_path / "histories.jsonl"
    path.write_text(
        "".join(json.dumps({"user_id": f"u{row}", "history": h}) + "\n" for row, h in enumerate(histories))
    )
    users, read = read_history_file(path)
    assert users == ["u0", "u1", "u2"] and read == histories
    csv = tmp_path / "histories.csv"
    pd.DataFrame({"user_id": users, "history": [" ".join(h) for h in histories]}).to_csv(csv, index=False)
    assert read_history_file(csv) == (users, histories)
    model, tokenizer = loaded
    summary = recommend_to_file(
        S2GRRecommender(model, tokenizer), users, read, tmp_path / "out.parquet",
        top_k=4, num_beams=5, exclude_seen=False, progress=False,
    )  # fmt: skip
    table = pd.read_parquet(tmp_path / "out.parquet")
    assert summary.rows == len(table) == 12 and summary.users == 3 and summary.unknown_items == 0
    expected = expected_rankings(loaded, histories, exclude=False)
    assert table["item_id"].tolist() == [item for ranking in expected for item, _ in ranking]


def test_bad_batch_inputs_are_refused_before_any_work(tiny_s2gr, loaded, capsys, tmp_path: Path) -> None:
    folder = tiny_s2gr.folder
    code, _, err = run_cli(
        capsys,
        "recommend",
        "--model",
        folder,
        "--input",
        tmp_path / "none.csv",
        "--output",
        tmp_path / "o.csv",
    )
    assert code == 2 and "no such file" in err and "--input" in err
    code, _, err = run_cli(
        capsys, "recommend", "--model", folder, "--user", "1", "--output", tmp_path / "o.csv"
    )
    assert code == 2 and "drop --user/--history" in err
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"user_id": ["a"], "movie": ["1"]}).to_csv(bad, index=False)
    code, _, err = run_cli(
        capsys, "recommend", "--model", folder, "--input", bad, "--output", tmp_path / "o.csv"
    )
    assert code == 2 and "--item-col" in err and "--history-col" in err
    model, tokenizer = loaded
    with pytest.raises(InputError, match=r"\.parquet or \.csv"):
        recommend_to_file(
            S2GRRecommender(model, tokenizer), ["a"], [["1"]], tmp_path / "out.xlsx", progress=False
        )
    assert not any(tmp_path.glob("o.csv*")) and not (tmp_path / "out.xlsx").exists()  # nothing half-written


def test_titles_file_is_optional_and_a_broken_one_is_named(tmp_path: Path) -> None:
    assert load_titles(tmp_path) is None
    (tmp_path / TITLES_FILE).write_text('{"1": "Toy Story"')
    with pytest.raises(CorruptFileError, match=TITLES_FILE):
        load_titles(tmp_path)
    items = pd.DataFrame({"item_id": [1, 2], "text": ["a. b", "c"], "title": ["A", ""]})
    assert item_titles(items) == {"1": "A"}  # an empty title is no title
    assert item_titles(items.drop(columns="title")) == {"1": "a. b", "2": "c"}
