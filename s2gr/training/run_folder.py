"""A run folder belongs to one run: a fresh run claims an empty folder, a resumed one must have the same
settings, and the final files appear whole or not at all.

- Fresh run: the folder must be new or empty. A folder holding another run is refused with how to resume it
  or start elsewhere; ``overwrite=True`` (``s2gr train --overwrite``) deletes that run first, and only a
  folder that looks like a run folder (``run_config.yaml``, ``checkpoint-*`` or ``model/``), so that a
  mistyped ``--output-dir`` never empties an unrelated folder.
- Resume: the folder's ``run_config.yaml`` must equal the current settings in every field that changes the
  result (all but ``RESUME_FREE``); the differences are listed. A finished run (``model/`` present) has
  nothing to resume. A folder without a complete checkpoint starts afresh.
- Final files: ``model/`` is written into a hidden sibling and renamed into place
  (``s2gr.data.assets.write_folder_atomically``); ``run.json`` and ``metrics.json`` through a temporary file
  and ``os.replace`` (``write_atomically``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from ..data.assets import write_atomically
from ..errors import RunFolderError
from .config import RunConfig

CONFIG_FILE = "run_config.yaml"
MODEL_DIR = "model"
CATALOG_DIR = "catalog"
CHECKPOINT_PREFIX = "checkpoint"
# Settings that change how a run is watched or where it writes, not the weights it trains.
RESUME_FREE = frozenset(
    {"output_dir", "time_budget_minutes", "eval_batch_size", "logging_steps", "cache_dir", "report_to"}
)


def _run_markers(folder: Path) -> list[str]:
    """Entries that show a run lives in ``folder``."""
    names = sorted(p.name for p in folder.glob(f"{CHECKPOINT_PREFIX}-*"))
    return [name for name in (CONFIG_FILE, MODEL_DIR) if (folder / name).exists()] + names


def last_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` whose ``trainer_state.json`` is complete JSON: the Trainer writes that file
    last (and not atomically), so a process killed while saving leaves an incomplete folder, or an empty or
    cut-short state file, that must not be resumed from."""
    complete = [
        path
        for path in folder.glob(f"{CHECKPOINT_PREFIX}-*")
        if path.name.removeprefix(f"{CHECKPOINT_PREFIX}-").isdigit()
        and _complete_json(path / "trainer_state.json")
    ]
    return max(complete, key=lambda path: int(path.name.rsplit("-", 1)[1]), default=None)


def _complete_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def setting_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``field: saved -> current`` for every result-changing setting that differs (nested keys dotted)."""
    old, new = _flatten(saved), _flatten(current)
    keys = sorted((old.keys() | new.keys()) - RESUME_FREE)
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in keys if old.get(key) != new.get(key)]


def prepare_run_folder(config: RunConfig, resume: bool = False, overwrite: bool = False) -> Path | None:
    """Check (and with ``overwrite`` clear) ``config.output_dir`` before any work; returns the checkpoint
    to resume from, or None for a fresh start. Raises ``RunFolderError`` saying what to do instead."""
    folder = Path(config.output_dir)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"output_dir {folder} is a file, not a folder: choose another output_dir.")
    if resume and overwrite:
        raise RunFolderError(
            "resume and overwrite exclude each other: resume continues the run, overwrite deletes it."
        )
    if resume:
        return _resumable_checkpoint(folder, config)
    entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if not entries:
        return None
    markers = _run_markers(folder)
    if overwrite and markers:
        shutil.rmtree(folder)
        print(f"--overwrite: deleted the earlier run in {folder} ({', '.join(markers[:4])}...)")
        return None
    if markers:
        raise RunFolderError(
            f"{folder} already holds a run ({', '.join(markers[:4])}). To continue it with the same settings, "
            "add --resume; to start a new run, choose another --output-dir, or add --overwrite to delete it."
        )
    raise RunFolderError(
        f"{folder} is not empty ({', '.join(entries[:4])}) and holds no run: choose a new or empty --output-dir."
    )


def _resumable_checkpoint(folder: Path, config: RunConfig) -> Path | None:
    if (folder / MODEL_DIR).exists():
        raise RunFolderError(
            f"{folder} holds a finished run ({MODEL_DIR}/ is written): nothing to resume. Train further with "
            "`s2gr finetune`, or start a new run in another --output-dir."
        )
    checkpoint = last_checkpoint(folder) if folder.is_dir() else None
    saved_file = folder / CONFIG_FILE
    if checkpoint is not None and not saved_file.is_file():
        raise RunFolderError(
            f"{folder} has {checkpoint.name} but no {CONFIG_FILE}: its settings are unknown, so it cannot be "
            "resumed safely. Start a new run in another --output-dir."
        )
    if saved_file.is_file():
        saved = yaml.safe_load(saved_file.read_text()) or {}
        differences = setting_differences(saved, config.to_dict())
        if differences:
            raise RunFolderError(
                f"--resume: the run in {folder} was started with other settings:\n  "
                + "\n  ".join(differences)
                + f"\nResume with the run's own settings (--config {saved_file}) or start a new run in "
                "another --output-dir."
            )
    if checkpoint is None:
        print(f"--resume: no complete checkpoint in {folder} yet; starting from the beginning.")
    return checkpoint


def write_json(path: Path, values: Any) -> None:
    write_atomically(path, lambda stream: stream.write(json.dumps(values, indent=2).encode()))
