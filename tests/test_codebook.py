"""Tests of the CoBa codebook (s2gr.codebook) on small synthetic data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from s2gr.codebook import (
    CodebookConfig,
    FrozenQuantizer,
    SemanticIDs,
    build_cooccurrence_graph,
    build_semantic_ids,
    codebook_size_for,
    dedup_codes,
    format_stats_table,
    plot_code_usage,
    propagate,
    propagation_weights,
    reassign_collisions,
    uniformity_loss,
)
from s2gr.codebook.balancing import UsageBalancer, repair_dead_codes
from s2gr.codebook.graph import cooccurrence_counts
from s2gr.codebook.kmeans import kmeans
from s2gr.codebook.semantic_ids import aligned_features, torch_threads, warn_if_degenerate
from s2gr.configuration_s2gr import S2GRConfig, num_clusters_for

# The tiny configs below leave collision groups larger than K on purpose or by undertraining; the warning
# itself is tested in test_degenerate_codes_warn_with_the_remedy_and_sound_codes_do_not.
pytestmark = pytest.mark.filterwarnings("ignore:Degenerate Semantic IDs")

SMALL = {
    "num_levels": 2,
    "codebook_size": 16,
    "latent_dim": 8,
    "hidden_dims": (32, 16),
    "warmup_epochs": 3,
    "epochs": 15,
    "batch_size": 128,
    "kmeans_iters": 10,
    "num_clusters": 4,
    # The content path (text + propagation); the collaborative block has its own tests
    # (test_collaborative_codes.py), where training codes come from the graph and new items' from text.
    "collab_dim": 0,
}


def clustered(n: int = 400, dim: int = 24, clusters: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm points around `clusters` centres, and each point's cluster."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    x = rng.normal(size=(clusters, dim))[labels] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def histories(labels: np.ndarray, users: int = 150, seed: int = 1) -> list[np.ndarray]:
    """Users who mostly watch items of one cluster."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        pool = np.flatnonzero(labels == rng.integers(0, labels.max() + 1))
        out.append(rng.choice(pool, size=int(rng.integers(3, 12))))
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    """The test models are tiny: on a shared 2-core machine thread hand-offs cost more than they save."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, list[np.ndarray]]:
    x, labels = clustered()
    return x, histories(labels)


@pytest.fixture(scope="module")
def built(data: tuple[np.ndarray, list[np.ndarray]]) -> SemanticIDs:
    x, seqs = data
    return build_semantic_ids(x, seqs, CodebookConfig(**SMALL), progress=False)


# --- graph and propagation ---------------------------------------------------------------------


def test_cooccurrence_counts_by_hand() -> None:
    # window 1: pairs (0,1) twice (once each order), (1,2), (2,3); the repeat 3,3 is not an edge.
    counts = cooccurrence_counts([np.array([0, 1, 2]), np.array([1, 0]), np.array([2, 3, 3])], 5, 1).toarray()
    expected = np.zeros((5, 5))
    for i, j, w in [(0, 1, 2), (1, 2, 1), (2, 3, 1)]:
        expected[i, j] = expected[j, i] = w
    np.testing.assert_array_equal(counts, expected)
    # window 2 adds the pair two apart inside the first history only: (0, 2).
    wider = cooccurrence_counts([np.array([0, 1, 2]), np.array([1, 0]), np.array([2, 3, 3])], 5, 2).toarray()
    assert wider[0, 2] == wider[2, 0] == 1
    assert wider[1, 3] == 0  # pairs never cross two histories


def test_normalised_graph_values() -> None:
    adj = build_cooccurrence_graph([np.array([0, 1, 2]), np.array([2, 3])], 5, 1)
    assert sp.issparse(adj)
    dense = adj.toarray()
    np.testing.assert_allclose(dense, dense.T)
    # Ã = A + I; degrees 0:2, 1:3, 2:3, 3:2, 4:1 (isolated item 4 keeps only its self-loop).
    assert dense[0, 1] == pytest.approx(1 / np.sqrt(2 * 3))
    assert dense[1, 2] == pytest.approx(1 / 3)
    assert dense[2, 3] == pytest.approx(1 / np.sqrt(3 * 2))
    assert dense[0, 0] == pytest.approx(1 / 2)
    assert dense[4, 4] == pytest.approx(1.0)
    assert dense[0, 3] == 0


def test_graph_without_self_loops_has_zero_isolated_rows() -> None:
    dense = build_cooccurrence_graph([np.array([0, 1])], 3, 1, self_loops=False).toarray()
    np.testing.assert_allclose(dense, [[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    assert np.isfinite(dense).all()


def test_graph_rejects_out_of_range_items() -> None:
    with pytest.raises(ValueError, match="item indices"):
        build_cooccurrence_graph([np.array([0, 5])], 3, 1)


def dense_propagation(x: np.ndarray, adj: np.ndarray, alpha: float, hops: int) -> np.ndarray:
    """Literal METHOD 2.2 formula with dense matrices."""
    betas = np.array([alpha * (1 - alpha) ** k for k in range(hops + 1)])
    betas /= betas.sum()
    h, out = x, betas[0] * x
    for k in range(1, hops + 1):
        h = (1 - alpha) * adj @ h + alpha * x
        out = out + betas[k] * h
    return out


def test_propagation_matches_dense_reference() -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 12, size=6) for _ in range(8)]
    adj = build_cooccurrence_graph(seqs, 12, 2)
    x = rng.normal(size=(12, 5))
    np.testing.assert_allclose(
        propagate(x, adj, 0.3, 3), dense_propagation(x, adj.toarray(), 0.3, 3), atol=1e-12
    )
    np.testing.assert_allclose(propagate(x, adj, 1.0, 4), x, atol=1e-12)  # alpha = 1 keeps X
    np.testing.assert_allclose(propagate(x, adj, 0.5, 0), x)  # no hop: H_align = H_0 = X


def test_isolated_item_keeps_its_content() -> None:
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    out = propagate(x, build_cooccurrence_graph([np.array([0, 1, 2])], 4, 1), 0.2, 3)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[3], x[3], rtol=1e-6)
    assert not np.allclose(out[0], x[0])


def test_propagation_weights() -> None:
    betas = propagation_weights(0.3, 3)
    assert betas.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(betas[1:] / betas[:-1], 0.7)


# --- collisions --------------------------------------------------------------------------------


def test_dedup_example() -> None:
    codes = np.array([[0, 1], [0, 1], [2, 3], [0, 1], [2, 3], [5, 5]])
    np.testing.assert_array_equal(dedup_codes(codes), [0, 1, 0, 2, 1, 0])


@settings(max_examples=60, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 40), st.integers(1, 3)), elements=st.integers(0, 3)))
def test_dedup_property(codes: np.ndarray) -> None:
    dedup = dedup_codes(codes)
    full = np.concatenate([codes, dedup[:, None]], axis=1)
    assert len(np.unique(full, axis=0)) == len(codes)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    group_size = counts[inverse.reshape(-1)]
    assert (dedup[group_size == 1] == 0).all()
    assert (dedup < group_size).all()  # dedup codes of a group are exactly 0..size-1
    for row in range(len(codes)):  # the lowest item index of every group keeps 0
        earlier = (codes[:row] == codes[row]).all(1).sum()
        assert dedup[row] == earlier


def test_reassign_collisions_moves_to_nearest_free_code() -> None:
    codes = np.array([[0, 0], [0, 0], [1, 0], [0, 0]])
    # Colliding items 1 and 3 (item 0 keeps (0, 0)). Item 1 prefers 0 (taken), then 2; item 3 then
    # prefers 2 (now taken by item 1) and gets 1.
    scores = np.array([[0.0, 3.0, 1.0], [0.0, 2.0, 1.0]])
    new = reassign_collisions(codes, scores)
    np.testing.assert_array_equal(new, [[0, 0], [0, 2], [1, 0], [0, 1]])
    assert (dedup_codes(new) == 0).all()


# --- building blocks ---------------------------------------------------------------------------


def test_uniformity_loss_zero_when_far_and_positive_when_close() -> None:
    far = 5.0 * torch.eye(8)  # all pairwise distances equal: no pair under 0.25 x mean distance
    assert float(uniformity_loss(far, 0.25)) == 0.0
    close = far.clone()
    close[1] = close[0] + 0.01
    close.requires_grad_(True)
    loss = uniformity_loss(close, 0.25)
    assert float(loss.detach()) > 0
    loss.backward()
    assert torch.isfinite(close.grad).all()
    assert close.grad[1].norm() > 0  # the close pair is pushed apart
    coincide = far.clone()
    coincide[1] = coincide[0]  # exactly equal codes: the distance is 0, the gradient must stay finite
    coincide.requires_grad_(True)
    uniformity_loss(coincide, 0.25).backward()
    assert torch.isfinite(coincide.grad).all()


def test_balancer_bias_sign_and_cap() -> None:
    balancer = UsageBalancer(1, 4, strength=1.0, cap=0.5, decay=0.0)
    np.testing.assert_allclose(balancer.offsets(0).numpy(), 0.0)  # no error scale yet
    balancer.update(0, torch.tensor([0, 0, 0, 1, 1, 2, 2, 3]), torch.full((8,), 2.0))
    offsets = balancer.offsets(0)
    # shares x K = 1.5, 1, 1, 0.5; error scale 2.0; ln(1.5) = 0.405 < cap 0.5, ln(0.5) = -0.69 -> -0.5.
    np.testing.assert_allclose(offsets.numpy(), [2 * np.log(1.5), 0.0, 0.0, -1.0], rtol=1e-5)


def test_repair_dead_codes_uses_every_code() -> None:
    latents = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    codebooks = torch.stack([torch.cat([latents[:3], torch.full((2, 2), 100.0)])])  # 2 far, dead codes
    moved = repair_dead_codes(codebooks, torch.zeros(1, 5), latents)
    assert moved == [2]
    codes = torch.cdist(latents, codebooks[0]).argmin(1)
    assert torch.bincount(codes, minlength=5).min() >= 1


def test_torch_threads_is_scoped() -> None:
    before = torch.get_num_threads()
    with torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_kmeans_deterministic_and_fills_clusters() -> None:
    x = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    a = kmeans(x, 10, 20, torch.Generator().manual_seed(3))
    b = kmeans(x, 10, 20, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.bincount(a[1], minlength=10).min() >= 1
    few = kmeans(x[:3], 5, 5, torch.Generator().manual_seed(0))[0]  # fewer points than clusters
    assert few.shape == (5, 4) and torch.isfinite(few).all()


def test_config_validation_and_presets() -> None:
    with pytest.raises(ValueError, match="quantizer"):
        CodebookConfig(quantizer="vq")
    with pytest.raises(ValueError, match="alpha"):
        CodebookConfig(alpha=0.0)
    with pytest.raises(ValueError, match="num_clusters"):
        CodebookConfig(codebook_size=8, num_clusters=16)
    with pytest.raises(ValueError, match="codebook_size"):
        CodebookConfig(codebook_size=0)
    with pytest.raises(ValueError, match="num_threads"):
        CodebookConfig(num_threads=0)
    with pytest.raises(ValueError, match="num_clusters"):
        CodebookConfig(num_clusters=0)
    with pytest.raises(ValueError, match="num_items"):
        CodebookConfig().for_catalog(0)
    plain = CodebookConfig.plain(epochs=3)
    assert not (plain.use_graph or plain.balance or plain.reset_dead_codes or plain.uniformity_weight)
    assert plain.epochs == 3
    assert CodebookConfig.rkmeans().quantizer == "rkmeans"


def test_codebook_size_follows_the_catalog() -> None:
    # MovieLens-100K, MovieLens-1M, Amazon Beauty (TIGER's 256), tiny and huge catalogs
    sizes = {n: codebook_size_for(n) for n in (1682, 3416, 12101, 10, 10**7)}
    assert sizes == {1682: 32, 3416: 64, 12101: 256, 10: 16, 10**7: 256}
    assert [num_clusters_for(k) for k in (16, 32, 64, 256)] == [4, 4, 4, 16]
    resolved = CodebookConfig().for_catalog(1682)
    assert (resolved.codebook_size, resolved.num_clusters) == (32, 4)
    explicit = CodebookConfig(codebook_size=128, num_clusters=2).for_catalog(1682)
    assert (explicit.codebook_size, explicit.num_clusters) == (128, 2)  # set values are kept
    assert CodebookConfig(codebook_size=256).for_catalog(1682).num_clusters == 16


@given(st.integers(1, 10**8), st.integers(1, 10**8))
def test_codebook_size_is_a_monotone_power_of_two(a: int, b: int) -> None:
    small, large = codebook_size_for(min(a, b)), codebook_size_for(max(a, b))
    assert 16 <= small <= large <= 256
    assert small & (small - 1) == 0
    assert 1 <= num_clusters_for(small) <= small


@given(st.sampled_from([16, 32, 64, 128, 256]))
def test_model_and_codebook_default_to_the_same_clusters(k: int) -> None:
    # A model configured by hand for a K-code codebook must expect the codebook's default Kc.
    assert (
        S2GRConfig(codebook_size=k).num_clusters
        == CodebookConfig(codebook_size=k).for_catalog(10**4).num_clusters
    )


def test_default_config_sizes_the_codebook_to_the_catalog(data: tuple[np.ndarray, list[np.ndarray]]) -> None:
    x, seqs = data  # 400 items: 400 / 48 is nearest 8, raised to the floor of 16
    quick = {key: SMALL[key] for key in ("latent_dim", "hidden_dims", "batch_size", "kmeans_iters")}
    built = build_semantic_ids(x, seqs, CodebookConfig(epochs=2, warmup_epochs=1, **quick), progress=False)
    assert (built.config.codebook_size, built.config.num_clusters) == (16, 4)
    assert built.code_vectors.shape[1] == 16 and built.codes[:, :-1].max() < 16
    assert built.cluster_of_code.max() < 4 and len(np.unique(built.codes, axis=0)) == len(x)


# --- end to end --------------------------------------------------------------------------------


def test_semantic_ids_shapes_and_uniqueness(built: SemanticIDs) -> None:
    n, levels, k = 400, SMALL["num_levels"], SMALL["codebook_size"]
    assert built.codes.shape == (n, levels + 1) and built.codes.dtype == np.int64
    assert len(np.unique(built.codes, axis=0)) == n
    assert built.codes[:, :levels].min() >= 0 and built.codes[:, :levels].max() < k
    np.testing.assert_array_equal(built.codes[:, -1], dedup_codes(built.codes[:, :levels]))
    assert built.stats["dedup_size"] == built.codes[:, -1].max() + 1
    _, inverse, counts = np.unique(built.codes[:, :levels], axis=0, return_inverse=True, return_counts=True)
    assert built.stats["colliding_items"] == int((counts[inverse.reshape(-1)] > 1).sum())
    assert built.code_vectors.shape == (levels, k, SMALL["latent_dim"])
    assert built.code_vectors.dtype == np.float32


def test_cluster_map(built: SemanticIDs) -> None:
    levels, k, kc = SMALL["num_levels"], SMALL["codebook_size"], SMALL["num_clusters"]
    assert built.cluster_of_code.shape == (levels, k) and built.cluster_of_code.dtype == np.int64
    assert built.cluster_of_code.min() >= 0 and built.cluster_of_code.max() < kc
    assert built.cluster_centroids.shape == (levels, kc, SMALL["latent_dim"])
    for level in range(levels):  # every code sits in the cluster of its nearest centroid
        dist = ((built.code_vectors[level][:, None] - built.cluster_centroids[level][None]) ** 2).sum(-1)
        np.testing.assert_array_equal(dist.argmin(1), built.cluster_of_code[level])


def test_stats_and_table(built: SemanticIDs) -> None:
    stats = built.stats
    assert len(stats["utilisation"]) == SMALL["num_levels"]
    assert all(0 < u <= 1 for u in stats["utilisation"])
    assert all(1 <= p <= SMALL["codebook_size"] + 1e-6 for p in stats["usage_perplexity"])
    assert 0 <= stats["collision_rate"] <= 1 and 0 < stats["recon_mse"] < 1.5
    table = format_stats_table(stats)
    assert "utilisation" in table and "collision_rate" in table and "level 2" in table


def test_assign_reproduces_training_codes(
    data: tuple[np.ndarray, list[np.ndarray]], built: SemanticIDs
) -> None:
    x, seqs = data
    levels = SMALL["num_levels"]
    h_align = aligned_features(x, seqs, CodebookConfig(**SMALL))
    np.testing.assert_array_equal(built.quantizer.assign(x, graph_features=h_align), built.codes[:, :levels])
    # Raw content alone moves only some items (their neighbours' content is missing).
    assert (built.quantizer.assign(x) == built.codes[:, :levels]).all(1).mean() > 0.5


def test_quantizer_state_dict_round_trip(built: SemanticIDs) -> None:
    state = built.quantizer.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    clone = FrozenQuantizer.from_state_dict(state)
    x = np.random.default_rng(5).normal(size=(30, 24)).astype(np.float32)
    np.testing.assert_array_equal(clone.assign(x), built.quantizer.assign(x))


def test_deterministic_given_seed(data: tuple[np.ndarray, list[np.ndarray]], built: SemanticIDs) -> None:
    x, seqs = data
    again = build_semantic_ids(x, seqs, CodebookConfig(**SMALL), progress=False)
    np.testing.assert_array_equal(again.codes, built.codes)
    np.testing.assert_array_equal(again.cluster_of_code, built.cluster_of_code)
    assert not np.array_equal(  # and the seed matters
        build_semantic_ids(x, seqs, CodebookConfig(**{**SMALL, "seed": 1}), progress=False).codes, built.codes
    )


def test_balancing_raises_utilisation_on_skewed_data() -> None:
    rng = np.random.default_rng(0)
    blob = 0.02 * rng.normal(size=(360, 16)) + 3.0  # 90 % of the items in one tight blob
    spread = rng.normal(size=(40, 16))
    x = np.concatenate([blob, spread]).astype(np.float32)
    small = {**SMALL, "uniformity_weight": 0.0, "use_graph": False}
    plain = build_semantic_ids(x, [], CodebookConfig.plain(**small), progress=False)
    balanced = build_semantic_ids(x, [], CodebookConfig(**small), progress=False)
    assert np.mean(balanced.stats["utilisation"]) > np.mean(plain.stats["utilisation"])
    assert min(balanced.stats["utilisation"]) >= 0.9


def test_rkmeans_quantizer(data: tuple[np.ndarray, list[np.ndarray]]) -> None:
    x, seqs = data
    sids = build_semantic_ids(x, seqs, CodebookConfig.rkmeans(**SMALL), progress=False)
    assert len(np.unique(sids.codes, axis=0)) == len(x)
    assert sids.code_vectors.shape == (2, 16, 8)
    assert min(sids.stats["utilisation"]) == 1.0  # k-means re-seeds empty clusters
    h_align = aligned_features(x, seqs, CodebookConfig(**SMALL))
    np.testing.assert_array_equal(sids.quantizer.assign(x, graph_features=h_align), sids.codes[:, :2])
    again = build_semantic_ids(x, seqs, CodebookConfig.rkmeans(**SMALL), progress=False)
    np.testing.assert_array_equal(again.codes, sids.codes)


def test_reassign_collisions_end_to_end(data: tuple[np.ndarray, list[np.ndarray]]) -> None:
    x, _ = data
    tiny = {**SMALL, "codebook_size": 4, "num_clusters": 2}  # 16 tuples for 400 items: many collisions
    with pytest.warns(UserWarning, match="Degenerate Semantic IDs.*larger codebook"):
        plain = build_semantic_ids(x, [], CodebookConfig.rkmeans(**tiny), progress=False)
    moved = build_semantic_ids(
        x, [], CodebookConfig.rkmeans(**tiny, reassign_collisions=True), progress=False
    )
    assert moved.stats["reassigned_items"] > 0
    assert moved.stats["colliding_items"] < plain.stats["colliding_items"]
    np.testing.assert_array_equal(moved.codes[:, 0], plain.codes[:, 0])  # only the last level moves
    assert len(np.unique(moved.codes, axis=0)) == len(x)


def test_degenerate_codes_warn_with_the_remedy_and_sound_codes_do_not(
    data: tuple[np.ndarray, list[np.ndarray]],
) -> None:
    x, seqs = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sound codes (groups <= K) must not warn
        sound = build_semantic_ids(x, seqs, CodebookConfig.rkmeans(**SMALL), progress=False)
    assert sound.stats["largest_group"] <= SMALL["codebook_size"]
    config = CodebookConfig(**SMALL)
    collapsed = {"largest_group": 900, "collision_rate": 0.98, "num_items": 1000, "recon_mse": 0.999}
    with pytest.warns(UserWarning, match=r"98\.0% of the 1,000 items.*up to 900.*quantizer='rkmeans'"):
        warn_if_degenerate(collapsed, config)
    with pytest.warns(UserWarning, match="larger codebook.*train the RQ-VAE longer"):  # not collapsed
        warn_if_degenerate({**collapsed, "recon_mse": 0.4}, config)
    with pytest.warns(UserWarning, match=r"larger codebook \(codebook_size, num_levels\), or check"):
        warn_if_degenerate(collapsed, CodebookConfig.rkmeans(**SMALL))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_degenerate({**collapsed, "largest_group": SMALL["codebook_size"]}, config)


def test_plot_code_usage_writes_png(built: SemanticIDs, tmp_path) -> None:
    path = tmp_path / "usage.png"
    plot_code_usage(built.codes[:, :-1], SMALL["codebook_size"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
