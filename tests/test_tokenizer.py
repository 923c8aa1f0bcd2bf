"""Tests of `S2GRTokenizer` on synthetic Semantic IDs."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from s2gr.tokenization_s2gr import InvalidSidError, PrefixTables, S2GRTokenizer, UnknownItemError

HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def with_dedup(prefixes: np.ndarray) -> np.ndarray:
    """`(N, L)` level codes → `(N, L+1)` unique SIDs: dedup = rank of the item among equal level codes."""
    order = np.lexsort(prefixes.T[::-1])
    ordered = prefixes[order]
    new_group = np.ones(len(ordered), dtype=bool)
    new_group[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(ordered)), 0))
    dedup = np.empty(len(ordered), dtype=np.int64)
    dedup[order] = np.arange(len(ordered)) - group_start
    return np.concatenate([prefixes, dedup[:, None]], axis=1)


def random_catalog(n: int, levels: int, size: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"item{i}" for i in range(n)], with_dedup(rng.integers(0, size, size=(n, levels)))


def make_tokenizer(n: int = 60, levels: int = 3, size: int = 4, **kwargs) -> S2GRTokenizer:
    item_ids, codes = random_catalog(n, levels, size)
    kwargs.setdefault("codebook_size", size)
    return S2GRTokenizer(item_ids=item_ids, codes=codes, **kwargs)


@pytest.fixture
def full_tokenizer() -> S2GRTokenizer:
    """Small catalog with every optional piece: clusters and a mixed quantizer state."""
    item_ids, codes = random_catalog(50, 3, 4, seed=1)
    rng = np.random.default_rng(2)
    state = {
        "encoder.weight": torch.randn(5, 3),
        "code_vectors": rng.normal(size=(3, 4, 2)).astype(np.float32),
        "beta": 0.25,
        "config": {"levels": 3, "name": "coba"},
    }
    return S2GRTokenizer(
        item_ids=item_ids,
        codes=codes,
        codebook_size=4,
        code_clusters=rng.integers(0, 2, size=(3, 4)),
        quantizer_state=state,
        max_history_items=7,
    )


# ----------------------------------------------------------------------------------------- vocabulary, ids


def test_vocabulary_layout_and_sizes() -> None:
    tok = make_tokenizer(levels=3, size=4, dedup_size=5)
    vocab = tok.get_vocab()
    assert len(tok) == tok.vocab_size == len(vocab) == 4 + 3 * 4 + 5 + 3
    assert [vocab[t] for t in ("<pad>", "<bos>", "<eos>", "<unk>")] == [0, 1, 2, 3]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert vocab["<s1_0>"] == tok.code_token_offset == 4
    assert vocab["<s2_3>"] == 4 + 1 * 4 + 3 == tok.code_token_id(1, 3)
    assert vocab["<d_4>"] == 4 + 3 * 4 + 4 == tok.code_token_id(3, 4)
    assert vocab["<think_1>"] == tok.think_token_offset == 4 + 12 + 5 == tok.think_token_id(0)
    assert vocab["<think_3>"] == tok.think_token_id(2) == len(tok) - 1
    assert (tok.num_levels, tok.codebook_size, tok.dedup_size, tok.num_thinking, tok.num_items) == (
        3,
        4,
        5,
        3,
        60,
    )
    with pytest.raises(ValueError, match="out of range"):
        tok.code_token_id(1, 4)
    with pytest.raises(ValueError, match="out of range"):
        tok.code_token_id(3, 5)


def test_code_token_id_is_elementwise() -> None:
    tok = make_tokenizer(size=4, dedup_size=6)
    levels = torch.tensor([0, 1, 2, 3])
    codes = torch.tensor([1, 2, 3, 5])
    assert tok.code_token_id(levels, codes).tolist() == [5, 10, 15, 21]


def test_tiger_vocabulary_has_no_thinking_tokens() -> None:
    tok = make_tokenizer(levels=3, size=4, dedup_size=5, num_thinking=0)
    assert len(tok) == 4 + 12 + 5
    assert not any(token.startswith("<think") for token in tok.get_vocab())


def test_default_dedup_size_keeps_headroom() -> None:
    tok = make_tokenizer()
    assert tok.dedup_size == int(tok.codes[:, -1].max()) + 1 + 8


def test_standard_machinery_on_sid_strings() -> None:
    tok = make_tokenizer(size=4, dedup_size=5)
    text = "<s1_3><s2_0><s3_2><d_1>"
    expected = [4 + 3, 4 + 4 + 0, 4 + 8 + 2, 4 + 12 + 1]
    assert tok.tokenize(text) == ["<s1_3>", "<s2_0>", "<s3_2>", "<d_1>"]
    assert tok(text)["input_ids"] == expected
    assert tok.encode("<s1_3> <s2_0>\n<s3_2><d_1>") == expected
    assert tok.convert_ids_to_tokens(expected) == tok.tokenize(text)
    assert tok.decode(expected) == text
    assert tok.encode("<bogus><pad>") == [tok.unk_token_id, tok.pad_token_id]
    assert tok.decode([0, 5, 2], skip_special_tokens=True) == "<s1_1>"


# ------------------------------------------------------------------------------------------ validation


def test_duplicate_sid_error_names_the_items() -> None:
    codes = np.array([[0, 1, 2, 0], [1, 1, 1, 0], [0, 1, 2, 0]])
    with pytest.raises(ValueError, match=r"'a' and 'c' share SID \(0, 1, 2, 0\)"):
        S2GRTokenizer(item_ids=["a", "b", "c"], codes=codes, codebook_size=4)


@pytest.mark.parametrize(
    ("item_ids", "codes", "kwargs", "message"),
    [
        (["a", "a"], [[0, 0, 0, 0], [0, 0, 0, 1]], {}, r"item_ids must be unique, repeated: \['a'\]"),
        (["a", 7], [[0, 0, 0, 0], [0, 0, 0, 1]], {}, "item_ids must be strings"),
        (["a"], [[0, 0, 0]], {"code_clusters": np.zeros((3, 4), int)}, r"shape \(L, K\) = \(2, 4\)"),
        (["a", "b"], [[0, 0, 0, 0]], {}, r"shape \(N, L\+1\)"),
        (["a"], [[0, 4, 0, 0]], {}, r"level codes must lie in \[0, codebook_size=4\)"),
        (["a"], [[0, 0, 0, -1]], {}, "dedup codes must be non-negative"),
        (["a"], [[0, 0, 0, 3]], {"dedup_size": 3}, "dedup_size=3 but codes use dedup code 3"),
        (["a"], [[0.0, 0, 0, 0]], {}, "must hold integers"),
        (["a"], [[0, 0, 0, 0]], {"num_thinking": 2}, "num_thinking must be 3"),
        (["a"], [[0, 0, 0, 0]], {"code_clusters": np.zeros((3, 5), int)}, r"code_clusters must be"),
        ([], np.zeros((0, 4), int), {}, "catalog is empty"),
    ],
)
def test_construction_errors(item_ids, codes, kwargs, message) -> None:
    kwargs = {"codebook_size": 4, **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        S2GRTokenizer(item_ids=item_ids, codes=np.asarray(codes), **kwargs)


def test_tokenizer_owns_its_arrays() -> None:
    codes = np.array([[0, 1, 1, 0], [1, 0, 0, 0]])
    tok = S2GRTokenizer(item_ids=["a", "b"], codes=codes, codebook_size=2)
    codes[0, 0] = 1
    assert tok.item_to_sid("a") == (0, 1, 1, 0)
    with pytest.raises(ValueError, match="read-only"):
        tok.codes[0, 0] = 1


def test_codebook_size_is_required_without_clusters() -> None:
    with pytest.raises(ValueError, match="codebook_size is required"):
        S2GRTokenizer(item_ids=["a"], codes=np.array([[0, 0, 0, 0]]))


def test_a_folder_saved_with_cluster_centroids_still_loads(
    full_tokenizer: S2GRTokenizer, tmp_path: Path
) -> None:
    """Earlier versions also wrote the codebook's cluster centroids, which nothing read: they are ignored."""
    tok = full_tokenizer
    tok.save_pretrained(tmp_path)
    arrays = tmp_path / "sid_arrays.safetensors"
    with safe_open(arrays, framework="pt") as handle:
        metadata = handle.metadata() or {}
    tensors = load_file(arrays)
    assert "cluster_centroids" not in tensors
    save_file({**tensors, "cluster_centroids": torch.zeros(3, 2, 5)}, arrays, metadata=metadata)
    assert_same_tokenizer(tok, S2GRTokenizer.from_pretrained(tmp_path))


# ------------------------------------------------------------------------------------- item <-> SID maps


def test_every_item_round_trips_through_its_sid(full_tokenizer: S2GRTokenizer) -> None:
    tok = full_tokenizer
    for item in tok.item_ids:
        sid = tok.item_to_sid(item)
        assert len(sid) == tok.num_levels + 1
        assert tok.sid_to_item(sid) == item
        token_string = tok.decode(tok.code_token_id(np.arange(tok.num_levels + 1), np.array(sid)).tolist())
        assert tok.sid_to_item(token_string) == item
    codes = tok.codes[None]
    assert tok.decode_items(codes) == [tok.item_ids]
    token_ids = tok.encode_sequences([tok.item_ids])["sequence_codes"]
    assert tok.decode_items(token_ids, as_token_ids=True) == [tok.item_ids]


def test_invalid_sids_raise_or_give_none() -> None:
    tok = S2GRTokenizer(item_ids=["a", "b"], codes=np.array([[0, 1, 1, 0], [0, 1, 1, 1]]), codebook_size=2)
    assert tok.sid_to_item((0, 1, 1, 1)) == "b"
    for bad in [(0, 1, 1, 2), (1, 1, 1, 0), (0, 1, 1, -1), (0, 2, 1, 0), (-1, 1, 1, 0)]:
        with pytest.raises(InvalidSidError, match="not the SID of any catalog item"):
            tok.sid_to_item(bad)
        assert tok.sid_to_item(bad, on_invalid="none") is None
    assert tok.sid_to_item("<s1_0><s2_1><s3_1><d_1>") == "b"
    # Right codes written at the wrong steps are no SID.
    assert tok.sid_to_item("<s2_0><s1_1><s3_1><d_1>", on_invalid="none") is None
    assert tok.decode_items([[[0, 1, 1, 0], [5, 5, 5, 5]]], on_invalid="none") == [["a", None]]
    assert tok.sid_to_item("<s1_0><s2_1>", on_invalid="none") is None
    with pytest.raises(KeyError, match=r"has 3 codes, a SID has L\+1 = 4"):
        tok.sid_to_item((0, 1, 1))
    # Code 2 >= K under node (0,) must not alias code 0 under the next node (1,).
    aliasing = S2GRTokenizer(item_ids=["p", "q"], codes=np.array([[0, 0, 0], [1, 0, 0]]), codebook_size=2)
    assert aliasing.sid_to_item((0, 2, 0), on_invalid="none") is None
    with pytest.raises(ValueError, match=r"expects \(B, k, L\+1\)"):
        tok.decode_items(np.array([0, 1, 1, 0]))
    with pytest.raises(UnknownItemError, match="'zz'"):
        tok.item_to_sid("zz")


# ------------------------------------------------------------------------------------ encoder/decoder data


def test_label_layout_with_and_without_thinking() -> None:
    codes = np.array([[1, 2, 3, 0], [3, 3, 3, 1], [3, 3, 3, 0]])
    pieces = {"item_ids": ["x", "y", "z"], "codes": codes, "codebook_size": 4, "dedup_size": 2}
    tok = S2GRTokenizer(**pieces)
    think = 4 + 3 * 4 + 2  # after the specials, 3 levels x 4 codes and 2 dedup codes
    batch = tok([["z"], ["x", "z"]], targets=["x", "y"])
    assert batch["labels"].tolist() == [
        [think, 4 + 1, think + 1, 4 + 4 + 2, think + 2, 4 + 8 + 3, 4 + 12 + 0],
        [think, 4 + 3, think + 1, 4 + 4 + 3, think + 2, 4 + 8 + 3, 4 + 12 + 1],
    ]
    assert tok.convert_ids_to_tokens(batch["labels"][1].tolist()) == [
        "<think_1>", "<s1_3>", "<think_2>", "<s2_3>", "<think_3>", "<s3_3>", "<d_1>"
    ]  # fmt: skip
    tiger = S2GRTokenizer(**pieces, num_thinking=0)
    labels = tiger([["z"], ["x", "z"]], targets=["x", "y"])["labels"]
    assert labels.tolist() == [[5, 10, 15, 16], [7, 11, 15, 17]]
    assert batch["input_ids"][1].tolist() == [5, 10, 15, 16, 7, 11, 15, 16]


def test_truncation_keeps_the_most_recent_items() -> None:
    tok = make_tokenizer(n=60, max_history_items=5)
    history = tok.item_ids[:30]
    width = tok.num_levels + 1
    ids = tok([history], return_tensors="np")["input_ids"]
    assert ids.shape == (1, 5 * width)
    assert tok.decode_items(ids.reshape(1, -1, width), as_token_ids=True) == [history[-5:]]
    ids3 = tok.encode_histories([history], max_history_items=3)["input_ids"]
    assert tok.decode_items(ids3.reshape(1, -1, width), as_token_ids=True) == [history[-3:]]
    full = tok.encode_histories([history], truncation=False)["input_ids"]
    assert full.shape == (1, 30 * width)


def test_padding_sides_and_strategies() -> None:
    tok = make_tokenizer(max_history_items=4)
    width = tok.num_levels + 1
    short, long = tok.item_ids[:1], tok.item_ids[1:4]
    sid = {
        item: [int(t) for t in tok.encode_sequences([[item]])["sequence_codes"][0, 0]]
        for item in tok.item_ids
    }
    right = tok([short, long], return_tensors=None)
    assert right["input_ids"][0] == sid[short[0]] + [0] * (2 * width)
    assert right["attention_mask"][0] == [1] * width + [0] * (2 * width)
    assert right["input_ids"][1] == [t for i in long for t in sid[i]]
    left = tok([short, long], padding_side="left", return_tensors=None)
    assert left["input_ids"][0] == [0] * (2 * width) + sid[short[0]]
    assert left["attention_mask"][0] == [0] * (2 * width) + [1] * width
    left_default = make_tokenizer(padding_side="left")([short, long], return_tensors=None)
    assert left_default["input_ids"] == left["input_ids"]
    to_max = tok([short, long], padding="max_length")
    assert to_max["input_ids"].shape == (2, 4 * width)
    ragged = tok([short, long], padding=False, return_tensors=None)
    assert ragged["input_ids"] == [sid[short[0]], right["input_ids"][1]]
    assert ragged["attention_mask"] == [[1] * width, [1] * (3 * width)]


def test_call_routes_like_hf_users_expect() -> None:
    tok = make_tokenizer()
    histories, targets = [tok.item_ids[:3], tok.item_ids[3:5]], tok.item_ids[5:7]
    via_call = tok(histories, targets=targets)
    via_text_target = tok(histories, text_target=targets)
    direct = tok.encode_histories(histories, targets=targets)
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(via_call[key], direct[key])
        assert torch.equal(via_text_target[key], direct[key])
    assert isinstance(via_call["input_ids"], torch.Tensor) and via_call["input_ids"].dtype == torch.int64
    assert "labels" not in tok(histories)
    with pytest.raises(TypeError, match="must be a list of item ids"):
        tok.encode_histories(["item0", "item1"])


def test_unknown_items_error_or_skip() -> None:
    tok = make_tokenizer()
    with pytest.raises(UnknownItemError, match=r"'ghost'.*history 1.*on_unknown='skip'"):
        tok([["item0"], ["item1", "ghost"]])
    with pytest.raises(KeyError):
        tok([["ghost"]])
    skipped = tok([["item0"], ["item1", "ghost", "item2"]], on_unknown="skip")
    assert skipped["input_ids"][1].tolist() == tok([["item1", "item2"]])["input_ids"][0].tolist()
    with pytest.raises(ValueError, match="history 0 is empty after skipping unknown items"):
        tok([["ghost"]], on_unknown="skip")
    with pytest.raises(ValueError, match="history 0 is empty"):
        tok([[]], targets=["item0"])
    with pytest.raises(UnknownItemError, match="'ghost' in targets"):
        tok([["item0"]], targets=["ghost"], on_unknown="skip")
    with pytest.raises(ValueError, match="on_unknown must be"):
        tok([["item0"]], on_unknown="ignore")
    with pytest.raises(ValueError, match="one item id per history"):
        tok([["item0"], ["item1"]], targets=["item2"])


def test_encode_sequences_shapes_and_mask() -> None:
    tok = make_tokenizer()
    out = tok.encode_sequences([tok.item_ids[:5], tok.item_ids[5:7]])
    assert out["sequence_codes"].shape == (2, 5, tok.num_levels + 1)
    assert out["sequence_mask"].tolist() == [[1] * 5, [1, 1, 0, 0, 0]]
    assert (out["sequence_codes"][1, 2:] == tok.pad_token_id).all()
    last = tok.encode_sequences([tok.item_ids[:5]], max_items=2)
    assert tok.decode_items(last["sequence_codes"], as_token_ids=True) == [tok.item_ids[3:5]]


@st.composite
def catalogs(draw: st.DrawFn) -> tuple[list[str], np.ndarray, int]:
    levels = draw(st.integers(1, 3))
    size = draw(st.integers(1, 4))
    n = draw(st.integers(1, 30))
    prefixes = draw(
        st.lists(st.lists(st.integers(0, size - 1), min_size=levels, max_size=levels), min_size=n, max_size=n)
    )
    codes = with_dedup(np.array(prefixes, dtype=np.int64).reshape(n, levels))
    # Shuffle dedup codes within each group: the tables must not rely on any dedup order.
    permutation = np.array(draw(st.permutations(range(n))), dtype=np.int64)
    codes = codes[permutation]
    return [f"id{i}" for i in range(n)], codes, size


@HYPOTHESIS
@given(catalog=catalogs(), data=st.data())
def test_encode_decode_property(catalog: tuple[list[str], np.ndarray, int], data: st.DataObject) -> None:
    item_ids, codes, size = catalog
    limit = data.draw(st.integers(1, 6))
    tok = S2GRTokenizer(item_ids=item_ids, codes=codes, codebook_size=size, max_history_items=limit)
    histories = data.draw(
        st.lists(st.lists(st.sampled_from(item_ids), min_size=1, max_size=8), min_size=1, max_size=4)
    )
    side = data.draw(st.sampled_from(["right", "left"]))
    batch = tok(histories, padding_side=side, return_tensors="np")
    width = tok.num_levels + 1
    blocks = batch["input_ids"].reshape(len(histories), -1, width)
    mask = batch["attention_mask"].reshape(len(histories), -1, width)[..., 0].astype(bool)
    decoded = tok.decode_items(np.where(mask[..., None], blocks, 0), as_token_ids=True, on_invalid="none")
    for history, names, row_mask in zip(histories, decoded, mask, strict=True):
        assert [name for name, real in zip(names, row_mask, strict=True) if real] == history[-limit:]
        assert row_mask.sum() == len(history[-limit:])
    text = tok.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert tok(text)["input_ids"] == [
        int(t) for t, m in zip(batch["input_ids"][0], batch["attention_mask"][0], strict=True) if m
    ]


# ------------------------------------------------------------------------------------ constrained decoding


def enumerate_paths(tables: PrefixTables, levels: int) -> dict[tuple[int, ...], int]:
    """Every root-to-leaf path through the CSR tables → the item it ends at; checks that offsets partition each
    depth's nodes, that children ascend by code, and that every node is reached exactly once."""
    paths: dict[tuple[int, ...], int] = {}
    visits = [np.zeros(len(t) - 1, dtype=int) for t in tables.offsets]

    def walk(step: int, node: int, prefix: tuple[int, ...]) -> None:
        visits[step][node] += 1
        first, stop = tables.offsets[step][node : node + 2].tolist()
        codes = tables.codes[step][first:stop].tolist()
        assert codes, "every node has a child"
        assert codes == sorted(set(codes))
        for child, code in zip(range(first, stop), codes, strict=True):
            if step == levels:
                assert (*prefix, code) not in paths
                paths[(*prefix, code)] = int(tables.items[child])
            else:
                walk(step + 1, child, (*prefix, code))

    walk(0, 0, ())
    assert all((v == 1).all() for v in visits)
    return paths


@HYPOTHESIS
@given(catalog=catalogs())
def test_prefix_tables_admit_exactly_the_catalog(catalog: tuple[list[str], np.ndarray, int]) -> None:
    item_ids, codes, size = catalog
    tok = S2GRTokenizer(item_ids=item_ids, codes=codes, codebook_size=size)
    tables = tok.prefix_tables()
    assert len(tables.offsets) == len(tables.codes) == tok.num_levels + 1
    assert tables.offsets[0].tolist() == [0, len(tables.codes[0])]  # one root
    assert all(t.dtype == torch.int64 for t in [*tables.offsets, *tables.codes, tables.items])
    assert all(len(o) == len(c) + 1 for o, c in zip(tables.offsets[1:], tables.codes, strict=False))
    expected = {tuple(row): i for i, row in enumerate(codes.tolist())}
    assert enumerate_paths(tables, tok.num_levels) == expected
    assert tables.nbytes == 8 * (sum(len(t) for t in [*tables.offsets, *tables.codes]) + len(item_ids))


def test_prefix_tables_are_cached_and_follow_the_device() -> None:
    tok = make_tokenizer()
    assert tok.prefix_tables() is tok.prefix_tables("cpu")
    assert tok.prefix_tables().codes[0].device.type == "cpu"


def test_prefix_tables_build_fast_and_stay_linear_on_a_large_catalog() -> None:
    n, levels, size = 200_000, 3, 256
    item_ids = [f"item{i}" for i in range(n)]
    levels_codes = np.random.default_rng(3).integers(0, size - 1, size=(n, levels))
    levels_codes[:5_000] = size - 1  # one collision group of 5,000 items: a padded table's worst case
    codes = with_dedup(levels_codes)
    tok = S2GRTokenizer(item_ids=item_ids, codes=codes, codebook_size=size, dedup_size=5_000)
    start = time.perf_counter()
    tables = tok.prefix_tables()
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    assert torch.equal(tables.items.sort().values, torch.arange(n))
    # Walk a sample of SIDs through the tables, vectorised, and land on those items.
    sample = torch.from_numpy(np.random.default_rng(4).choice(n, size=5_000, replace=False))
    sids = torch.from_numpy(codes)[sample]
    node = torch.zeros(len(sample), dtype=torch.int64)
    for step in range(levels + 1):
        offsets, children = tables.offsets[step], tables.codes[step]
        radix = 5_000 if step == levels else size
        # Children ascend by code and nodes by prefix, so parent * radix + code ascends over the whole depth.
        parent = torch.repeat_interleave(torch.arange(len(offsets) - 1), offsets.diff())
        position = torch.searchsorted(parent * radix + children, node * radix + sids[:, step])
        assert bool(((offsets[node] <= position) & (position < offsets[node + 1])).all())
        assert torch.equal(children[position], sids[:, step])
        node = position
    assert torch.equal(tables.items[node], sample)
    # Linear memory: a padded (nodes x widest fan-out) table of the dedup step alone would take 16 * n_3 * 5,000.
    assert tables.nbytes <= 8 * ((2 * levels + 2) * n + levels + 2)
    assert tables.nbytes < 16 * len(tables.codes[levels - 1]) * 5_000 / 1_000


# ---------------------------------------------------------------------------------------------- add_items


def test_add_items_resolves_collisions_and_keeps_old_sids() -> None:
    codes = np.array([[0, 1, 1, 0], [0, 1, 1, 2], [1, 0, 0, 0]])
    tok = S2GRTokenizer(item_ids=["a", "b", "c"], codes=codes, codebook_size=2, dedup_size=4)
    tables_before = tok.prefix_tables()
    vocab_before = tok.get_vocab()
    new = tok.add_items(["n1", "n2", "n3", "n4"], codes=[[0, 1, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1]])
    # Lowest free dedup codes: group (0,1,1) has {0, 2} in use, so 1 then 3; (1,1,1) is new: 0 then 1.
    assert new.tolist() == [[0, 1, 1, 1], [1, 1, 1, 0], [0, 1, 1, 3], [1, 1, 1, 1]]
    assert tok.codes[:3].tolist() == codes.tolist()
    assert tok.get_vocab() == vocab_before
    assert tok.num_items == 7 and tok.item_ids[3:] == ["n1", "n2", "n3", "n4"]
    assert tok.sid_to_item((0, 1, 1, 3)) == "n3"
    assert tok([["n4"]], targets=["a"])["input_ids"][0, -1] == tok.code_token_id(3, 1)
    tables = tok.prefix_tables()
    assert tables is not tables_before
    assert enumerate_paths(tables, 3) == {tuple(row): i for i, row in enumerate(tok.codes.tolist())}


def test_add_items_overflow_and_id_errors_change_nothing() -> None:
    tok = S2GRTokenizer(
        item_ids=["a", "b"], codes=np.array([[0, 0, 0], [0, 0, 1]]), codebook_size=2, dedup_size=3
    )
    with pytest.raises(ValueError, match=r"would need dedup code 3 but dedup_size is 3"):
        tok.add_items(["x", "y"], codes=[[0, 0], [0, 0]])
    with pytest.raises(ValueError, match=r"already in the catalog: \['a'\]"):
        tok.add_items(["a"], codes=[[1, 1]])
    with pytest.raises(ValueError, match="new_item_ids must be unique"):
        tok.add_items(["z", "z"], codes=[[1, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"shape \(M, L\) = \(1, 2\)"):
        tok.add_items(["z"], codes=[[1, 1, 0]])
    with pytest.raises(ValueError, match="embeddings together with assign_fn"):
        tok.add_items(["z"], embeddings=np.zeros((1, 4)))
    assert tok.item_ids == ["a", "b"] and tok.codes.tolist() == [[0, 0, 0], [0, 0, 1]]
    assert tok.add_items(["x"], codes=[[0, 0]]).tolist() == [[0, 0, 2]]


@HYPOTHESIS
@given(catalog=catalogs(), data=st.data())
def test_add_items_property(catalog: tuple[list[str], np.ndarray, int], data: st.DataObject) -> None:
    item_ids, codes, size = catalog
    levels = codes.shape[1] - 1
    tok = S2GRTokenizer(item_ids=item_ids, codes=codes, codebook_size=size, dedup_size=40)
    new = data.draw(
        st.lists(st.lists(st.integers(0, size - 1), min_size=levels, max_size=levels), max_size=10)
    )
    new_ids = [f"new{i}" for i in range(len(new))]
    assigned = tok.add_items(new_ids, codes=np.array(new, dtype=np.int64).reshape(len(new), levels))
    assert tok.codes[: len(item_ids)].tolist() == codes.tolist()
    assert assigned[:, :levels].tolist() == [list(p) for p in new]
    used: dict[tuple[int, ...], set[int]] = {}
    for row in codes.tolist():
        used.setdefault(tuple(row[:levels]), set()).add(row[-1])
    for row in assigned.tolist():
        group = used.setdefault(tuple(row[:levels]), set())
        assert row[-1] == min(set(range(len(group) + 1)) - group), "lowest free dedup code"
        group.add(row[-1])
    for item in new_ids:
        assert tok.sid_to_item(tok.item_to_sid(item)) == item


def test_from_semantic_ids_duck_typing_and_assign_fn() -> None:
    item_ids, codes = random_catalog(20, 3, 4, seed=5)

    class Quantizer:
        def state_dict(self) -> dict[str, torch.Tensor]:
            return {"codebook": torch.arange(6.0).reshape(2, 3)}

        def assign(self, embeddings: np.ndarray) -> np.ndarray:
            return (np.asarray(embeddings)[:, :3] > 0).astype(np.int64)

    semantic_ids = SimpleNamespace(
        codes=codes,
        cluster_of_code=np.arange(12).reshape(3, 4) % 2,
        cluster_centroids=np.ones((3, 2, 5), dtype=np.float32),
        quantizer=Quantizer(),
    )
    tok = S2GRTokenizer.from_semantic_ids(item_ids, semantic_ids, num_thinking=0)
    assert (tok.codebook_size, tok.num_thinking) == (4, 0)
    assert np.array_equal(tok.code_clusters, semantic_ids.cluster_of_code)
    assert torch.equal(tok.quantizer_state["codebook"], torch.arange(6.0).reshape(2, 3))
    new = tok.add_items(["cold"], embeddings=np.array([[1.0, -1.0, 1.0, 0.0]]), assign_fn=Quantizer().assign)
    assert new[0, :3].tolist() == [1, 0, 1]
    no_quantizer = S2GRTokenizer.from_semantic_ids(
        item_ids, SimpleNamespace(**{**vars(semantic_ids), "quantizer": None})
    )
    assert no_quantizer.quantizer_state is None and no_quantizer.num_thinking == 3


# ------------------------------------------------------------------------------------------- save / load


def assert_same_tokenizer(a: S2GRTokenizer, b: S2GRTokenizer) -> None:
    assert a.get_vocab() == b.get_vocab()
    assert a.item_ids == b.item_ids
    assert np.array_equal(a.codes, b.codes) and b.codes.dtype == np.int64
    assert (a.num_levels, a.codebook_size, a.dedup_size, a.num_thinking) == (
        b.num_levels, b.codebook_size, b.dedup_size, b.num_thinking
    )  # fmt: skip
    assert (a.max_history_items, a.padding_side) == (b.max_history_items, b.padding_side)
    left, right = a.code_clusters, b.code_clusters
    assert (left is None and right is None) or np.array_equal(left, right)
    state_a, state_b = a.quantizer_state, b.quantizer_state
    assert (state_a is None) == (state_b is None)
    if state_a is not None:
        assert state_a.keys() == state_b.keys()
        for key, value in state_a.items():
            assert type(value) is type(state_b[key])
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, state_b[key])
            elif isinstance(value, np.ndarray):
                assert np.array_equal(value, state_b[key]) and value.dtype == state_b[key].dtype
            else:
                assert value == state_b[key]


def test_save_load_round_trip(full_tokenizer: S2GRTokenizer, tmp_path) -> None:
    full_tokenizer.add_items(["late"], codes=[[0, 0, 0]])
    full_tokenizer.save_pretrained(tmp_path)
    assert {"vocab.json", "item_ids.json", "sid_arrays.safetensors", "tokenization_s2gr.py"} <= set(
        os.listdir(tmp_path)
    )
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["auto_map"]["AutoTokenizer"][0] == "tokenization_s2gr.S2GRTokenizer"
    loaded = S2GRTokenizer.from_pretrained(tmp_path)
    assert_same_tokenizer(full_tokenizer, loaded)
    histories = [loaded.item_ids[:9], ["late"]]
    for key, value in full_tokenizer(histories, targets=["late", "item0"]).items():
        assert torch.equal(value, loaded(histories, targets=["late", "item0"])[key])


def test_minimal_tokenizer_round_trips(tmp_path) -> None:
    tok = make_tokenizer(num_thinking=0, padding_side="left")
    tok.save_pretrained(tmp_path)
    assert_same_tokenizer(tok, S2GRTokenizer.from_pretrained(tmp_path))


def test_inconsistent_vocab_file_is_rejected(tmp_path) -> None:
    make_tokenizer().save_pretrained(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    vocab["<extra>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match="does not match the vocabulary"):
        S2GRTokenizer.from_pretrained(tmp_path)


AUTO_LOAD_SCRIPT = """
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
assert "s2gr" not in sys.modules, "loading imported the s2gr package"
batch = tok(json.loads(sys.argv[2]), targets=json.loads(sys.argv[3]), return_tensors=None)
print(json.dumps({
    "class": type(tok).__name__,
    "module": type(tok).__module__,
    "batch": dict(batch),
    "sizes": [len(tok), tok.num_items, tok.dedup_size],
    "decoded": tok.decode_items([tok.codes[:3].tolist()]),
    "tables": [t.tolist() for t in tok.prefix_tables().codes[:2]],
}))
"""


def test_auto_tokenizer_loads_in_a_fresh_process(full_tokenizer: S2GRTokenizer, tmp_path) -> None:
    folder = tmp_path / "tokenizer"
    full_tokenizer.save_pretrained(folder)
    assert not (folder / "config.json").exists()
    histories, targets = [full_tokenizer.item_ids[:12], full_tokenizer.item_ids[3:4]], ["item5", "item6"]
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", AUTO_LOAD_SCRIPT, str(folder), json.dumps(histories), json.dumps(targets)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["class"] == "S2GRTokenizer" and not out["module"].startswith("s2gr")
    assert out["batch"] == dict(full_tokenizer(histories, targets=targets, return_tensors=None))
    assert out["sizes"] == [len(full_tokenizer), full_tokenizer.num_items, full_tokenizer.dedup_size]
    assert out["decoded"] == [full_tokenizer.item_ids[:3]]
    assert out["tables"] == [t.tolist() for t in full_tokenizer.prefix_tables().codes[:2]]
