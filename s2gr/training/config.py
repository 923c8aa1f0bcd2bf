"""``RunConfig``: everything a training run needs, from flags or a YAML file, saved with the run.

Every value is checked against its field's type and allowed range when the config is built, so a mistake in
a YAML file or a ``--set KEY=VALUE`` fails at once with an `InputError` naming the field, the value and what
is expected, before any data is read.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import textwrap
import types
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml

from ..beam_search_s2gr import DEFAULT_NUM_BEAMS
from ..codebook import CodebookConfig
from ..configuration_s2gr import ENCODER_MODES, S2GRConfig
from ..data import DATASETS, Columns
from ..errors import InputError, MissingFileError
from ..recommender import DEFAULT_BATCH_SIZE

MIXED_PRECISION = ("auto", "bf16", "no")


class SettingsLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 numbers and booleans for settings files and ``--set`` values.

    PyYAML follows YAML 1.1, where ``1e-3`` is a string (a float needs a dot: ``1.0e-3``) and ``yes``/``no``/
    ``on``/``off`` are booleans (``mixed_precision: no`` would be False). Here ``1e-3``, ``5E-4`` and ``1e3``
    are floats, only true/false are booleans and integers are decimal (``010`` is 10).
    """


_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
SettingsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SettingsLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# Integers before floats: a resolver list is tried in order, and the float pattern also matches "10".
SettingsLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
SettingsLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
SettingsLoader.add_constructor(_INT, lambda loader, node: int(loader.construct_scalar(node)))


def parse_value(raw: str, what: str) -> Any:
    """One YAML value (``SettingsLoader``): ``1e-3`` → 0.001, ``true`` → True, ``[64, 32]`` → a list."""
    try:
        return yaml.load(raw, Loader=SettingsLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "cannot be parsed"
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InputError(f"{what} is not valid YAML: {problem}{where}.") from None


def apply_assignments(values: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` strings (dotted keys for nested fields, YAML values) to ``values`` in place:
    ``model.d_model=64`` sets ``values["model"]["d_model"] = 64``."""
    for assignment in assignments:
        key, separator, raw = assignment.partition("=")
        if not separator or not key:
            raise InputError(f"expected KEY=VALUE, got {assignment!r}.")
        target = values
        *parents, leaf = key.split(".")
        for depth, parent in enumerate(parents):
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                group = ".".join(parents[: depth + 1])
                raise InputError(f"{key}: {group} is a single value ({target!r}), not a group of fields.")
        target[leaf] = parse_value(raw, f"{key}: {raw!r}")
    return values


@dataclass(frozen=True)
class Range:
    """The numbers a field allows: ``low`` and ``high`` (None: unbounded), each included unless ``*_open``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '≥'} {self.low}"
        if self.low is None:
            return f"{'<' if self.high_open else '≤'} {self.high}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low}, {self.high}{right}"


AT_LEAST_ONE = Range(1)
POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)

# Where a field's annotation (a string, under ``from __future__ import annotations``) names its type.
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "None": None, "Any": Any}
_TYPE_NAMES |= {"dict": dict, "list": list, "tuple": tuple}


def field_type(annotation: Any) -> Any:
    """The type of an annotation string such as ``"int | None"``; ``Any`` where it names other types."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(
            annotation, {"__builtins__": {}}, _TYPE_NAMES
        )  # a field's own annotation, these names only
    except Exception:  # e.g. "Literal[...]" or "torch.dtype": not a type a setting checks
        return Any


def _matches(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    if kind is None or kind is type(None):
        return value is None
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        return any(_matches(value, option) for option in get_args(kind))
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:  # an int is a number too; NaN and infinity are not settings
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind is str:
        return isinstance(value, str) and value != ""
    if kind in (list, tuple) or origin in (list, tuple):
        item = get_args(kind)[0] if get_args(kind) else Any
        return isinstance(value, list | tuple) and all(_matches(element, item) for element in value)
    if kind is dict or origin is dict:
        return isinstance(value, dict)
    return True


_NAMES = {
    bool: ("true or false", "booleans"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
}
_NAMES |= {str: ("a non-empty string", "strings"), dict: ("a mapping of field: value", "mappings")}


def describe(kind: Any, check: Range | tuple[str, ...] | None = None, plural: bool = False) -> str:
    """What a value of ``kind`` within ``check`` looks like, in words: ``an integer ≥ 1 or null``."""
    if isinstance(check, tuple):
        return "one of " + ", ".join(map(repr, check))
    if kind is None or kind is type(None):
        return "null"
    if get_origin(kind) in (Union, types.UnionType):
        options = sorted(get_args(kind), key=lambda option: option is type(None))  # null last
        return " or ".join(describe(option, check, plural) for option in options)
    if kind in (list, tuple) or get_origin(kind) in (list, tuple):
        item = get_args(kind)[0] if get_args(kind) else Any
        return "a list" if item is Any else f"a list of {describe(item, plural=True)}"
    base = get_origin(kind) or kind
    words = _NAMES.get(base, ("any value", "values"))[plural]
    return f"{words} {check}" if isinstance(check, Range) else words


def check_value(name: str, value: Any, kind: Any, check: Range | tuple[str, ...] | None = None) -> None:
    """Raise `InputError` unless ``value`` is of ``kind`` and within ``check`` (a `Range` or choices)."""
    if not _matches(value, kind):
        raise InputError(f"{name} must be {describe(kind, check)}, got {value!r}.")
    if value is None or check is None:
        return
    if value not in check:
        optional = get_origin(kind) in (Union, types.UnionType) and type(None) in get_args(kind)
        expected = describe(kind, check) if isinstance(check, tuple) else str(check)
        raise InputError(f"{name} must be {expected}{' (or null)' if optional else ''}, got {value!r}.")


def check_known(keys: Iterable[Any], known: Iterable[str], what: str, prefix: str = "") -> None:
    """Raise `InputError` for keys outside ``known``, naming the closest known one and listing them all."""
    known = list(known)
    unknown = sorted(str(key) for key in keys if key not in known)
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], known, n=1)
    guess = f" (did you mean {prefix}{close[0]}?)" if close else ""
    raise InputError(f"{what}(s) {unknown}{guess}; known: {', '.join(known)}.")


def setting(default: Any, help: str, check: Range | tuple[str, ...] | None = None) -> Any:
    """A `RunConfig` field: ``help`` is what ``s2gr train --help`` shows; ``check`` bounds its values beyond
    the type of its annotation (a `Range` of numbers, or a tuple of the allowed strings)."""
    return field(default=default, metadata={"help": help, "check": check})


def _own_fields(cls: type) -> dict[str, Any]:
    """Name → type of the fields ``cls`` declares itself (not those of a base class such as PreTrainedConfig)."""
    own = vars(cls).get("__annotations__", {})
    return {spec.name: field_type(spec.type) for spec in fields(cls) if spec.name in own}


COLUMN_FIELDS = _own_fields(Columns)
CODEBOOK_FIELDS = _own_fields(CodebookConfig)
# Model fields that the run sets itself, from the codebook or from its own fields.
RUN_MODEL_FIELDS = {
    "num_levels": "the codebook's number of levels (set codebook.num_levels)",
    "codebook_size": "the codebook (set codebook.codebook_size)",
    "num_clusters": "the codebook (set codebook.num_clusters)",
    "dedup_size": "the codebook's colliding items",
    "vocab_size": "the token layout of the codebook",
    "num_thinking": "the run's num_thinking (set num_thinking)",
    "encoder_mode": "the run's encoder_mode (set encoder_mode)",
    "max_history_items": "the run's max_history (set max_history)",
    "pad_token_id": "the token layout",
    "bos_token_id": "the token layout",
    "eos_token_id": "the token layout",
    "decoder_start_token_id": "the token layout",
    "is_encoder_decoder": "the architecture",
}
MODEL_FIELDS = {name: kind for name, kind in _own_fields(S2GRConfig).items() if name not in RUN_MODEL_FIELDS}
COLUMN_HELP = {
    "user": "user id column of the interactions file",
    "item": "item id column of the interactions file",
    "timestamp": "timestamp column of the interactions file (orders each user's items)",
    "item_key": "item id column of the items file",
    "text": "items-file columns joined into the item text, as a list (default: all but the id)",
}


@dataclass
class RunConfig:
    """A training run: data, codebook, model and schedule, checked when built (see the module docstring).

    Each field's help text is in its metadata (``fields(RunConfig)``); ``s2gr train --help`` lists them all
    with the nested ``columns``, ``codebook`` and ``model`` keys. Unknown keys in a YAML file are an error.
    """

    output_dir: str = setting("runs/s2gr", "run folder: checkpoints, the final model/, metrics, this config")
    dataset: str | None = setting(
        "ml-100k", "named data set (null: your own files, see interactions)", tuple(DATASETS)
    )
    interactions: str | None = setting(
        None, "your own interactions file (.csv/.tsv/.parquet/.jsonl/.inter/Amazon .json.gz)"
    )
    items: str | None = setting(
        None, "item metadata file for interactions (its text columns feed the encoder)"
    )
    columns: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "column names of your own files (columns.KEY below)"}
    )
    kcore: int = setting(
        5, "iterative k-core filter: users and items with fewer interactions go", AT_LEAST_ONE
    )
    max_history: int = setting(10, "items of history per target (the decoder's window W)", AT_LEAST_ONE)
    max_users: int | None = setting(
        None,
        "keep only the first that many users (a small real slice for quick runs and tests)",
        AT_LEAST_ONE,
    )
    recent_targets: int | None = setting(
        None,
        "train only on each user's most recent that many training items (null = all); their histories still "
        "reach back max_history items. Bounds an epoch's cost on logs with very long users; evaluation and "
        "seen-item filtering are unchanged",
        AT_LEAST_ONE,
    )
    refit: bool = setting(
        False,
        "train on the training items and each user's validation item for exactly epochs (or max_steps/"
        "time_budget_minutes), keep the final weights and evaluate on test only: the final model of a setting "
        "chosen on validation. patience does not apply and no validation metrics are reported (checkpoints "
        "are still saved every eval_every_epochs, for resume)",
    )
    encoder: str = setting("all-MiniLM-L6-v2", "item text encoder (sentence-transformers name or folder)")
    codebook: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "CodebookConfig fields (codebook.KEY below; default: CoBa, 3 levels of K codes sized to the "
            "catalog, K / 16 clusters per level)"
        },
    )
    num_thinking: int | None = setting(
        None, "null = one thinking step per codebook level (S2GR); 0 = TIGER", NON_NEGATIVE
    )
    encoder_mode: str = setting(
        "causal",
        '"causal" (one pass per user sequence yields every target) or "bidirectional" (exact TIGER encoder '
        "trained on sliding windows)",
        ENCODER_MODES,
    )
    model: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "further S2GRConfig fields (model.KEY below: layers, d_model, temperatures, ...)"},
    )
    epochs: float = setting(30, "training epochs (> 0 unless max_steps is set)")
    batch_size: int = setting(
        64, "training rows per batch: segments in causal mode, targets in bidirectional mode", AT_LEAST_ONE
    )
    lr: float = setting(2e-3, "peak learning rate", POSITIVE)
    weight_decay: float = setting(0.01, "AdamW weight decay", NON_NEGATIVE)
    warmup_ratio: float = setting(
        0.05, "share of the training steps spent warming up the learning rate", Range(0, 1, high_open=True)
    )
    segment_items: int = setting(80, "targets per training segment (causal mode)", AT_LEAST_ONE)
    group_by_length: bool = setting(
        False,
        "batch training rows of similar length (random mega-batches of 50 batches, sorted by length inside) "
        'instead of uniformly at random; benchmarks/RESULTS.md, "Speed and memory"',
    )
    eval_every_epochs: float = setting(1.0, "epochs between validation evaluations and checkpoints", POSITIVE)
    patience: int = setting(5, "evaluations without NDCG@10 gain before stopping; 0 = never", NON_NEGATIVE)
    num_beams: int = setting(
        DEFAULT_NUM_BEAMS, "beam width of the evaluation's constrained search", AT_LEAST_ONE
    )
    eval_batch_size: int = setting(DEFAULT_BATCH_SIZE, "users per evaluation batch", AT_LEAST_ONE)
    exclude_seen: bool = setting(True, "filter each user's past items from the evaluation rankings")
    logging_steps: int = setting(20, "optimiser steps between training-loss logs", AT_LEAST_ONE)
    report_to: str = setting(
        "none",
        "where the Trainer also logs losses and metrics: none, or comma-separated integrations of transformers "
        "that are installed (tensorboard, wandb, mlflow, ...)",
    )
    gradient_accumulation_steps: int = setting(1, "batches per optimiser step", AT_LEAST_ONE)
    seed: int = setting(42, "random seed of training", Range(0, 2**32 - 1))
    max_steps: int = setting(-1, "optimiser steps; > 0 overrides epochs (-1: train for epochs)", Range(-1))
    time_budget_minutes: float | None = setting(
        None,
        "stop training after this much wall time (evaluations included), with one last evaluation so the best "
        "checkpoint can be the final weights; the learning-rate schedule still follows epochs: set them to "
        "what the budget fits",
        POSITIVE,
    )
    mixed_precision: str = setting(
        "auto",
        '"auto" (bf16 autocast on a GPU that supports it, float32 on a CPU), "bf16" (also on a CPU, where it '
        'pays off only with native bf16 instructions and a large model; benchmarks/RESULTS.md, "Speed and memory") or "no" '
        "(float32). Weights, optimiser state and evaluation stay float32",
        MIXED_PRECISION,
    )
    cache_dir: str | None = setting(None, "cache folder (null: $S2GR_CACHE or ~/.cache/s2gr)")

    def __post_init__(self) -> None:
        kinds = run_config_types()
        for spec in fields(self):
            check_value(spec.name, getattr(self, spec.name), kinds[spec.name], spec.metadata.get("check"))
        if self.dataset is not None and self.interactions is not None:
            raise InputError(
                "Give either dataset or interactions, not both (set dataset: null for your own files)."
            )
        if self.dataset is None and self.interactions is None:
            raise InputError(f"Give dataset (one of {', '.join(DATASETS)}) or interactions (your own file).")
        if self.items is not None and self.interactions is None:
            raise InputError("items is the item file of your own interactions: set interactions too.")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise InputError(f"epochs must be > 0 (or set max_steps), got {self.epochs!r}.")
        self.report_targets()
        self._check_group("columns", COLUMN_FIELDS)
        self._check_group("codebook", CODEBOOK_FIELDS)
        self.codebook_config()
        for name in self.model:
            if name in RUN_MODEL_FIELDS:
                raise InputError(f"model.{name} cannot be set: it comes from {RUN_MODEL_FIELDS[name]}.")
        self._check_group("model", MODEL_FIELDS)
        try:  # S2GRConfig's own range checks (heads dividing d_model, ...), as the run will build it
            S2GRConfig(encoder_mode=self.encoder_mode, max_history_items=self.max_history, **self.model)
        except InputError as error:
            raise InputError(f"model.{error}") from None

    def _check_group(self, name: str, known: dict[str, Any]) -> None:
        """The keys and value types of a nested field (``columns``, ``codebook``, ``model``)."""
        group = getattr(self, name)
        check_known(group, known, f"Unknown {name} field", prefix=f"{name}.")
        for key, value in group.items():
            check_value(f"{name}.{key}", value, known[key])

    def report_targets(self) -> list[str]:
        """``report_to`` as the Trainer takes it; an unknown or uninstalled integration is an error now, not
        after the data and the codebook."""
        from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

        targets = [name.strip() for name in self.report_to.split(",") if name.strip()]
        if targets in ([], ["none"]):
            return []
        unknown = [name for name in targets if name not in INTEGRATION_TO_CALLBACK]
        if unknown:
            raise InputError(
                f"report_to: unknown integration(s) {unknown}; choose from none, {', '.join(sorted(INTEGRATION_TO_CALLBACK))}."
            )
        missing = [name for name in targets if name not in get_available_reporting_integrations()]
        if missing:
            raise InputError(
                f"report_to: {missing} not installed here: pip install {' '.join(missing)} (or report_to: none)."
            )
        return targets

    def codebook_config(self) -> CodebookConfig:
        try:
            return CodebookConfig(**self.codebook)
        except InputError as error:  # its messages start with the field's name
            raise InputError(f"codebook.{error}") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"{path}: no such config file.")
        values = parse_value(path.read_text(), str(path)) or {}
        if not isinstance(values, dict):
            raise InputError(f"{path}: a run config must be a YAML mapping of field: value.")
        return cls.from_dict({**values, **overrides}, source=str(path))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        check_known(values, [spec.name for spec in fields(cls)], f"{source}: unknown field")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


@functools.cache
def run_config_types() -> dict[str, Any]:
    """Name → type of every `RunConfig` field."""
    return {spec.name: field_type(spec.type) for spec in fields(RunConfig)}


def _as_yaml(value: Any) -> str:
    """A default as a user writes it in YAML or after ``--set KEY=``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(_as_yaml, value)) + "]"
    return str(value)


def _setting_lines(key: str, default: Any, help: str, width: int) -> list[str]:
    """``  key=default   help``, the help wrapped in a column of its own."""
    left = f"  {key}={_as_yaml(default)}"
    column = 34
    text = textwrap.wrap(help, width - column) or [""]
    if len(left) >= column - 1:
        return [left] + [" " * column + line for line in text]
    return [left.ljust(column) + text[0]] + [" " * column + line for line in text[1:]]


def settings_help(width: int = 110) -> str:
    """Every `RunConfig` field and the nested ``columns``/``codebook``/``model`` keys, with their defaults, help
    and allowed values: the epilog of ``s2gr train --help``."""
    kinds = run_config_types()
    lines = [
        "settings (FIELD: VALUE in a --config YAML file, or --set FIELD=VALUE after the other flags; values are",
        "YAML, nested fields take dotted keys, e.g. --set lr=5e-4 --set columns.user=uid --set model.d_model=64):",
    ]
    for spec in fields(RunConfig):
        kind, check = kinds[spec.name], spec.metadata.get("check")
        help = spec.metadata.get("help", "")
        listed = isinstance(check, tuple) and all(f'"{choice}"' in help for choice in check)
        if (check is not None and not listed) or kind in (int, float):
            help += f" ({describe(kind, check)})"
        default = spec.default if spec.default_factory is MISSING else spec.default_factory()
        lines += _setting_lines(spec.name, default, help, width)
    lines.append("columns.KEY (for interactions/items files; a Columns field):")
    for name, default in asdict(Columns()).items():
        lines += _setting_lines(f"columns.{name}", default, COLUMN_HELP.get(name, ""), width)
    groups = (
        ("codebook", CodebookConfig, CODEBOOK_FIELDS, "s2gr.codebook.CodebookConfig"),
        ("model", S2GRConfig, MODEL_FIELDS, "s2gr.S2GRConfig"),
    )
    for name, cls, known, source in groups:
        defaults = {spec.name: spec.default for spec in fields(cls)}
        keys = ", ".join(f"{key}={_as_yaml(defaults[key])}" for key in known)
        lines.append(f"{name}.KEY (the docstring of {source} explains each; default shown):")
        lines += textwrap.wrap(keys, width, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)
