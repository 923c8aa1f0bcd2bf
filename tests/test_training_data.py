"""Training samples, collators and the run config (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from hypothesis import given, settings
from hypothesis import strategies as st

from s2gr.evaluation import seen_items
from s2gr.tokenization_s2gr import S2GRTokenizer
from s2gr.training.collator import HistoryCollator, SegmentCollator
from s2gr.training.config import RunConfig
from s2gr.training.samples import (
    count_targets,
    refit_sequences,
    segment_sequences,
    sliding_window_samples,
)


def _train(lengths: list[int]) -> Dataset:
    return Dataset.from_dict(
        {
            "user_id": [f"u{i}" for i in range(len(lengths))],
            "item_ids": [[f"u{i}-{j}" for j in range(n)] for i, n in enumerate(lengths)],
        }
    )


RECENT = st.none() | st.integers(1, 12)


def _expected_targets(train: Dataset, recent: int | None) -> list[str]:
    """Every item but each user's first, or only the last ``recent`` of them."""
    return [item for sequence in train["item_ids"] for item in sequence[1:][-(recent or len(sequence)) :]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(1, 9), st.integers(1, 6), RECENT)
def test_segments_cover_every_target_once_with_context(lengths, segment_items, context_items, recent) -> None:
    train = _train(lengths)
    segments = segment_sequences(train, segment_items, context_items, recent_targets=recent)
    targets = []
    for row in segments:
        items, first = row["item_ids"], row["first_target"]
        assert len(items) - first <= segment_items
        assert row["length"] == len(items)  # what length-grouped batching sorts by
        for position in range(first, len(items)):
            user, index = items[position].split("-")
            # history visible inside the row: min(index, context_items) items at least, also for the
            # first of a user's recent targets
            assert position >= min(int(index), context_items)
            assert items[position - 1] == f"{user}-{int(index) - 1}"  # contiguous, chronological
            targets.append(items[position])
    expected = _expected_targets(train, recent)
    assert sorted(targets) == sorted(expected)  # each exactly once
    assert count_targets(train, recent) == len(expected)
    with pytest.raises(ValueError, match="context_items"):
        segment_sequences(train, segment_items, 0)
    with pytest.raises(ValueError, match="recent_targets must be ≥ 1"):
        segment_sequences(train, segment_items, context_items, recent_targets=0)
    with pytest.raises(ValueError, match="recent_targets must be ≥ 1"):
        count_targets(train, 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(2, 30), min_size=1, max_size=5), st.integers(1, 6), RECENT)
def test_sliding_windows_train_on_the_recent_targets_with_full_histories(
    lengths, max_history, recent
) -> None:
    train = _train(lengths)
    windows = sliding_window_samples(train, max_history, recent_targets=recent)
    assert sorted(windows["target"]) == sorted(_expected_targets(train, recent))
    assert windows["length"] == [len(history) for history in windows["history"]]
    for history, target in zip(windows["history"], windows["target"], strict=True):
        user, index = target.split("-")
        assert history == [f"{user}-{j}" for j in range(max(0, int(index) - max_history), int(index))]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=6))
def test_refit_sequences_append_each_validation_item(lengths) -> None:
    train = _train(lengths)
    targets = [f"val-{user}" for user in train["user_id"]]
    splits = DatasetDict(
        {"train": train, "validation": Dataset.from_dict({"user_id": train["user_id"], "target": targets})}
    )
    refit = refit_sequences(splits)
    assert refit["user_id"] == train["user_id"]
    assert refit["item_ids"] == [
        [*items, target] for items, target in zip(train["item_ids"], targets, strict=True)
    ]
    assert refit["item_ids"] == seen_items(splits, "test")  # what the test filter excludes
    assert count_targets(refit) == count_targets(train) + len(lengths)  # one more target per user


def test_sliding_windows_match_definition() -> None:
    windows = sliding_window_samples(_train([5]), max_history=2)
    assert windows["history"] == [["u0-0"], ["u0-0", "u0-1"], ["u0-1", "u0-2"], ["u0-2", "u0-3"]]
    assert windows["target"] == ["u0-1", "u0-2", "u0-3", "u0-4"]
    with pytest.raises(ValueError, match="max_history"):
        sliding_window_samples(_train([5]), max_history=0)


@pytest.fixture()
def tokenizer() -> S2GRTokenizer:
    items = [f"i{n}" for n in range(6)]
    codes = np.array([[0, 1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0], [1, 1, 1, 0], [2, 0, 0, 0], [2, 1, 1, 0]])
    return S2GRTokenizer(
        item_ids=items, codes=codes, codebook_size=3, code_clusters=np.zeros((3, 3), dtype=np.int64)
    )


def test_segment_collator_target_mask(tokenizer) -> None:
    batch = SegmentCollator(tokenizer)(
        [{"item_ids": ["i0", "i1", "i2"], "first_target": 2}, {"item_ids": ["i3", "i4"], "first_target": 1}]
    )
    assert batch["sequence_codes"].shape == (2, 3, 4)
    assert batch["sequence_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["target_mask"].tolist() == [[False, False, True], [False, True, False]]
    assert batch["sequence_codes"][0, 2].tolist() == [
        tokenizer.code_token_id(level, code) for level, code in enumerate([1, 0, 1, 0])
    ]


def test_history_collator_labels_with_thinking(tokenizer) -> None:
    batch = HistoryCollator(tokenizer)([{"history": ["i0", "i1"], "target": "i5"}])
    think = [tokenizer.think_token_id(step) for step in range(3)]
    codes = [tokenizer.code_token_id(level, code) for level, code in enumerate([2, 1, 1, 0])]
    assert batch["labels"].tolist() == [
        [think[0], codes[0], think[1], codes[1], think[2], codes[2], codes[3]]
    ]
    assert batch["input_ids"].shape == (1, 8) and torch.equal(
        batch["attention_mask"], torch.ones(1, 8, dtype=batch["attention_mask"].dtype)
    )


def test_run_config_yaml_round_trip_and_errors(tmp_path) -> None:
    config = RunConfig(epochs=3, model={"d_model": 64}, codebook={"codebook_size": 64})
    path = tmp_path / "run.yaml"
    config.save(path)
    assert RunConfig.from_yaml(path) == config
    path.write_text("epochs: 2\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['learning_rate'\]"):
        RunConfig.from_yaml(path)
    with pytest.raises(ValueError, match="Unknown codebook field"):
        RunConfig(codebook={"levels": 3})
    with pytest.raises(ValueError, match="encoder_mode"):
        RunConfig(encoder_mode="sideways")
    with pytest.raises(ValueError, match="recent_targets must be ≥ 1"):
        RunConfig(recent_targets=0)
    with pytest.raises(FileNotFoundError, match="no such config file"):
        RunConfig.from_yaml(tmp_path / "absent.yaml")
