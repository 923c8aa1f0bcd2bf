"""Cold-start items (s2gr.cold_start): Semantic IDs from the frozen codebook without training, and an ε share
of each top-k for new items whose codes match a generated beam (TIGER §4.3)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2gr import S2GRRecommender, S2GRTokenizer
from s2gr.batch import dataset_histories
from s2gr.cli import main
from s2gr.cold_start import COLD_ITEMS_FILE, load_cold_items, mix_cold_items
from s2gr.data import fetch_asset
from s2gr.errors import InputError
from s2gr.titles import load_titles

NEW = 40  # new items: copies of catalog items' rows under new ids


@st.composite
def rankings(draw):
    """A ranked list of warm items with level codes, cold items on some of those codes, and ε, top_k."""
    prefixes = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=12))
    warm = [f"w{i}" for i in range(len(prefixes))]
    scores = sorted(draw(st.lists(st.floats(-20, 0), min_size=len(warm), max_size=len(warm))), reverse=True)
    cold_by_prefix: dict = {}
    for index in draw(st.lists(st.integers(0, 20), max_size=10)):
        cold_by_prefix.setdefault(draw(st.sampled_from(prefixes)), []).append(f"c{index}")
    cold_by_prefix = {key: list(dict.fromkeys(items)) for key, items in cold_by_prefix.items()}
    top_k = draw(st.integers(1, len(warm)))
    epsilon = draw(st.floats(0, 1))
    excluded = set(draw(st.lists(st.sampled_from([f"c{i}" for i in range(21)]), max_size=3)))
    return (
        list(zip(warm, scores, strict=True)),
        dict(zip(warm, prefixes, strict=True)),
        cold_by_prefix,
        top_k,
        epsilon,
        excluded,
    )


@settings(max_examples=200, deadline=None)
@given(rankings())
def test_mix_cold_items_invariants(case) -> None:
    ranking, prefix_of, cold_by_prefix, top_k, epsilon, excluded = case
    mixed = mix_cold_items(ranking, prefix_of, cold_by_prefix, top_k, epsilon, excluded)
    cold = [(item, score) for item, score in mixed if item.startswith("c")]
    assert len(mixed) == top_k and len({item for item, _ in mixed}) == top_k
    assert len(cold) <= math.floor(epsilon * top_k + 1e-9)
    assert [score for _, score in mixed] == sorted((score for _, score in mixed), reverse=True)
    for item, score in cold:  # each cold item carries the score of a ranked item with its codes
        assert item not in excluded
        assert any(item in cold_by_prefix.get(prefix_of[w], ()) and s == score for w, s in ranking)
    warm = [pair for pair in mixed if pair[0].startswith("w")]
    assert warm == ranking[: top_k - len(cold)]  # the warm ones keep their order, best first
    if math.floor(epsilon * top_k + 1e-9) == 0:  # no slot (the tolerance absorbs 0.1 · 10 = 0.999…)
        assert mixed == ranking[:top_k]


@pytest.fixture(scope="module")
def extended(tiny_s2gr, tmp_path_factory) -> tuple[Path, list[str]]:
    """`s2gr add-items` on the tiny model with NEW copies of catalog items (a RecBole .item file, so their text is
    built exactly as in training); the extended folder and the new ids."""
    folder = tmp_path_factory.mktemp("cold")
    rows = (fetch_asset("ml-100k") / "ml-100k.item").read_text(encoding="utf-8").splitlines()
    known = [line for line in rows[1:] if line.split("\t")[0] in set(tiny_s2gr.data.item_ids)][:NEW]
    new_rows = [f"new{index}\t" + line.split("\t", 1)[1] for index, line in enumerate(known)]
    (folder / "new.item").write_text("\n".join([rows[0], *new_rows]) + "\n", encoding="utf-8")
    before = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in tiny_s2gr.folder.iterdir()
        if path.is_file()
    }
    assert (
        main(
            [
                "add-items",
                "--model",
                str(tiny_s2gr.folder),
                "--items",
                str(folder / "new.item"),
                "--output",
                str(folder / "model"),
            ]
        )
        == 0
    )
    after = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in tiny_s2gr.folder.iterdir()
        if path.is_file()
    }
    assert before == after  # the source folder is untouched
    return folder / "model", [f"new{index}" for index in range(NEW)]


def test_add_items_extends_the_catalog_and_keeps_the_weights(tiny_s2gr, loaded, extended) -> None:
    folder, new_ids = extended
    model, tokenizer = loaded
    recommender = S2GRRecommender.from_pretrained(folder, device="cpu")
    assert load_cold_items(folder) == new_ids == recommender.cold_items
    extended_ids = recommender.tokenizer.item_ids
    assert (
        extended_ids[: tokenizer.num_items] == tokenizer.item_ids
        and extended_ids[tokenizer.num_items :] == new_ids
    )
    assert (recommender.tokenizer.codes[: tokenizer.num_items] == tokenizer.codes).all()  # old SIDs unchanged
    assert recommender.tokenizer.vocab_size == tokenizer.vocab_size == model.config.vocab_size
    for name, tensor in model.state_dict().items():
        assert (recommender.model.state_dict()[name] == tensor).all(), name
    titles = load_titles(folder)
    assert titles["new0"] == load_titles(tiny_s2gr.folder)[tiny_s2gr.data.item_ids[0]] or titles["new0"]


def test_a_cold_item_sharing_the_top_beams_codes_must_appear(tiny_s2gr, loaded) -> None:
    model, _ = loaded
    tokenizer = S2GRTokenizer.from_pretrained(tiny_s2gr.folder)  # a private copy: add_items changes it
    history = tiny_s2gr.data.splits["test"][0]["history"]
    (plain,) = S2GRRecommender(model, tokenizer).recommend(
        [history], top_k=10, num_beams=10, exclude=[history], return_scores=True
    )
    top_item, top_score = plain[0]
    codes = tokenizer.codes[tokenizer.item_ids.index(top_item), :-1]
    tokenizer.add_items(["fresh"], codes=codes[None])  # a new item with the top beam's level codes
    recommender = S2GRRecommender(model, tokenizer, cold_items=["fresh"])
    (without,) = recommender.recommend(
        [history], top_k=10, num_beams=10, exclude=[history], return_scores=True
    )
    assert [item for item, _ in without] == [item for item, _ in plain]  # ε = 0: the cold item never shows
    (mixed,) = recommender.recommend(
        [history], top_k=10, num_beams=10, exclude=[history], return_scores=True, epsilon=0.1
    )
    items = [item for item, _ in mixed]
    assert items[:2] == [top_item, "fresh"] and mixed[1][1] == pytest.approx(
        top_score
    )  # right after its match
    assert items[2:] == [item for item, _ in plain[1:9]]  # one slot (ε · k = 1) taken from the last warm item
    (excluded,) = recommender.recommend(
        [history], top_k=10, num_beams=10, exclude=[[*history, "fresh"]], epsilon=0.1
    )
    assert "fresh" not in excluded  # a cold item the user has is excluded like any other
    with pytest.raises(InputError, match="epsilon must be in"):
        recommender.recommend([history], epsilon=1.5)


def test_new_items_from_add_items_follow_the_same_rule(tiny_s2gr, extended) -> None:
    folder, new_ids = extended
    recommender = S2GRRecommender.from_pretrained(folder, device="cpu")
    histories = [row["history"] for row in tiny_s2gr.data.splits["test"]]
    plain = recommender.recommend(histories, top_k=10, num_beams=10, exclude=histories, return_scores=True)
    assert not {item for ranking in plain for item, _ in ranking} & set(new_ids)  # ε = 0: never a cold item
    mixed = recommender.recommend(
        histories, top_k=10, num_beams=10, exclude=histories, return_scores=True, epsilon=0.3
    )
    codes = dict(
        zip(
            recommender.tokenizer.item_ids,
            map(tuple, recommender.tokenizer.codes[:, :-1].tolist()),
            strict=True,
        )
    )
    for before, after in zip(plain, mixed, strict=True):
        cold = [(item, score) for item, score in after if item in set(new_ids)]
        assert len(cold) <= 3 and len(after) == 10
        for item, score in cold:  # scored like a generated item with the same level codes
            assert any(codes[item] == codes[warm] and score == pytest.approx(s) for warm, s in before)


def test_the_batch_command_passes_epsilon_on(tiny_s2gr, extended, tmp_path: Path) -> None:
    import pandas as pd

    folder, new_ids = extended
    output = tmp_path / "recs.parquet"
    argv = ["recommend", "--model", str(folder), *tiny_s2gr.data_args, "--output", str(output)]
    assert main([*argv, "--num-beams", "10", "--epsilon", "0.3"]) == 0
    recommender = S2GRRecommender.from_pretrained(folder, device="cpu")
    _, histories = dataset_histories(tiny_s2gr.data)
    expected = recommender.recommend(histories, top_k=10, num_beams=10, exclude=histories, epsilon=0.3)
    table = pd.read_parquet(output)
    assert table.groupby("user_id", sort=False)["item_id"].agg(list).tolist() == expected
    assert main([*argv, "--num-beams", "10"]) == 0  # ε = 0: no cold item anywhere
    assert not set(pd.read_parquet(output)["item_id"]) & set(new_ids)


def test_add_items_refuses_to_overwrite_its_source(tiny_s2gr, extended, capsys) -> None:
    folder, _ = extended
    code = main(
        [
            "add-items",
            "--model",
            str(folder),
            "--items",
            str(folder.parent / "new.item"),
            "--output",
            str(folder),
        ]
    )
    assert code == 2 and "is the model folder itself" in capsys.readouterr().err
    assert json.loads((folder / COLD_ITEMS_FILE).read_text())[:1] == ["new0"]
