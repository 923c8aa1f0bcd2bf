"""Model cards for S2GR checkpoints on the Hugging Face Hub, generated from a run summary.

`build_model_card(run)` turns the summary a training run writes (`run.json`, plus `metrics.json` merged in as
`run["metrics"]` by `s2gr.hub.push_checkpoint`) into a `huggingface_hub.ModelCard` whose YAML header holds a
`model-index` of the real validation and test results. Every key is optional; a missing one drops its section
from the card, but metrics of the wrong type raise `ValueError` (a card must never show wrong numbers).

Run summary keys (all optional)::

    model_name    str    card title and model-index name (default "s2gr")
    repo_id       str    Hub id used in the usage snippet (set by push_checkpoint)
    base_model    str | list[str]   Hub id(s) the model derives from, e.g. the item text encoder
    dataset       {"name", "hub_id", "num_users", "num_items", "num_interactions"}
    split         {"kcore", "protocol", "ranking", "tie_break", "max_history"}
    codebook      {"num_levels", "codebook_size", "dedup_size", "utilisation": [per level],
                   "usage_perplexity": [per level], "collision_rate", "colliding_items", "largest_group"}
    thinking      {"num_thinking", "align_temperature" (τ), "num_clusters" (Kc), "reg_lambda" (λ), ...}
    training      {setting: value}, shown as a table
    metrics       {"validation": {"recall@5": .., "recall@10": .., "ndcg@5": .., "ndcg@10": ..}, "test": {...}}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from numbers import Real
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .errors import InputError

TAGS = ["recommendation", "generative-recommendation", "sequential-recommendation", "semantic-ids", "s2gr"]
TASK_TYPE = "sequential-recommendation"
TASK_NAME = "Sequential recommendation (next item)"
PAPER_URL = "https://arxiv.org/abs/2601.18664"
# Authors are left out until they are checked against the arXiv listing; the arXiv id identifies the paper.
BIBTEX = """@misc{s2gr2026,
  title         = {{S$^2$GR}: Stepwise Semantic-Guided Reasoning in Latent Space for Generative Recommendation},
  year          = {2026},
  eprint        = {2601.18664},
  archivePrefix = {arXiv},
  note          = {KDD 2026},
  url           = {https://arxiv.org/abs/2601.18664}
}"""
MOVIELENS_BIBTEX = """@article{harper2015movielens,
  title   = {The MovieLens Datasets: History and Context},
  author  = {Harper, F. Maxwell and Konstan, Joseph A.},
  journal = {ACM Transactions on Interactive Intelligent Systems},
  volume  = {5}, number = {4}, pages = {19:1--19:19}, year = {2015},
  doi     = {10.1145/2827872}
}"""
# Labels of the thinking-token settings (names as in S2GRConfig); other keys are shown as they are.
THINKING_LABELS = {
    "num_thinking": "thinking steps T",
    "align_loss_weight": "cluster-alignment loss weight (0: off)",
    "align_temperature": "alignment temperature τ",
    "num_clusters": "coarse clusters per level Kc",
    "reg_lambda": "first-step regulariser weight λ",
    "infonce_temperature": "InfoNCE temperature",
    "aux_decoder_layers": "auxiliary decoder layers",
}
_METRIC_NAME = re.compile(r"(recall|ndcg|hr|mrr)@(\d+)", re.IGNORECASE)
_MOVIELENS = re.compile(r"movielens|^ml-\d", re.IGNORECASE)

CARD_TEMPLATE = """\
---
{{ card_data }}
---

# {{ model_name }}

An [S²GR]({{ paper_url }}) generative recommender. A T5-style encoder–decoder reads a user's history as
Semantic IDs (SIDs, one code per level of a residual-quantised codebook, plus a disambiguation code) and
generates the next item's SID code by code. Beam search is constrained to the catalog's SIDs, so every
recommendation is a real item.
{% if thinking_off %}
Thinking tokens are off: this checkpoint is the TIGER baseline.
{% else %}
Before each code level the decoder produces a continuous *thinking token* that guides the next code{% if
aligned %}, aligned with that level's coarse code clusters{% else %}; the first is pulled toward a light
auxiliary decoder's guess of the target (the paper's cluster-alignment loss is off){% endif %}.
{% endif %}
{% if dataset %}

## Data

- Data set: **{{ dataset.name }}**{% if dataset.hub_id %} (`{{ dataset.hub_id }}`){% endif %}

{% for label, value in dataset_counts %}
- {{ label }}: {{ value }}
{% endfor %}
{% endif %}
{% if split %}

## Evaluation protocol

{% if split.kcore %}
- {{ split.kcore }}-core: users and items with fewer than {{ split.kcore }} interactions are removed, repeatedly,
  until none is left.
{% endif %}
{% if split.protocol == "leave-one-out" %}
- Leave-one-out: each user's last item is the test target, the second-to-last the validation target, and the
  items before them are training data.
{% elif split.protocol %}
- Split: {{ split.protocol }}.
{% endif %}
{% if split.ranking == "full" %}
- Full ranking: every item of the catalog is a candidate (no sampled negatives); a hit needs the complete SID,
  disambiguation code included.
{% elif split.ranking %}
- Ranking: {{ split.ranking }}.
{% endif %}
{% if split.tie_break %}
- Interactions with equal timestamps are ordered by {{ split.tie_break }}.
{% endif %}
{% if split.max_history %}
- Histories hold at most the last {{ split.max_history }} items.
{% endif %}
{% endif %}
{% if results %}

## Results

| split | {{ metric_names | join(" | ") }} |
|---|{% for _ in metric_names %}---|{% endfor %}

{% for split_name, values in results %}
| {{ split_name }} | {{ values | join(" | ") }} |
{% endfor %}
{% endif %}
{% if codebook %}

## Codebook

{% if codebook.num_levels %}
- {{ codebook.num_levels }} levels{% if codebook.codebook_size %} × {{ codebook.codebook_size }} codes{% endif %}
{% if codebook.dedup_size %}, plus a disambiguation level of {{ codebook.dedup_size }} codes{% endif %}

{% endif %}
{% for label, value in collision_lines %}
- {{ label }}: {{ value }}
{% endfor %}
{% if codebook_levels %}

| level | utilisation | perplexity |
|---|---|---|
{% for level, utilisation, perplexity in codebook_levels %}
| {{ level }} | {{ utilisation }} | {{ perplexity }} |
{% endfor %}
{% endif %}
{% endif %}
{% if thinking %}

## Thinking tokens

{% for label, value in thinking %}
- {{ label }}: {{ value }}
{% endfor %}
{% endif %}
{% if training %}

## Training configuration

| setting | value |
|---|---|
{% for key, value in training %}
| {{ key }} | {{ value }} |
{% endfor %}
{% endif %}

## How to use

The model and tokenizer code ships with the checkpoint, hence `trust_remote_code=True`. With the `s2gr` package
installed, `S2GRRecommender` takes item ids in and gives item ids out:

```python
from transformers import AutoModel, AutoTokenizer
from s2gr import S2GRRecommender

model = AutoModel.from_pretrained("{{ repo_id }}", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{{ repo_id }}", trust_remote_code=True)
recommender = S2GRRecommender(model, tokenizer)

histories = [["item_12", "item_7", "item_99"]]  # item ids per user, oldest first
recommendations = recommender.recommend(histories, top_k=10, exclude=histories)
print(recommendations[0])  # 10 item ids, best first, none of them already in the history
```

`return_scores=True` gives `(item id, log-probability)` pairs; item ids are those of `tokenizer.item_ids`.
Without the package the model ranks token tensors: `model.recommend(**tokenizer.encode_histories(histories),
prefix_tables=tokenizer.prefix_tables(), top_k=10).item_indices` are positions in `tokenizer.item_ids`.

## Limitations

- Only items of the training catalog can be recommended; new items need Semantic IDs from the frozen
  codebook first, and users need at least one known item in their history.
- Results hold for the data set and protocol above; offline Recall/NDCG on a public log is not a measure of
  online value, and the model reproduces the popularity and exposure biases of the log.
- The S²GR paper leaves several details unpublished (τ, Kc, λ, the exact balancing and uniformity losses);
  this implementation chooses its own, so numbers are not directly comparable with the paper's.
{% if movielens %}

## MovieLens terms

The MovieLens data sets are provided by GroupLens Research for research use only: they may not be
redistributed or used commercially without permission, and this model inherits those terms. Publications
using them must cite Harper & Konstan (2015):

```bibtex
{{ movielens_bibtex }}
```
{% endif %}

## Citation

```bibtex
{{ bibtex }}
```
"""


def build_model_card(run: Mapping[str, Any]) -> ModelCard:
    """The Hub model card of a training run: metadata with a model-index, and a text describing data,
    protocol, codebook, thinking tokens, training, usage and limitations (see the module docstring)."""
    model_name = str(run.get("model_name") or "s2gr")
    dataset = dict(run.get("dataset") or {})
    metrics = _checked_metrics(run.get("metrics") or {})
    eval_results = _eval_results(metrics, dataset)
    card_data = ModelCardData(
        model_name=model_name if eval_results else None,  # only the model-index uses it
        library_name="s2gr",
        license="apache-2.0",
        tags=TAGS,
        base_model=run.get("base_model"),
        datasets=[_dataset_id(dataset)] if dataset.get("name") else None,
        metrics=sorted({name.split("@")[0] for split in metrics.values() for name in split}) or None,
        eval_results=eval_results or None,
    )
    context = _template_context(run, model_name, dataset, metrics)
    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    content = environment.from_string(CARD_TEMPLATE).render(card_data=card_data.to_yaml(), **context)
    return ModelCard(content)


def _checked_metrics(metrics: Any) -> dict[str, dict[str, float]]:
    """`{split: {name: value}}` with every value a finite number in [0, 1], else `ValueError`."""
    if not isinstance(metrics, Mapping):
        raise InputError(f"run['metrics'] must map split names to metric dicts, got {type(metrics).__name__}")
    checked: dict[str, dict[str, float]] = {}
    for split, values in metrics.items():
        if not isinstance(values, Mapping):
            raise InputError(f"run['metrics'][{split!r}] must be a dict of metric values, got {values!r}")
        checked[str(split)] = {
            str(name): _checked_value(split, name, value) for name, value in values.items()
        }
    return checked


def _checked_value(split: str, name: str, value: Any) -> float:
    # bool is a Real in Python, but True as a recall is a bug upstream, not a measurement.
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InputError(f"metric {split}/{name} must be a number, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InputError(f"metric {split}/{name} must be a finite rate in [0, 1], got {value!r}")
    return float(value)


def _dataset_id(dataset: Mapping[str, Any]) -> str:
    return str(dataset.get("hub_id") or dataset["name"])


def _pretty_metric(name: str) -> str:
    """Display name of a metric: "recall@10" → "Recall@10", "ndcg@5" → "NDCG@5", others unchanged."""
    match = _METRIC_NAME.fullmatch(name)
    if match is None:
        return name
    kind = match.group(1).lower()
    return f"{'Recall' if kind == 'recall' else kind.upper()}@{match.group(2)}"


def _eval_results(metrics: dict[str, dict[str, float]], dataset: Mapping[str, Any]) -> list[EvalResult]:
    if not dataset.get("name"):
        return []  # a model-index result needs its data set
    return [
        EvalResult(
            task_type=TASK_TYPE,
            task_name=TASK_NAME,
            dataset_type=_dataset_id(dataset),
            dataset_name=str(dataset["name"]),
            dataset_split=split,
            metric_type=name,
            metric_name=_pretty_metric(name),
            metric_value=value,
        )
        for split, values in metrics.items()
        for name, value in values.items()
    ]


def _results_table(metrics: dict[str, dict[str, float]]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Column names and one row per split; a metric missing from a split shows as "–"."""
    names = list(dict.fromkeys(name for values in metrics.values() for name in values))
    rows = [
        (split, [f"{values[n]:.4f}" if n in values else "–" for n in names])
        for split, values in metrics.items()
    ]
    return [_pretty_metric(name) for name in names], rows


def _codebook_levels(codebook: Mapping[str, Any]) -> list[tuple[int, str, str]]:
    utilisation = list(codebook.get("utilisation") or [])
    perplexity = list(codebook.get("usage_perplexity") or [])
    return [
        (level + 1, f"{value:.2%}", f"{perplexity[level]:.1f}" if level < len(perplexity) else "–")
        for level, value in enumerate(utilisation)
    ]


def _collision_lines(codebook: Mapping[str, Any]) -> list[tuple[str, str]]:
    lines = []
    if "collision_rate" in codebook:
        lines.append(("items whose codes collide before disambiguation", f"{codebook['collision_rate']:.2%}"))
    if "colliding_items" in codebook:
        lines.append(("colliding items", f"{codebook['colliding_items']:,}"))
    if "largest_group" in codebook:
        lines.append(("most items sharing one code tuple", str(codebook["largest_group"])))
    return lines


def _dataset_counts(dataset: Mapping[str, Any]) -> list[tuple[str, str]]:
    labels = {"num_users": "users", "num_items": "items", "num_interactions": "interactions"}
    return [(label, f"{dataset[key]:,}") for key, label in labels.items() if key in dataset]


def _template_context(
    run: Mapping[str, Any], model_name: str, dataset: dict[str, Any], metrics: dict[str, dict[str, float]]
) -> dict[str, Any]:
    codebook = dict(run.get("codebook") or {})
    thinking = dict(run.get("thinking") or {})
    metric_names, results = _results_table(metrics)
    return {
        "model_name": model_name,
        "repo_id": run.get("repo_id") or f"your-name/{model_name}",
        "paper_url": PAPER_URL,
        "dataset": dataset if dataset.get("name") else None,
        "dataset_counts": _dataset_counts(dataset),
        "movielens": any(_MOVIELENS.search(str(dataset.get(key) or "")) for key in ("name", "hub_id")),
        "split": dict(run.get("split") or {}),
        "metric_names": metric_names,
        "results": results,
        "codebook": codebook,
        "codebook_levels": _codebook_levels(codebook),
        "collision_lines": _collision_lines(codebook),
        "thinking": [(THINKING_LABELS.get(key, key), value) for key, value in thinking.items()],
        "thinking_off": thinking.get("num_thinking") == 0,
        "aligned": thinking.get("align_loss_weight", 1)
        > 0,  # cards of runs from before the weight was recorded
        "training": list(dict(run.get("training") or {}).items()),
        "bibtex": BIBTEX,
        "movielens_bibtex": MOVIELENS_BIBTEX,
    }
