"""Recall@K / NDCG@K metric module (loaded with evaluate.load) and the most-popular baseline."""

from __future__ import annotations

import math

import evaluate
import pytest
from datasets import Dataset, DatasetDict
from hypothesis import given, settings
from hypothesis import strategies as st

from s2gr.evaluation import most_popular, ranking_metrics, seen_items
from s2gr.metrics import RECOMMENDATION_METRIC


def test_metric_loads_with_evaluate_and_scores_known_ranks() -> None:
    metric = evaluate.load(RECOMMENDATION_METRIC)
    result = metric.compute(
        predictions=[["a", "b", "c"], ["x", "y", "z"], ["q", "q", "t"]],
        references=["a", "z", "t"],
        k=[1, 2, 3],
    )
    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["recall@2"] == pytest.approx(2 / 3)  # "q" repeated counts once: t is at rank 2
    assert result["recall@3"] == pytest.approx(1.0)
    assert result["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(3)) / 3)


def test_full_sid_exact_match_no_prefix_credit() -> None:
    # Two items sharing the first three codes differ in the disambiguation code: no hit.
    result = ranking_metrics([["1-2-3-0"]], ["1-2-3-1"], cutoffs=(1,))
    assert result == {"recall@1": 0.0, "ndcg@1": 0.0}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.permutations(list("abcdefghij")), min_size=1, max_size=8), st.data())
def test_metric_bounds_and_monotonic_in_k(rankings, data) -> None:
    targets = [data.draw(st.sampled_from(list("abcdefghijk"))) for _ in rankings]
    result = ranking_metrics(rankings, targets, cutoffs=(1, 5, 10))
    assert 0 <= result["ndcg@1"] <= result["ndcg@5"] <= result["ndcg@10"] <= result["recall@10"] <= 1
    assert result["recall@1"] <= result["recall@5"] <= result["recall@10"]
    assert result["ndcg@1"] == result["recall@1"]


def _toy_splits() -> DatasetDict:
    return DatasetDict(
        {
            "train": Dataset.from_dict({"user_id": ["u", "v"], "item_ids": [["a", "b", "a2"], ["a", "c"]]}),
            "validation": Dataset.from_dict(
                {"user_id": ["u", "v"], "history": [["a", "b", "a2"], ["a", "c"]], "target": ["c", "b"]}
            ),
            "test": Dataset.from_dict(
                {"user_id": ["u", "v"], "history": [["b", "a2", "c"], ["a", "c", "b"]], "target": ["d", "d"]}
            ),
        }
    )


def test_seen_items_and_most_popular_excluding_seen_keeps_k_slots() -> None:
    splits = _toy_splits()
    assert seen_items(splits, "test") == [["a", "b", "a2", "c"], ["a", "c", "b"]]
    ranked = most_popular(splits, "test", top_k=2, exclude_seen=False)
    assert ranked[0] == ["a", "b"]  # a: 2, then b and c tie at 2 incl. validation targets
    excluded = most_popular(splits, "test", top_k=2, exclude_seen=True)
    assert excluded[1] == ["a2"]  # v has seen a, b, c: only a2 is left of the known items
    assert all(
        item not in seen
        for item_list, seen in zip(excluded, seen_items(splits, "test"), strict=True)
        for item in item_list
    )
    with pytest.raises(ValueError, match="split must be"):
        seen_items(splits, "train")
