"""Recall@K and NDCG@K for next-item recommendation with one relevant item per user.

Usage::

    import evaluate
    metric = evaluate.load("path/to/s2gr/metrics/recommendation")
    metric.compute(predictions=[["12-5-200-0", "3-1-7-0"]], references=["3-1-7-0"], k=[1, 2])
    # {'recall@1': 0.0, 'ndcg@1': 0.0, 'recall@2': 1.0, 'ndcg@2': 0.6309...}

Each prediction is the ranked list of recommended keys for one user, best first; its reference is
the single held-out key. Keys are compared as exact strings: with Semantic IDs pass the *full* SID
(disambiguation code included), or item ids, so that two items sharing a code prefix are never
counted as a hit for each other. A reference at rank r (1-based) counts 1 for Recall@K when r ≤ K
and 1 / log2(r + 1) for NDCG@K; duplicates in a ranking count at their first position only.
"""

import math

import datasets
import evaluate

_CITATION = """\
@inproceedings{jarvelin2002cumulated,
  title={Cumulated gain-based evaluation of IR techniques},
  author={J{\\"a}rvelin, Kalervo and Kek{\\"a}l{\\"a}inen, Jaana},
  booktitle={ACM TOIS}, year={2002}}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of ranked lists of strings (item ids or full SIDs), best first.
    references: list of strings, the one relevant key per user.
    k: list of cut-offs (default [5, 10]).
Returns:
    dict with 'recall@K' and 'ndcg@K' for every K, averaged over users.
"""


@evaluate.utils.file_utils.add_start_docstrings(__doc__, _KWARGS_DESCRIPTION)
class Recommendation(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions, references, k=(5, 10)):
        if len(predictions) == 0:
            raise ValueError("No predictions: evaluate at least one user.")
        scores = per_user_scores(predictions, references, k)
        return {name: sum(values) / len(values) for name, values in scores.items()}


def per_user_scores(predictions, references, k=(5, 10)):
    """Each user's Recall@K and NDCG@K (lists in user order): what ``compute`` averages, for paired tests."""
    cutoffs = sorted({int(cut) for cut in k})
    if cutoffs[0] < 1:
        raise ValueError(f"Cut-offs must be ≥ 1, got {list(k)}.")
    ranks = [_rank(ranking, target) for ranking, target in zip(predictions, references, strict=True)]
    result = {}
    for cut in cutoffs:
        hits = [rank if rank is not None and rank <= cut else None for rank in ranks]
        result[f"recall@{cut}"] = [float(rank is not None) for rank in hits]
        result[f"ndcg@{cut}"] = [0.0 if rank is None else 1.0 / math.log2(rank + 1) for rank in hits]
    return result


def _rank(ranking, target):
    """1-based position of ``target`` among the distinct keys of ``ranking``; None if absent."""
    seen = set()
    for key in ranking:
        if key in seen:
            continue
        seen.add(key)
        if key == target:
            return len(seen)
    return None
