"""The package's own errors: a mistake in the user's input, settings or files that the message explains.

The CLI prints an `S2GRError` as one line (`error: ...`, exit status 2); any other exception (a torch shape
error, out of memory, a bug) keeps its traceback. Each subclass is also the built-in exception that code
catching by kind expects (a bad value is a `ValueError`, a missing file a `FileNotFoundError`).
"""

from __future__ import annotations


class S2GRError(Exception):
    """Base class of every error the package raises about the user's input."""


class InputError(S2GRError, ValueError):
    """A value the user passed (a setting, an argument, an id) is not valid: the message says what is."""


class MissingFileError(S2GRError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class CorruptFileError(S2GRError):
    """A file exists but cannot be read (cut short, or not the format its name says). Not an `OSError`:
    `transformers` replaces those raised while a tokenizer loads with a message that names no file."""


class RunFolderError(S2GRError, FileExistsError):
    """A run folder holds another run (or no run to resume): the message says how to proceed."""


def corrupt_file(path: object, error: Exception) -> CorruptFileError:
    """The error for a file that exists but cannot be read, e.g. a `.safetensors` cut short."""
    return CorruptFileError(
        f"{path} is incomplete or corrupt ({error}). It was probably cut short while being copied or "
        "downloaded: copy it again from the original folder, download it again (`hf download REPO "
        "--local-dir DIR`), or write it again with save_pretrained."
    )
