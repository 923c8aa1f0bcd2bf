"""Readers that turn interaction logs and item metadata files into two canonical tables.

Every reader returns ``(interactions, items)`` as pandas DataFrames:

- ``interactions``: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (float64), one row per
  interaction, in source-file order (that order is the tie-break for equal timestamps);
  timestamps are numbers as given (e.g. Unix seconds) or date-times (ISO 8601 strings such as
  ``2024-03-01T12:00:00`` or ``2024-03-01 12:00:00+01:00``, or a datetime64 Parquet column) turned
  into Unix seconds (UTC; a time without an offset is taken as UTC);
- ``items``: ``item_id`` (str), ``text`` (str, what the text encoder reads) and any metadata
  columns, or ``None`` when no metadata file was given (the item id then serves as text).

Supported sources: RecBole atomic files (``.inter`` + ``.item``), a generic interactions file
(CSV, TSV, Parquet, JSON Lines, column names configurable) plus an optional item metadata file,
and Amazon Reviews 2014/2018 (``reviews_<Cat>_5.json.gz`` + ``meta_<Cat>.json.gz``, meta lines
may be Python dict reprs) and 2023 (JSON Lines with ``parent_asin``).

A delimited text file (``.csv``, ``.tsv``/``.tab``, ``.txt``, optionally ``.gz``) is split on its
extension's delimiter (comma; tab for the others) unless its header line lacks that character: then
the delimiter is detected on the header line (``csv.Sniffer``, one of ``, ; TAB |``), so a
semicolon-separated ``.csv`` reads right.

Rows whose user id, item id or timestamp is missing (null, NaN, empty or only spaces) are an error,
a ``DataFormatError`` naming the column, the count and the first rows (and their line numbers in a
text file): a blank id would otherwise become a real user or item ``""``.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, MissingFileError


class DataFormatError(InputError):
    """An input file is missing, empty, or not in the format it claims to be."""


@dataclass(frozen=True)
class Columns:
    """Column names of a generic interactions file and of its item metadata file."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    item_key: str = "item_id"  # the item id column of the metadata file
    text: tuple[str, ...] = ()  # metadata columns joined into the item text; () = all but the key


def read_interactions(
    source, items=None, columns: Columns = Columns()
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Interactions (and item metadata) from a file (``read_interactions_file``), a ``datasets.Dataset`` or
    ``DatasetDict`` (its splits concatenated in order), a folder written by ``save_to_disk``, or a pandas
    DataFrame, with the user, item and timestamp columns named by ``columns``; ``items`` likewise (or a file)."""
    frame, label = _in_memory(source)
    if frame is None:
        return read_interactions_file(source, items, columns)
    missing = [name for name in (columns.user, columns.item, columns.timestamp) if name not in frame]
    if missing:
        raise DataFormatError(
            f"{label}: missing column(s) {missing}; found {list(frame.columns)}. Name the columns with "
            "Columns(user=..., item=..., timestamp=...) (--user-col/--item-col/--time-col)."
        )
    interactions = _canonical(frame, columns.user, columns.item, columns.timestamp, Path(label))
    if items is None:
        return interactions, None
    item_frame, item_label = _in_memory(items)
    if item_frame is None:
        return interactions, read_item_file(items, columns)
    return interactions, _item_table(item_frame, columns.item_key, columns.text, item_label)


def _in_memory(source) -> tuple[pd.DataFrame | None, str]:
    """(frame, a label for messages) of an in-memory or saved ``datasets`` source; (None, "") for a file path."""
    from datasets import Dataset, DatasetDict, load_from_disk

    if isinstance(source, (str, Path)) and Path(source).expanduser().is_dir():
        folder = Path(source).expanduser()
        if not any(
            (folder / name).is_file() for name in ("dataset_info.json", "dataset_dict.json", "state.json")
        ):
            raise DataFormatError(
                f"{folder} is a folder but no `datasets` folder (save_to_disk writes dataset_info.json or "
                "dataset_dict.json): pass a file, or a folder written by Dataset.save_to_disk."
            )
        return _in_memory(load_from_disk(str(folder)))[0], str(folder)
    if isinstance(source, pd.DataFrame):
        return source, "the DataFrame"
    if isinstance(source, Dataset):
        return source.to_pandas(), "the Dataset"
    if isinstance(source, DatasetDict):
        if not source:
            raise DataFormatError("the DatasetDict has no splits.")
        return pd.concat(
            [split.to_pandas() for split in source.values()], ignore_index=True
        ), "the DatasetDict"
    return None, ""


def read_interactions_file(
    path: str | Path, items_path: str | Path | None = None, columns: Columns = Columns()
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Read a user's own files; the format comes from the extension (or content, for Amazon)."""
    path = existing_file(path)
    if path.suffix == ".inter":
        return read_recbole(path, items_path)
    if _is_amazon(path):
        return read_amazon(path, items_path)
    frame = read_table(path)
    missing = [name for name in (columns.user, columns.item, columns.timestamp) if name not in frame]
    if missing:
        raise DataFormatError(
            f"{path}: missing column(s) {missing}; found {list(frame.columns)}. Name the columns with "
            "--user-col/--item-col/--time-col (or Columns(user=..., item=..., timestamp=...))."
            + _delimiter_hint(frame)
        )
    interactions = _canonical(frame, columns.user, columns.item, columns.timestamp, path)
    items = None
    if items_path is not None:
        items = read_item_file(items_path, columns)
    return interactions, items


def read_item_file(path: str | Path, columns: Columns = Columns()) -> pd.DataFrame:
    """An item metadata file as the item table: ``item_id``, ``text`` (the encoder's input, built as training
    builds it: the movie recipe for a RecBole ``.item`` file, else the ``columns.text`` columns) and its columns."""
    path = existing_file(path)
    if path.suffix == ".item":
        return _item_table(_read_recbole_table(path), "item_id", (), path, recipe=_movie_text)
    return _item_table(read_table(path), columns.item_key, columns.text, path)


def read_recbole(
    inter_path: str | Path, item_path: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """RecBole atomic files: tab separated with typed headers such as ``user_id:token``."""
    inter_path = existing_file(inter_path)
    frame = _read_recbole_table(inter_path)
    interactions = _canonical(frame, "user_id", "item_id", "timestamp", inter_path)
    if item_path is None and inter_path.with_suffix(".item").is_file():
        item_path = inter_path.with_suffix(".item")
    items = None if item_path is None else read_item_file(item_path)
    return interactions, items


def read_amazon(
    reviews_path: str | Path, meta_path: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Amazon Reviews 2014/2018 (``reviewerID``/``asin``/``unixReviewTime``) or 2023 (``user_id``/
    ``parent_asin``/``timestamp`` in ms). Item text: title, brand, categories, price."""
    reviews_path = existing_file(reviews_path)
    records = list(_json_records(reviews_path))
    if not records:
        raise DataFormatError(f"{reviews_path}: the file holds no reviews.")
    frame = pd.DataFrame.from_records(records)
    if {"reviewerID", "asin", "unixReviewTime"} <= set(frame.columns):
        interactions = _canonical(frame, "reviewerID", "asin", "unixReviewTime", reviews_path)
    elif {"user_id", "timestamp"} <= set(frame.columns) and ({"parent_asin", "asin"} & set(frame.columns)):
        item_column = "parent_asin" if "parent_asin" in frame else "asin"
        interactions = _canonical(frame, "user_id", item_column, "timestamp", reviews_path)
        interactions["timestamp"] = interactions["timestamp"] / 1000.0  # 2023 stores milliseconds
    else:
        raise DataFormatError(
            f"{reviews_path}: not an Amazon reviews file (need reviewerID/asin/unixReviewTime for "
            f"2014/2018 or user_id/parent_asin/timestamp for 2023); found {sorted(frame.columns)}."
        )
    items = None
    if meta_path is not None:
        meta = pd.DataFrame.from_records(list(_json_records(existing_file(meta_path))))
        key = "parent_asin" if "parent_asin" in meta else "asin"
        items = _item_table(meta, key, (), meta_path, recipe=_amazon_text)
    return interactions, items


# --- item text recipes -------------------------------------------------------------------------


def _movie_text(row: dict) -> str:
    """MovieLens: ``Title (year). Genres: A, B.`` (RecBole splits genres by spaces)."""
    title = str(row.get("movie_title", row.get("item_id", ""))).strip()
    year = pd.to_numeric(row.get("release_year"), errors="coerce")  # ML-100K has 'unkonwn' years
    if not pd.isna(year) and f"({int(year)})" not in title:
        title = f"{title} ({int(year)})"
    genres = str(row.get("class", row.get("genre", "")) or "").split()
    return f"{title}. Genres: {', '.join(genres)}." if genres else f"{title}."


def _amazon_text(row: dict) -> str:
    parts = []
    if _present(row.get("title")):
        parts.append(f"Title: {row['title']}")
    brand = row.get("brand") if _present(row.get("brand")) else row.get("store")
    if _present(brand):
        parts.append(f"Brand: {brand}")
    categories = _flatten(row.get("categories") if _present(row.get("categories")) else row.get("category"))
    if categories:
        parts.append("Categories: " + ", ".join(dict.fromkeys(categories)))
    if _present(row.get("price")):
        parts.append(f"Price: {row['price']}")
    return ". ".join(str(part) for part in parts) + "."


def _generic_text(row: dict, text_columns: Sequence[str]) -> str:
    return ". ".join(f"{name}: {row[name]}" for name in text_columns if _present(row.get(name)))


# --- helpers -----------------------------------------------------------------------------------


def existing_file(path: str | Path, flags: str = "--interactions/--items") -> Path:
    """The path of a readable, non-empty file; errors name the command-line ``flags`` it came from."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file. Check the path ({flags}).")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: the file is empty.")
    return path


def read_table(path: Path) -> pd.DataFrame:
    """A CSV/TSV (delimiter detected, every cell a string), Parquet or JSON (Lines) file as a frame."""
    name = path.name.removesuffix(".gz")
    try:
        if name.endswith(".parquet"):
            frame = pd.read_parquet(path)
        elif name.endswith((".jsonl", ".json")):
            frame = pd.DataFrame.from_records(list(_json_records(path)))
        elif name.endswith((".tsv", ".tab", ".txt", ".csv")):
            default = "," if name.endswith(".csv") else "\t"
            frame = pd.read_csv(path, sep=_delimiter(path, default), dtype=str, keep_default_na=False)
        else:
            raise DataFormatError(
                f"{path}: unknown format; use .csv, .tsv, .parquet, .jsonl/.json(.gz) or RecBole .inter/.item."
            )
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        if isinstance(error, DataFormatError):
            raise
        raise DataFormatError(f"{path}: could not be parsed as {path.suffix} ({error}).") from error
    if frame.empty:
        raise DataFormatError(f"{path}: the file has a header but no rows.")
    return frame


def _read_recbole_table(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    if frame.empty:
        raise DataFormatError(f"{path}: the file has a header but no rows.")
    frame.columns = [str(name).split(":")[0] for name in frame.columns]  # drop RecBole type suffixes
    return frame


def _json_records(path: Path) -> Iterator[dict]:
    """JSON Lines, a JSON array, or lines of Python dict reprs (Amazon 2014 metadata)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        first = handle.read(1)
        handle.seek(0)
        if first == "[":
            yield from json.load(handle)
            return
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                try:
                    yield ast.literal_eval(line)
                except (ValueError, SyntaxError) as error:
                    raise DataFormatError(
                        f"{path}:{number}: neither JSON nor a Python dict literal."
                    ) from error


def _is_amazon(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    if not name.endswith((".json", ".jsonl")):
        return False
    first = next(_json_records(path), {})
    return "reviewerID" in first or "parent_asin" in first or ("asin" in first and "rating" in first)


def _open_text(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", encoding="utf-8", errors="replace")


def _delimiter(path: Path, default: str) -> str:
    """The extension's delimiter, unless the header line lacks it and ``csv.Sniffer`` sees another."""
    with _open_text(path) as handle:
        header = handle.readline()
    if default in header:
        return default
    try:
        return csv.Sniffer().sniff(header, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return default


DELIMITERS = ",;\t|"


def _delimiter_hint(frame: pd.DataFrame) -> str:
    """For a header read as one column that holds another delimiter: say which, and what to do."""
    if len(frame.columns) != 1:
        return ""
    seen = [mark for mark in DELIMITERS if mark in str(frame.columns[0])]
    if not seen:
        return ""
    return (
        f" The header looks {seen[0]!r}-separated: save the file comma-separated as .csv, or "
        "tab-separated with a .tsv extension."
    )


def _line_numbers(path: Path, rows: int) -> np.ndarray | None:
    """1-based file line of each row of a text file, or None when that is not clear (Parquet, a JSON
    array, a CSV field spanning lines). Only called to explain an error, so the second read is free."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        return None
    header = 0 if name.endswith((".json", ".jsonl")) else 1
    try:
        with _open_text(path) as handle:
            if handle.read(1) == "[":
                return None
            handle.seek(0)
            lines = [number for number, line in enumerate(handle, start=1) if line.strip()]
    except OSError:
        return None
    if len(lines) != rows + header:
        return None
    return np.asarray(lines[header:], dtype=np.int64)


def _where(path: Path, rows: int, positions: np.ndarray, shown: int = 5) -> str:
    """``rows 2, 7 (lines 3, 8 of the file)``: 1-based data rows (header not counted), the first ``shown``."""
    first, more = positions[:shown], (", …" if len(positions) > shown else "")
    plural = "s" if len(positions) > 1 else ""
    text = f"row{plural} {', '.join(map(str, first + 1))}{more}"
    lines = _line_numbers(path, rows)
    if lines is not None:
        text += f" (line{plural} {', '.join(map(str, lines[first]))}{more} of the file)"
    return text


def _missing(values: pd.Series) -> np.ndarray:
    """True where a cell is null/NaN or a string that is empty or only whitespace."""
    missing = values.isna().to_numpy(dtype=bool).copy()
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        try:
            stripped = values.str.strip()  # NaN for a non-string cell of an object column
        except AttributeError:  # an object column without strings (e.g. all integers)
            return missing
        missing |= stripped.eq("").fillna(False).to_numpy(dtype=bool)
    return missing


def _check_missing(frame: pd.DataFrame, roles: dict[str, str], path: Path) -> None:
    problems = []
    for column, role in roles.items():
        positions = np.flatnonzero(_missing(frame[column]))
        if len(positions):
            where = _where(path, len(frame), positions)
            count = f"{len(positions):,} row{'s' if len(positions) > 1 else ''}"
            problems.append(f"no {role} in column {column!r} on {count}: {where}")
    if problems:
        raise DataFormatError(
            f"{path}: " + "; ".join(problems) + ". Drop those rows or fill in the missing values, then load "
            "the file again (a blank id would become a real user or item, a blank time cannot be ordered)."
        )


def parse_timestamps(values: pd.Series, column: str, path: Path) -> np.ndarray:
    """Numbers as given, or date-times (ISO 8601 text, datetime64) as Unix seconds (UTC), as float64."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return _unix_seconds(pd.to_datetime(values, utc=True))
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64").to_numpy()
    numbers = pd.to_numeric(values, errors="coerce")
    if not numbers.isna().any():
        return numbers.astype("float64").to_numpy()
    try:
        dates = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    except (TypeError, ValueError):
        dates = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if not dates.isna().any():
        return _unix_seconds(dates)
    bad = (numbers.isna() if numbers.notna().sum() >= dates.notna().sum() else dates.isna()).to_numpy()
    position = int(bad.argmax())
    lines = _line_numbers(path, len(values))
    where = f" (line {lines[position]} of the file)" if lines is not None else ""
    raise DataFormatError(
        f"{path}: timestamp column {column!r} holds a non-numeric value {values.iloc[position]!r} "
        f"(row {position + 1}) that is not an ISO 8601 date-time either{where}. Timestamps must be numbers "
        "(e.g. Unix seconds) or ISO 8601 date-times such as '2024-03-01T12:00:00' or "
        "'2024-03-01 12:00:00+01:00'; fix or drop that row."
    )


def _unix_seconds(dates: pd.Series) -> np.ndarray:
    return ((dates - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).astype("float64").to_numpy()


def _canonical(frame: pd.DataFrame, user: str, item: str, timestamp: str, path: Path) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    _check_missing(frame, {user: "user id", item: "item id", timestamp: "timestamp"}, path)
    return pd.DataFrame(
        {
            "user_id": frame[user].astype(str).to_numpy(),
            "item_id": frame[item].astype(str).to_numpy(),
            "timestamp": parse_timestamps(frame[timestamp], timestamp, path),
        }
    )


def _item_table(
    frame: pd.DataFrame, key: str, text_columns: Sequence[str], path: str | Path, recipe=None
) -> pd.DataFrame:
    if key not in frame:
        raise DataFormatError(
            f"{path}: item metadata needs an item id column {key!r}; found {list(frame.columns)} "
            "(set it with --item-key-col)."
        )
    frame = frame.drop_duplicates(subset=[key], keep="first").reset_index(drop=True)
    columns = list(text_columns) or [name for name in frame.columns if name != key]
    missing = [name for name in columns if name not in frame]
    if missing:
        raise DataFormatError(f"{path}: text column(s) {missing} not found; found {list(frame.columns)}.")
    records = frame.to_dict("records")
    texts = [recipe(row) if recipe else _generic_text(row, columns) for row in records]
    items = frame.drop(columns=[key]).map(_as_text)
    items.insert(0, "item_id", frame[key].astype(str).to_numpy())
    items.insert(1, "text", texts)
    return items


def _as_text(value) -> str:
    """Metadata cells become strings so Arrow gets one type per column whatever the source."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _present(value) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and pd.isna(value):
        return False
    return bool(value) if isinstance(value, (str, list, tuple)) else True


def _flatten(value) -> list[str]:
    if not _present(value):
        return []
    if isinstance(value, str):
        return [value]
    return [leaf for element in value for leaf in _flatten(element)]
