"""Item titles saved beside a model (`item_titles.json`), so recommendations read as titles wherever the model
goes (batch files, the HTTP server, a Hub download) without the training data.

The title is the item table's title column (`title`, `movie_title` or `name`, the first present), else its text.
The file is a JSON object item id -> title; items without one are absent. It is optional: a folder without
it (an older run, a model saved by hand) simply has no titles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import corrupt_file

TITLES_FILE = "item_titles.json"
TITLE_COLUMNS = ("title", "movie_title", "name")


def item_titles(items) -> dict[str, str]:
    """Item id -> title of an item table (`RecData.items`, a `datasets.Dataset` or a DataFrame)."""
    columns = getattr(items, "column_names", None) or list(items.columns)
    column = next((name for name in TITLE_COLUMNS if name in columns), "text")
    if column not in columns:
        return {}
    return {
        str(item): str(title) for item, title in zip(items["item_id"], items[column], strict=True) if title
    }


def save_titles(folder: str | os.PathLike, titles: dict[str, str]) -> None:
    (Path(folder) / TITLES_FILE).write_text(json.dumps(titles, ensure_ascii=False), encoding="utf-8")


def load_titles(folder: str | os.PathLike) -> dict[str, str] | None:
    """The titles saved in a model folder, or None when it has none."""
    path = Path(folder) / TITLES_FILE
    if not path.is_file():
        return None
    try:
        titles = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise corrupt_file(path, error) from None
    if not isinstance(titles, dict):
        raise corrupt_file(path, ValueError("expected a JSON object of item id -> title"))
    return {str(key): str(value) for key, value in titles.items()}
