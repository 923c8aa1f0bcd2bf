"""Collaborative codes (s2gr.codebook.collaborative): spectral coordinates of the co-occurrence graph fused with
the content features, and new items coded from their text alone."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from s2gr.codebook import CodebookConfig, FrozenQuantizer, build_semantic_ids
from s2gr.codebook.collaborative import TextToCollab, collaborative_block, spectral_embedding
from s2gr.codebook.config import collab_dim_for
from s2gr.codebook.graph import cooccurrence_counts, normalize_adjacency
from s2gr.codebook.semantic_ids import quantizer_inputs
from s2gr.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore:Degenerate Semantic IDs")

SMALL = {
    "num_levels": 2,
    "codebook_size": 8,
    "latent_dim": 8,
    "hidden_dims": (32, 16),
    "warmup_epochs": 3,
    "epochs": 15,
    "batch_size": 128,
    "kmeans_iters": 10,
    "num_clusters": 2,
    "use_graph": False,  # the content part stays pure noise: only the collaborative block can find groups
}


def communities(
    num_items: int = 240, groups: int = 4, users: int = 300, isolated: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Content that says nothing (random unit vectors), a group per item, and users who each consume items
    of one group only; the last `isolated` items are never consumed."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_items, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    group = np.arange(num_items) % groups
    consumed = np.arange(num_items - isolated)
    sequences = []
    for _ in range(users):
        pool = consumed[group[consumed] == rng.integers(groups)]
        sequences.append(rng.choice(pool, size=int(rng.integers(4, 12))))
    return x, group, sequences


def purity(codes: np.ndarray, group: np.ndarray) -> float:
    """Share of items whose first-level code's majority group is their own group."""
    hits = 0
    for code in np.unique(codes):
        members = group[codes == code]
        hits += np.bincount(members).max()
    return hits / len(group)


def adjacency(sequences: list[np.ndarray], num_items: int) -> sp.csr_matrix:
    return normalize_adjacency(cooccurrence_counts(sequences, num_items, 3), self_loops=False)


def test_spectral_embedding_separates_communities_and_is_deterministic() -> None:
    x, group, sequences = communities(isolated=8)
    adj = adjacency(sequences, len(x))
    first, again = spectral_embedding(adj, 3, seed=0), spectral_embedding(adj, 3, seed=0)
    assert first.shape == (len(x), 3) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    linked = adj.getnnz(axis=1) > 0
    np.testing.assert_allclose(np.linalg.norm(first[linked], axis=1), 1.0, atol=1e-5)
    assert not first[~linked].any()  # never consumed: no coordinates
    # Items of one community point the same way; items of two communities do not.
    centres = np.stack([first[linked & (group == g)].mean(0) for g in range(4)])  # (4, 3)
    within = np.mean(
        [np.linalg.norm(first[linked & (group == g)] - centres[g], axis=1).mean() for g in range(4)]
    )
    between = np.mean([np.linalg.norm(centres[a] - centres[b]) for a in range(4) for b in range(a + 1, 4)])
    assert within < 0.2 * between


def test_spectral_embedding_rejects_bad_sizes() -> None:
    _, _, sequences = communities(num_items=10, users=20)
    adj = adjacency(sequences, 10)
    with pytest.raises(InputError, match="collab_dim must be >= 1"):
        spectral_embedding(adj, 0)
    with pytest.raises(InputError, match="at most the number of items minus 2"):
        spectral_embedding(adj, 9)


def test_text_to_collab_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)).astype(np.float32)
    true_weight, true_bias = rng.normal(size=(6, 3)), np.array([0.5, -1.0, 2.0])
    fitted = TextToCollab.fit(x, x @ true_weight + true_bias)
    np.testing.assert_allclose(
        fitted.predict(x), x @ true_weight + true_bias, rtol=0.05, atol=0.1
    )  # ridge shrinks
    assert fitted.predict(x[:2]).shape == (2, 3)
    doubled = fitted.scaled(2.0)
    np.testing.assert_allclose(doubled.predict(x), 2 * fitted.predict(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="at least 2 items"):
        TextToCollab.fit(x[:1], x[:1, :3])


@pytest.mark.parametrize("weight", [0.5, 1.0, 2.0])
def test_collaborative_block_has_the_requested_share_of_the_variance(weight: float) -> None:
    x, _, sequences = communities(isolated=5)
    block, text_map = collaborative_block(x, x, sequences, window=3, dim=4, weight=weight)
    assert block.shape == (len(x), 4)

    def rms(a: np.ndarray) -> float:
        return float(np.sqrt(np.square(a - a.mean(0)).sum(1).mean()))

    assert rms(block) == pytest.approx(weight * rms(x), rel=1e-4)
    # The never-consumed items' rows are the map's prediction from their text, scaled like the rest.
    np.testing.assert_allclose(block[-5:], text_map.predict(x[-5:]), rtol=1e-5, atol=1e-6)


def test_collaborative_codes_follow_behaviour_where_content_is_noise() -> None:
    x, group, sequences = communities()
    content_only = build_semantic_ids(x, sequences, CodebookConfig(**SMALL, collab_dim=0), progress=False)
    fused = build_semantic_ids(x, sequences, CodebookConfig(**SMALL, collab_dim=4), progress=False)
    stronger = build_semantic_ids(
        x, sequences, CodebookConfig(**SMALL, collab_dim=4, collab_weight=2.0), progress=False
    )
    chance = purity(content_only.codes[:, 0], group)  # about 1/3 with 8 codes for 4 groups
    half = purity(fused.codes[:, 0], group)  # behaviour holds half of the features' variance
    most = purity(stronger.codes[:, 0], group)  # four fifths
    assert chance < 0.5 and half > chance + 0.3 and most > max(half, 0.9)
    assert fused.codes.shape == content_only.codes.shape
    assert len(np.unique(fused.codes, axis=0)) == len(x)  # still unique SIDs


def test_new_items_get_codes_from_text_alone() -> None:
    x, _, sequences = communities(isolated=6)
    config = CodebookConfig(**SMALL, collab_dim=4)
    built = build_semantic_ids(x, sequences, config, progress=False)
    quantizer = built.quantizer
    # The catalog's never-consumed items were coded from their text exactly as a new item would be.
    np.testing.assert_array_equal(quantizer.assign(x[-6:]), built.codes[-6:, :-1])
    features, _ = quantizer_inputs(x, sequences, config)
    np.testing.assert_allclose(quantizer.item_features(x[-6:]), features[-6:], rtol=1e-5, atol=1e-6)
    assert quantizer.item_features(x).shape == features.shape == (len(x), 16 + 4)
    # Brand-new items (content only, 16 dims) get codes; the saved state rebuilds the same quantizer.
    new = np.random.default_rng(5).normal(size=(7, 16)).astype(np.float32)
    codes = quantizer.assign(new)
    assert codes.shape == (7, 2) and codes.min() >= 0 and codes.max() < 8
    reloaded = FrozenQuantizer.from_state_dict(
        {k: torch.as_tensor(np.asarray(v)) for k, v in quantizer.state_dict().items()}
    )
    np.testing.assert_array_equal(reloaded.assign(new), codes)
    # Without the map the quantizer would need the 20-dim fused input: the map is what makes text enough.
    assert "collab_weight" in quantizer.state_dict()
    content_only = build_semantic_ids(x, sequences, CodebookConfig(**SMALL, collab_dim=0), progress=False)
    assert "collab_weight" not in content_only.quantizer.state_dict()


def test_collaborative_codes_are_deterministic() -> None:
    x, _, sequences = communities()
    config = CodebookConfig(**SMALL, collab_dim=4, quantizer="rkmeans")
    first = build_semantic_ids(x, sequences, config, progress=False)
    second = build_semantic_ids(x, sequences, config, progress=False)
    np.testing.assert_array_equal(first.codes, second.codes)


def test_collaborative_config_validation() -> None:
    with pytest.raises(InputError, match="collab_dim must be an int >= 0"):
        CodebookConfig(collab_dim=-1)
    with pytest.raises(InputError, match="collab_weight must be > 0"):
        CodebookConfig(collab_weight=0.0)
    assert CodebookConfig.plain(collab_dim=0).collab_dim == 0
    assert CodebookConfig.plain().collab_dim == 0


def test_collab_dim_is_sized_to_the_catalog_unless_set() -> None:
    assert collab_dim_for(127) == 0 and collab_dim_for(128) == 32 and collab_dim_for(10**6) == 32
    assert CodebookConfig().collab_dim is None
    assert CodebookConfig().for_catalog(1682).collab_dim == 32
    assert CodebookConfig().for_catalog(100).collab_dim == 0  # a small catalog: text alone
    assert CodebookConfig(collab_dim=0).for_catalog(5000).collab_dim == 0  # set values stay
    assert CodebookConfig(collab_dim=8).for_catalog(100).collab_dim == 8
    assert CodebookConfig.plain().for_catalog(5000).collab_dim == 0  # TIGER's codes: text alone
    with pytest.raises(InputError, match="collab_dim must be an int >= 0"):
        CodebookConfig(collab_dim=-1)


def test_a_catalog_without_co_occurrences_gets_codes_from_text_unless_collab_dim_is_set() -> None:
    x, _, _ = communities()
    alone = build_semantic_ids(x, [], CodebookConfig(**SMALL), progress=False)  # C unset: text alone
    assert alone.config.collab_dim == 0 and alone.codes.shape[0] == len(x)
    single = [np.array([3]), np.array([5, 5])]  # histories without two distinct items: no co-occurrence
    assert build_semantic_ids(x, single, CodebookConfig(**SMALL), progress=False).config.collab_dim == 0
    with pytest.raises(InputError, match="collab_dim=0"):  # asked for explicitly: a clear error
        build_semantic_ids(x, [], CodebookConfig(**SMALL, collab_dim=4), progress=False)
