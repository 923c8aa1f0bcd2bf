"""The one loader of a saved S2GR model and its tokenizer, for the CLI, fine-tuning, the recommender and the
benchmarks: a model folder (`save_pretrained` of both) or the folder of a `s2gr train` run (its `model/`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import InputError, MissingFileError
from .modeling_s2gr import S2GRForGenerativeRecommendation
from .tokenization_s2gr import S2GRTokenizer
from .training.run_folder import MODEL_DIR

_WHAT_TO_PASS = (
    "Pass the model/ folder of a `s2gr train` run (e.g. runs/s2gr/model) or the run folder itself; for a Hub "
    "model run `hf download USER/NAME --local-dir DIR` first."
)


def default_device() -> str:
    """cuda when available, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_model_folder(path: str | os.PathLike) -> Path:
    """The model folder: `path` itself, or its `model/` when given a run folder. A missing folder is a
    `FileNotFoundError`, one without `config.json` a `ValueError`, both saying what to pass."""
    folder = Path(path)
    if not folder.is_dir():
        raise MissingFileError(f"{folder} is not a model folder (no such folder). {_WHAT_TO_PASS}")
    if (folder / "config.json").is_file():
        return folder
    if (folder / MODEL_DIR / "config.json").is_file():
        return folder / MODEL_DIR
    raise InputError(f"{folder} is not a model folder (no config.json). {_WHAT_TO_PASS}")


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[S2GRForGenerativeRecommendation, S2GRTokenizer]:
    """Model (in eval mode; moved to `device` when given) and tokenizer of a model or run folder.

    A folder that cannot be read (files missing or cut short, a mixed-up pair of model and tokenizer) raises
    `ValueError` naming the folder and the cause.
    """
    folder = resolve_model_folder(path)
    try:
        model = S2GRForGenerativeRecommendation.from_pretrained(folder)
        tokenizer = S2GRTokenizer.from_pretrained(folder)
    except Exception as error:  # OSError, JSON/safetensors errors, shape mismatches: all mean "not a model"
        raise InputError(
            f"{folder} is not a loadable S2GR model folder ({type(error).__name__}: {error}). {_WHAT_TO_PASS}"
        ) from error
    if model.config.vocab_size != tokenizer.vocab_size:
        raise InputError(
            f"{folder}: the model has {model.config.vocab_size} token embeddings but the tokenizer's vocabulary "
            f"has {tokenizer.vocab_size} tokens; the folder mixes two checkpoints."
        )
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
