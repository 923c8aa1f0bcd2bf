"""Batch recommendation: many users' histories in, one ranked table on disk out (`s2gr recommend --output`).

Input, one of:
* a histories file (`read_history_file`): CSV/TSV, Parquet or JSON Lines with either one row per event
  (user and item columns, and a timestamp column when present: events are then ordered by it, ties and files
  without one keep file order), or one row per user with a list column of item ids, oldest first (a Parquet or
  JSON list; in CSV the ids separated by spaces);
* every user of a data set (`dataset_histories`): each user's whole known history, training items then the
  validation and test items, as `s2gr recommend --user` reads it.

Output (`recommend_to_file`): Parquet or CSV, one row per recommendation: `user_id, rank, item_id, score`
(score = the beam's log-probability) and `title` when item titles are known. Users are ranked `batch_size` at a
time and each batch is appended to the file at once, so memory holds the input's ids and one batch of results,
whatever the number of users. The table is written to a temporary file next to the output and renamed at the
end: an interrupted run leaves the earlier file (if any) untouched and no partial table.

Items outside the model's catalog are dropped from the histories and counted; a user left with no known item
gets no rows (counted too); a user's own items are excluded unless `exclude_seen=False`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .data.assets import write_atomically
from .data.readers import existing_file, parse_timestamps, read_table
from .errors import InputError
from .recommender import DEFAULT_BATCH_SIZE, S2GRRecommender

OUTPUT_FORMATS = (".parquet", ".csv")


@dataclass
class BatchSummary:
    """What a batch run did; `unknown_items` counts events (an item may count once per user)."""

    users: int
    users_without_known_items: int
    unknown_items: int
    rows: int
    seconds: float

    @property
    def users_per_second(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        return {**asdict(self), "users_per_second": self.users_per_second}


def read_history_file(
    path: str | os.PathLike,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    history_col: str = "history",
) -> tuple[list[str], list[list[str]]]:
    """Users (file order of first appearance) and their histories, oldest first, from an events or a
    histories file (see the module docstring)."""
    frame = read_table(existing_file(path, "--input"))
    if user_col not in frame:
        raise InputError(
            f"{path}: no user column {user_col!r}; found {list(frame.columns)} (set --user-col)."
        )
    if history_col in frame:
        users = frame[user_col].astype(str).tolist()
        histories = [_as_id_list(value) for value in frame[history_col]]
        if len(set(users)) != len(users):
            raise InputError(
                f"{path}: one row per user expected with a {history_col!r} column; users repeat."
            )
        return users, histories
    if item_col not in frame:
        raise InputError(
            f"{path}: needs an item column {item_col!r} (one row per event) or a {history_col!r} list column "
            f"(one row per user); found {list(frame.columns)} (set --item-col or --history-col)."
        )
    frame = frame.assign(**{user_col: frame[user_col].astype(str), item_col: frame[item_col].astype(str)})
    if time_col in frame:  # numbers, or dates (ISO 8601 ...), as the training data reader reads them
        order = parse_timestamps(frame[time_col], time_col, Path(path)).argsort(
            kind="stable"
        )  # ties: file order
        frame = frame.iloc[order]
    grouped = frame.groupby(user_col, sort=False)[item_col].agg(list)
    first_seen = pd.unique(frame.sort_index()[user_col])
    return list(first_seen), [grouped[user] for user in first_seen]


def dataset_histories(data) -> tuple[list[str], list[list[str]]]:
    """Every user of a `RecData` with everything known about them: training items, validation, test item."""
    splits = data.splits
    histories = [
        [*train, validation, test]
        for train, validation, test in zip(
            splits["train"]["item_ids"], splits["validation"]["target"], splits["test"]["target"], strict=True
        )
    ]
    return list(splits["train"]["user_id"]), histories


def recommend_to_file(
    recommender: S2GRRecommender,
    users: Sequence[str],
    histories: Sequence[Sequence[str]],
    output: str | os.PathLike,
    top_k: int = 10,
    num_beams: int | None = None,
    exclude_seen: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    titles: dict[str, str] | None = None,
    progress: bool = True,
    epsilon: float = 0.0,
) -> BatchSummary:
    """Rank the catalog for every user and write the table to `output` (.parquet or .csv); `epsilon`: the
    share of each top-k cold items may take (`S2GRRecommender.recommend`)."""
    output = Path(output)
    if output.suffix not in OUTPUT_FORMATS:
        raise InputError(f"{output}: the output must end in {' or '.join(OUTPUT_FORMATS)}.")
    if len(users) != len(histories):
        raise InputError(f"{len(users)} users but {len(histories)} histories.")
    if top_k < 1 or batch_size < 1:
        raise InputError(f"top_k and batch_size must be >= 1, got {top_k} and {batch_size}.")
    known = set(recommender.tokenizer.item_ids)
    started = time.perf_counter()
    counts = {"unknown": 0, "empty": 0, "rows": 0}
    search = {} if num_beams is None else {"num_beams": num_beams}

    def tables() -> Iterator[pa.Table]:
        bar = tqdm(total=len(users), desc="recommending", unit="user", disable=not progress)
        for start in range(0, len(users), batch_size):
            stop = start + batch_size
            batch_users, kept, unknown = known_histories(users[start:stop], histories[start:stop], known)
            counts["unknown"] += unknown
            counts["empty"] += min(batch_size, len(users) - start) - len(kept)
            rankings = (
                recommender.recommend(
                    kept,
                    top_k=top_k,
                    exclude=kept if exclude_seen else None,
                    batch_size=batch_size,
                    return_scores=True,
                    epsilon=epsilon,
                    **search,
                )
                if kept
                else []
            )
            table = _ranking_table(batch_users, rankings, titles)
            counts["rows"] += table.num_rows
            bar.update(min(batch_size, len(users) - start))
            yield table
        bar.close()

    _write_tables(tables(), output, with_titles=titles is not None)
    return BatchSummary(
        users=len(users),
        users_without_known_items=counts["empty"],
        unknown_items=counts["unknown"],
        rows=counts["rows"],
        seconds=time.perf_counter() - started,
    )


def known_histories(
    users: Sequence[str], histories: Sequence[Sequence[str]], known: set[str]
) -> tuple[list[str], list[list[str]], int]:
    """The users left with a known item, their histories without unknown items, and how many were dropped."""
    kept_users, kept, unknown = [], [], 0
    for user, history in zip(users, histories, strict=True):
        cleaned = [item for item in map(str, history) if item in known]
        unknown += len(history) - len(cleaned)
        if cleaned:
            kept_users.append(str(user))
            kept.append(cleaned)
    return kept_users, kept, unknown


def _ranking_table(users: list[str], rankings: list, titles: dict[str, str] | None) -> pa.Table:
    columns: dict[str, list] = {"user_id": [], "rank": [], "item_id": [], "score": []}
    for user, ranking in zip(users, rankings, strict=True):
        for rank, (item, score) in enumerate(ranking, start=1):
            columns["user_id"].append(user)
            columns["rank"].append(rank)
            columns["item_id"].append(item)
            columns["score"].append(score)
    arrays = {
        "user_id": pa.array(columns["user_id"], pa.string()),
        "rank": pa.array(columns["rank"], pa.int32()),
        "item_id": pa.array(columns["item_id"], pa.string()),
        "score": pa.array(columns["score"], pa.float32()),
    }
    if titles is not None:
        arrays["title"] = pa.array([titles.get(item, "") for item in columns["item_id"]], pa.string())
    return pa.table(arrays)


def _write_tables(tables: Iterator[pa.Table], output: Path, with_titles: bool) -> None:
    """Append each table to `output` as it comes, through a temporary file renamed at the end."""
    names = ["user_id", "rank", "item_id", "score"] + (["title"] if with_titles else [])
    schema = pa.schema(
        [
            (name, pa.int32() if name == "rank" else pa.float32() if name == "score" else pa.string())
            for name in names
        ]
    )
    output.parent.mkdir(parents=True, exist_ok=True)

    def write(stream) -> None:
        if output.suffix == ".parquet":
            with pq.ParquetWriter(stream, schema) as writer:
                for table in tables:
                    writer.write_table(table)
            return
        header = True
        for table in tables:
            text = table.to_pandas().to_csv(index=False, header=header)
            stream.write(text.encode("utf-8"))
            header = False
        if header:  # no user had a known item: still a table, with its header
            stream.write((",".join(names) + "\n").encode("utf-8"))

    write_atomically(output, write)


def _as_id_list(value) -> list[str]:
    """A history cell: a list (Parquet/JSON) or a string of space-separated ids (CSV), or a JSON list string."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return [str(item) for item in json.loads(text)]
        return text.split()
    if value is None:
        return []
    return [str(item) for item in list(value)]
