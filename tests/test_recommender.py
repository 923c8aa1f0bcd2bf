"""`S2GRRecommender`: item ids in and out around a saved tiny model, refusing a tokenizer of another model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from tiny_runs import single_thread

from s2gr import S2GRRecommender, S2GRTokenizer


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield


def _other_tokenizer(tokenizer: S2GRTokenizer, change: str) -> S2GRTokenizer:
    """A tokenizer of the same catalog that differs from `tokenizer` in one respect."""
    kwargs = {
        "item_ids": tokenizer.item_ids,
        "codes": tokenizer.codes,
        "codebook_size": tokenizer.codebook_size,
        "dedup_size": tokenizer.dedup_size,
        "num_thinking": tokenizer.num_thinking,
        "code_clusters": tokenizer.code_clusters,
    }
    if change == "num_levels":  # one more level in front: L + 1 levels, same items
        kwargs["codes"] = np.concatenate([np.zeros((tokenizer.num_items, 1), np.int64), tokenizer.codes], 1)
        kwargs.update(num_thinking=None, code_clusters=None)
    elif change == "codebook_size":
        kwargs.update(codebook_size=2 * tokenizer.codebook_size, code_clusters=None)
    elif change == "dedup_size":
        kwargs["dedup_size"] = tokenizer.dedup_size + 1
    elif change == "num_thinking":
        kwargs["num_thinking"] = 0
    else:  # the same sizes, another codebook's cluster map
        kwargs["code_clusters"] = (tokenizer.code_clusters + 1) % (tokenizer.code_clusters.max() + 1)
    return S2GRTokenizer(**kwargs)


@pytest.mark.parametrize(
    "change", ["num_levels", "codebook_size", "dedup_size", "num_thinking", "code_clusters"]
)
def test_recommender_refuses_a_tokenizer_of_another_model(loaded, change: str) -> None:
    model, tokenizer = loaded
    other = _other_tokenizer(tokenizer, change)
    name = "cluster maps" if change == "code_clusters" else change
    with pytest.raises(ValueError, match=rf"does not belong to this model: .*{name}.*same checkpoint"):
        S2GRRecommender(model, other)
    with pytest.raises(TypeError, match="S2GR tokenizer"):
        S2GRRecommender(model, object())


def test_recommender_batches_and_restores_training_mode(loaded) -> None:
    model, tokenizer = loaded
    histories = [tokenizer.item_ids[i : i + 4] for i in range(0, 20, 4)]
    exclude = [[*history, "not-in-the-catalog"] for history in histories]  # unknown exclusions are ignored
    whole = S2GRRecommender(model, tokenizer).recommend(
        histories, top_k=5, num_beams=5, exclude=exclude, return_scores=True
    )
    model.train()
    try:
        batched = S2GRRecommender(model, tokenizer).recommend(
            histories, top_k=5, num_beams=5, exclude=exclude, return_scores=True, batch_size=2
        )
        assert model.training
    finally:
        model.eval()
    assert [[item for item, _ in row] for row in batched] == [[item for item, _ in row] for row in whole]
    for row_a, row_b in zip(batched, whole, strict=True):
        np.testing.assert_allclose([s for _, s in row_a], [s for _, s in row_b], rtol=1e-5)
    assert all(
        len(row) == 5 and not {item for item, _ in row} & set(h)
        for row, h in zip(whole, histories, strict=True)
    )


def test_from_pretrained_loads_the_folder_the_demo_prints(tiny_s2gr, loaded) -> None:
    model, tokenizer = loaded
    histories = [tokenizer.item_ids[:3], tokenizer.item_ids[5:9]]
    recommender = S2GRRecommender.from_pretrained(tiny_s2gr.folder, device="cpu")
    assert not recommender.model.training
    expected = S2GRRecommender(model, tokenizer).recommend(histories, num_beams=5, return_scores=True)
    assert recommender.recommend(histories, num_beams=5, return_scores=True) == expected
