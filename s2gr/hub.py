"""Push a saved S2GR checkpoint folder to the Hugging Face Hub.

`push_checkpoint(folder, repo_id)` checks that the folder is loadable from the Hub (config, safetensors weights,
tokenizer files, the custom code files its `auto_map`s name, a model card), creates the repo if needed and
uploads the folder in one commit. A README.md is generated from `run.json`/`metrics.json` when the folder has
none, in a temporary copy: the user's folder is only ever read. Any network, HTTP or authentication failure
is raised as `HubPushError`, saying what happened and what to check.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import httpx
from transformers.dynamic_module_utils import get_relative_imports

from .errors import InputError, S2GRError
from .hub_cards import build_model_card

# Tokenizer files of which at least one must sit next to tokenizer_config.json (S2GR writes vocab.json).
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model")
# Local byproducts that must not reach the Hub (importing custom code files locally leaves __pycache__).
IGNORE_PATTERNS = ["__pycache__/*", "*/__pycache__/*", "*.pyc"]
DEFAULT_COMMIT_MESSAGE = "Upload S2GR checkpoint"


class HubPushError(S2GRError, RuntimeError):
    """Pushing a checkpoint to the Hub failed; the local folder is unchanged."""


def push_checkpoint(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    endpoint: str | None = None,
) -> str:
    """Upload a checkpoint folder to the Hub repo `repo_id` (created if missing) and return the commit URL.

    Args:
        folder: a folder written by `save_pretrained` of the model and the tokenizer; it needs config.json,
            model.safetensors (or a safetensors index with its shards), tokenizer_config.json with a vocabulary
            file, and README.md or a `run.json` to build the card from (`metrics.json` is added as its metrics).
        repo_id: "namespace/name" on the Hub.
        token: a write token; default the saved login or `HF_TOKEN`.
        private: create the repo as private (an existing repo keeps its visibility).
        commit_message: message of the upload commit.
        endpoint: Hub URL; default `HF_ENDPOINT` or https://huggingface.co.

    Returns:
        The URL of the commit, ending with its id.

    Raises:
        ValueError: the folder is not a complete checkpoint (nothing is sent).
        HubPushError: the Hub could not be reached, refused the token, or failed.
    """
    folder = Path(folder)
    check_checkpoint(folder)
    api = HfApi(endpoint=endpoint, token=token)
    with _upload_dir(folder, repo_id) as upload_dir, _hub_errors(repo_id, folder, api.endpoint):
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=upload_dir,
            repo_id=repo_id,
            commit_message=commit_message,
            ignore_patterns=IGNORE_PATTERNS,
        )
    return commit.commit_url


def check_checkpoint(folder: Path) -> None:
    """Raise `ValueError` listing every file the folder lacks to be loaded from the Hub."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    missing = [
        *([] if (folder / "config.json").is_file() else ["config.json"]),
        *_missing_weights(folder),
        *_missing_tokenizer_files(folder),
        *_missing_code_files(folder),
        *_missing_card(folder),
    ]
    if missing:
        raise InputError(
            f"{folder} is not a complete checkpoint; missing: {', '.join(missing)}. A checkpoint needs what "
            "model.save_pretrained and tokenizer.save_pretrained write, the .py files its auto_map names, and "
            "README.md or run.json."
        )


def _missing_card(folder: Path) -> list[str]:
    if (folder / "README.md").is_file() or (folder / "run.json").is_file():
        return []
    return ["README.md (or run.json to generate it from)"]


def _missing_weights(folder: Path) -> list[str]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [shard for shard in shards if not (folder / shard).is_file()]
    return [] if (folder / "model.safetensors").is_file() else ["model.safetensors"]


def _missing_tokenizer_files(folder: Path) -> list[str]:
    missing = [] if (folder / "tokenizer_config.json").is_file() else ["tokenizer_config.json"]
    if not any((folder / name).is_file() for name in TOKENIZER_VOCAB_FILES):
        missing.append(f"a tokenizer vocabulary ({' or '.join(TOKENIZER_VOCAB_FILES)})")
    return missing


def _missing_code_files(folder: Path) -> list[str]:
    """Custom code files named by `auto_map` (for `trust_remote_code=True`), and the modules those import
    relatively (transformers fetches them too), that are not in the folder."""
    modules: set[str] = set()
    for name in ("config.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            modules |= _auto_map_modules(json.loads((folder / name).read_text()).get("auto_map") or {})
    pending, seen = list(modules), set(modules)
    while pending:
        path = folder / f"{pending.pop()}.py"
        if path.is_file():
            new = set(get_relative_imports(path)) - seen
            seen |= new
            pending += new
    return sorted(f"{module}.py" for module in seen if not (folder / f"{module}.py").is_file())


def _auto_map_modules(auto_map: dict[str, Any]) -> set[str]:
    """Module names of `auto_map` entries such as "configuration_s2gr.S2GRConfig" or, for tokenizers,
    [slow, fast] pairs; "other/repo--module.Class" entries live in another repo and are skipped."""
    references: list[str] = []
    for value in auto_map.values():
        references += value if isinstance(value, list) else [value]
    return {ref.rsplit(".", 1)[0] for ref in references if isinstance(ref, str) and "--" not in ref}


@contextlib.contextmanager
def _upload_dir(folder: Path, repo_id: str) -> Iterator[Path]:
    """The folder itself when it has a card; otherwise a temporary copy with a card generated from run.json."""
    if (folder / "README.md").is_file():
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="s2gr-push-") as tmp:
        staged = Path(tmp) / folder.name
        shutil.copytree(folder, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        build_model_card(_run_summary(folder, repo_id)).save(staged / "README.md")
        yield staged


def _run_summary(folder: Path, repo_id: str) -> dict[str, Any]:
    run = json.loads((folder / "run.json").read_text())
    if (folder / "metrics.json").is_file():
        run["metrics"] = json.loads((folder / "metrics.json").read_text())
    run["repo_id"] = repo_id  # the card's usage snippet loads from this repo
    return run


@contextlib.contextmanager
def _hub_errors(repo_id: str, folder: Path, endpoint: str) -> Iterator[None]:
    """Turn the Hub client's network and HTTP errors into `HubPushError` with advice."""
    try:
        yield
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        raise HubPushError(_http_advice(status, repo_id, endpoint, err) + _untouched(folder)) from err
    except httpx.HTTPError as err:
        raise HubPushError(
            f"Could not reach the Hub at {endpoint} ({type(err).__name__}: {err}). Check your network and that "
            f"HF_ENDPOINT (or `endpoint`) points to a running Hub, then retry." + _untouched(folder)
        ) from err


def _http_advice(status: int | None, repo_id: str, endpoint: str, err: Exception) -> str:
    if status in (401, 403):
        return (
            f"The Hub at {endpoint} refused the token for {repo_id} (HTTP {status}). Check that the token "
            "(the `token` argument, HF_TOKEN or `hf auth login`) is valid and has write access to "
            f"{repo_id.split('/')[0]!r}."
        )
    if status is not None and status >= 500:
        return f"The Hub at {endpoint} failed with HTTP {status} while pushing {repo_id}; retry later.\n{err}"
    return f"The Hub at {endpoint} rejected the push to {repo_id} (HTTP {status}): {err}"


def _untouched(folder: Path) -> str:
    return f"\nThe local folder {folder} was not modified."
