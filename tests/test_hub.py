"""The Hub side: model cards, and checkpoints pushed to a local Hub then loaded back in a fresh process."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hub_server import HubServer
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import save_file
from tiny_runs import PACKAGE_FREE_RECOMMEND, single_thread
from transformers import BertConfig, BertModel, BertTokenizer

from s2gr import S2GRForGenerativeRecommendation, S2GRRecommender, S2GRTokenizer
from s2gr.hub import HubPushError, push_checkpoint
from s2gr.hub_cards import TAGS, build_model_card

RUN: dict[str, Any] = {
    "model_name": "s2gr-tiny",
    "repo_id": "user/s2gr-tiny",
    "base_model": "sentence-transformers/all-MiniLM-L6-v2",
    "dataset": {"name": "ml-100k", "num_users": 943, "num_items": 1349, "num_interactions": 99287},
    "split": {
        "kcore": 5,
        "protocol": "leave-one-out",
        "ranking": "full",
        "tie_break": "(timestamp, row position in the source file)",
        "max_history": 20,
    },
    "codebook": {
        "num_levels": 3,
        "codebook_size": 256,
        "dedup_size": 16,
        "utilisation": [0.99, 0.97, 0.95],
        "usage_perplexity": [200.1, 180.5, 150.2],
        "collision_rate": 0.0123,
        "colliding_items": 17,
        "largest_group": 3,
    },
    "thinking": {"num_thinking": 3, "align_temperature": 0.07, "num_clusters": 16, "reg_lambda": 0.1},
    "training": {"epochs": 200, "batch_size": 256, "learning_rate": 0.001, "seed": 0},
    "metrics": {
        "validation": {"recall@5": 0.0612, "recall@10": 0.1003, "ndcg@5": 0.0401, "ndcg@10": 0.0525},
        "test": {"recall@5": 0.0550, "recall@10": 0.0900, "ndcg@5": 0.0350, "ndcg@10": 0.0450},
    },
}
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "great", "bad", "item", "##s"]
TEXTS = ["the movie was great", "the items was bad"]

# Custom code shipped inside a checkpoint, loaded with trust_remote_code=True as S2GR's will be; the
# relative import makes transformers fetch a second .py file from the Hub.
CONFIG_CODE = """from transformers import PreTrainedConfig


class TinyRemoteConfig(PreTrainedConfig):
    model_type = "tiny_remote"
    size: int = 4
"""
MODEL_CODE = """import torch
from transformers import PreTrainedModel

from .configuration_tiny_remote import TinyRemoteConfig


class TinyRemoteModel(PreTrainedModel):
    config_class = TinyRemoteConfig

    def __init__(self, config):
        super().__init__(config)
        self.proj = torch.nn.Linear(config.size, config.size)
        self.post_init()

    def forward(self, x):
        return self.proj(x)
"""

# One fresh process loads both pushed checkpoints: importing torch and transformers dominates its run time.
LOAD_BOTH = """
import sys, torch
from transformers import AutoModel, AutoTokenizer

bert_repo, remote_repo, out, texts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
model = AutoModel.from_pretrained(bert_repo).eval()
tokenizer = AutoTokenizer.from_pretrained(bert_repo)
inputs = tokenizer(texts, padding=True, return_tensors="pt")
remote = AutoModel.from_pretrained(remote_repo, trust_remote_code=True).eval()
remote_tokenizer = AutoTokenizer.from_pretrained(remote_repo, trust_remote_code=True)
with torch.no_grad():
    hidden = model(**inputs).last_hidden_state
    y = remote(torch.arange(12.0).reshape(3, 4))
torch.save(
    {
        "input_ids": inputs["input_ids"],
        "hidden": hidden,
        "remote_y": y,
        "remote_cls": type(remote).__name__,
        "remote_ids": remote_tokenizer("the movie")["input_ids"],
    },
    out,
)
"""

# The S2GR checkpoint from the Hub in a fresh process, as a user without the s2gr package loads it: recommend,
# push a copy with transformers' own push_to_hub, load the copy and recommend again.
S2GR_ROUND_TRIP = """
import json, sys, torch
from transformers import AutoModel, AutoTokenizer

repo, copy_repo, out, threads, histories = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
torch.set_num_threads(int(threads))  # as in the parent: same float sums, bit-identical scores
histories = json.loads(histories)
"""
S2GR_ROUND_TRIP += (
    PACKAGE_FREE_RECOMMEND
    + """

def recommend(repo_id):
    model = AutoModel.from_pretrained(repo_id, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
    return model, tokenizer, package_free_recommend(model, tokenizer, histories, top_k=10, num_beams=5)


model, tokenizer, ranked = recommend(repo)
s2gr_imported = "s2gr" in sys.modules
model.push_to_hub(copy_repo)
tokenizer.push_to_hub(copy_repo)
copy_ranked = recommend(copy_repo)[2]
classes = [f"{type(obj).__module__}.{type(obj).__name__}" for obj in (model, tokenizer)]
with open(out, "w") as f:
    json.dump({"ranked": ranked, "copy": copy_ranked, "s2gr_imported": s2gr_imported, "classes": classes}, f)
"""
)


def _front_matter(content: str) -> dict[str, Any]:
    match = re.match(r"---\n(.*?)\n---\n", content, re.DOTALL)
    assert match, "the card has no YAML header"
    return yaml.safe_load(match.group(1))


def _fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file and a marker for every folder below `folder`, by relative path."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "dir"
        for path in folder.rglob("*")
    }


def _save_tokenizer(folder: Path) -> BertTokenizer:
    vocab = folder.parent / f"{folder.name}-vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab))
    tokenizer.save_pretrained(folder)
    return tokenizer


def _bert_checkpoint(folder: Path) -> None:
    """A tiny real BERT and its tokenizer, with run.json and metrics.json but no README.md."""
    config = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    _save_tokenizer(folder)
    (folder / "run.json").write_text(json.dumps({k: v for k, v in RUN.items() if k != "metrics"}))
    (folder / "metrics.json").write_text(json.dumps(RUN["metrics"]))


def _remote_code_checkpoint(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A custom-code model (auto_map + .py files), its own README.md, and a stray __pycache__; returns W, b."""
    folder.mkdir()
    (folder / "configuration_tiny_remote.py").write_text(CONFIG_CODE)
    (folder / "modeling_tiny_remote.py").write_text(MODEL_CODE)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "modeling_tiny_remote.cpython-311.pyc").write_bytes(b"\0stale")
    auto_map = {
        "AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
        "AutoModel": "modeling_tiny_remote.TinyRemoteModel",
    }
    config = {
        "model_type": "tiny_remote",
        "size": 4,
        "architectures": ["TinyRemoteModel"],
        "auto_map": auto_map,
    }
    (folder / "config.json").write_text(json.dumps(config))
    weight, bias = torch.randn(4, 4, generator=torch.Generator().manual_seed(1)), torch.arange(4.0)
    save_file(
        {"proj.weight": weight, "proj.bias": bias}, folder / "model.safetensors", metadata={"format": "pt"}
    )
    _save_tokenizer(folder)
    build_model_card({"model_name": "tiny-remote"}).save(folder / "README.md")
    return weight, bias


def _placeholder_checkpoint(folder: Path) -> Path:
    """Files that pass the completeness check, for tests where the push itself must fail."""
    folder.mkdir()
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):
        (folder / name).write_text("{}")
    save_file({"w": torch.zeros(2)}, folder / "model.safetensors")
    (folder / "run.json").write_text(json.dumps(RUN))
    return folder


# ------------------------------------------------------------------------------------------------ cards


def test_card_metadata_has_the_exact_results_as_model_index() -> None:
    card = build_model_card(RUN)
    meta = _front_matter(card.content)
    assert meta["library_name"] == "s2gr"
    assert meta["license"] == "apache-2.0"
    assert set(TAGS) <= set(meta["tags"])
    assert meta["datasets"] == ["ml-100k"]
    assert meta["base_model"] == RUN["base_model"]
    (index,) = meta["model-index"]
    assert index["name"] == "s2gr-tiny"
    reported = {
        (r["dataset"]["split"], m["type"]): m["value"] for r in index["results"] for m in r["metrics"]
    }
    assert reported == _expected_results()
    # The Hub's own parser reads the same results back.
    parsed = ModelCard(card.content).data.eval_results
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in parsed} == _expected_results()


def test_card_text_states_protocol_codebook_thinking_usage_and_citation() -> None:
    text = build_model_card(RUN).text
    for line in (
        'AutoModel.from_pretrained("user/s2gr-tiny", trust_remote_code=True)',
        'AutoTokenizer.from_pretrained("user/s2gr-tiny", trust_remote_code=True)',
        "from s2gr import S2GRRecommender",
        "recommender = S2GRRecommender(model, tokenizer)",
        "recommendations = recommender.recommend(histories, top_k=10, exclude=histories)",
        "5-core",
        "Leave-one-out",
        "Full ranking",
        "ordered by (timestamp, row position in the source file)",
        "users: 943",
        "| test | 0.0550 | 0.0900 | 0.0350 | 0.0450 |",
        "| 1 | 99.00% | 200.1 |",
        "colliding items: 17",
        "thinking steps T: 3",
        "alignment temperature τ: 0.07",
        "coarse clusters per level Kc: 16",
        "first-step regulariser weight λ: 0.1",
        "| learning_rate | 0.001 |",
        "## Limitations",
        "research use only",
        "Harper, F. Maxwell and Konstan, Joseph A.",
        "eprint        = {2601.18664}",
    ):
        assert line in text, line


def test_card_says_whether_the_thinking_tokens_were_aligned_to_code_clusters() -> None:
    aligned = build_model_card(RUN).text  # a run recorded before the weight was: the paper's loss
    assert "aligned with that level's coarse code clusters" in aligned and "is off" not in aligned
    off = {**RUN, "thinking": {**RUN["thinking"], "align_loss_weight": 0.0}}
    text = build_model_card(off).text
    assert "cluster-alignment loss is off" in text and "aligned with that level" not in text
    assert "cluster-alignment loss weight (0: off): 0.0" in text


def test_card_omits_sections_without_data() -> None:
    card = build_model_card({})
    for heading in (
        "## Data",
        "## Evaluation protocol",
        "## Results",
        "## Codebook",
        "## Thinking",
        "## Training",
    ):
        assert heading not in card.text
    assert "model-index" not in card.content
    assert "## Citation" in card.text and "trust_remote_code=True" in card.text
    amazon = build_model_card({"dataset": {"name": "Amazon Beauty"}, "thinking": {"num_thinking": 0}}).text
    assert "MovieLens" not in amazon and "TIGER baseline" in amazon


@pytest.mark.parametrize(
    "metrics",
    [
        {"test": {"recall@5": "0.05"}},
        {"test": {"ndcg@10": None}},
        {"test": {"recall@10": True}},
        {"test": {"recall@5": math.nan}},
        {"test": {"recall@5": 1.5}},
        {"test": 0.05},
        [0.05],
    ],
)
def test_card_rejects_malformed_metrics(metrics: Any) -> None:
    with pytest.raises(ValueError, match="metric"):
        build_model_card({**RUN, "metrics": metrics})


# ------------------------------------------------------------------------------------------------ pushes


def _bert_reference(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and hidden states of TEXTS with the checkpoint loaded from its local folder."""
    model, tokenizer = BertModel.from_pretrained(folder).eval(), BertTokenizer.from_pretrained(folder)
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return inputs["input_ids"], model(**inputs).last_hidden_state


def _expected_results() -> dict[tuple[str, str], float]:
    return {(split, name): v for split, values in RUN["metrics"].items() for name, v in values.items()}


def test_pushed_checkpoints_load_in_a_fresh_process_with_identical_outputs(
    hub_server: HubServer, run_with_hub: Callable[..., str], tmp_path: Path
) -> None:
    bert, remote = tmp_path / "tiny-bert", tmp_path / "tiny-remote"
    _bert_checkpoint(bert)
    weight, bias = _remote_code_checkpoint(remote)
    input_ids, hidden = _bert_reference(bert)
    before = {bert: _fingerprint(bert), remote: _fingerprint(remote)}

    commit_url = push_checkpoint(bert, "user/tiny-bert", token=hub_server.token, endpoint=hub_server.url)
    push_checkpoint(remote, "user/tiny-remote", token=hub_server.token, endpoint=hub_server.url)

    assert {bert: _fingerprint(bert), remote: _fingerprint(remote)} == before  # the card went into a copy
    api = HfApi(endpoint=hub_server.url)
    info = api.model_info("user/tiny-bert")
    assert commit_url.endswith(f"/user/tiny-bert/commit/{info.sha}")
    assert {s.rfilename for s in info.siblings} == {".gitattributes", "README.md", *before[bert]}
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in info.card_data.eval_results} == (
        _expected_results()
    )
    remote_files = api.list_repo_files("user/tiny-remote")
    assert "modeling_tiny_remote.py" in remote_files and not any("__pycache__" in f for f in remote_files)

    run_with_hub(LOAD_BOTH, "user/tiny-bert", "user/tiny-remote", str(tmp_path / "out.pt"), *TEXTS)

    loaded = torch.load(tmp_path / "out.pt")
    assert torch.equal(loaded["input_ids"], input_ids)
    assert torch.equal(loaded["hidden"], hidden)
    assert f"GET /user/tiny-bert/resolve/{info.sha}/model.safetensors" in hub_server.requests
    assert loaded["remote_cls"] == "TinyRemoteModel"
    x = torch.arange(12.0).reshape(3, 4)
    torch.testing.assert_close(loaded["remote_y"], torch.nn.functional.linear(x, weight, bias))
    assert loaded["remote_ids"] == [2, 5, 6, 3]
    print(f"round trip: {commit_url} -> {len(info.siblings)} files -> fresh process: identical hidden states")


def test_push_fails_cleanly_on_http_500(hub_server: HubServer, tmp_path: Path) -> None:
    folder = _placeholder_checkpoint(tmp_path / "ckpt")
    before = _fingerprint(folder)
    hub_server.fail_all = True
    with pytest.raises(HubPushError, match="HTTP 500") as error:
        push_checkpoint(folder, "user/broken", token=hub_server.token, endpoint=hub_server.url)
    assert "retry" in str(error.value) and "not modified" in str(error.value)
    assert _fingerprint(folder) == before
    hub_server.fail_all = False  # the advice holds: once the Hub is back, the same call succeeds
    assert "/user/broken/commit/" in push_checkpoint(folder, "user/broken", token=hub_server.token)


def test_push_fails_cleanly_when_the_connection_is_refused(
    hub_server: HubServer, closed_port_url: str, tmp_path: Path
) -> None:
    # hub_server only keeps the client's default endpoint local; the push goes to a closed port.
    folder = _placeholder_checkpoint(tmp_path / "ckpt")
    before = _fingerprint(folder)
    with pytest.raises(HubPushError, match=r"Could not reach the Hub .*HF_ENDPOINT"):
        push_checkpoint(folder, "user/nowhere", token="dummy", endpoint=closed_port_url)
    assert _fingerprint(folder) == before


def test_push_with_a_bad_token_says_so(hub_server: HubServer, tmp_path: Path) -> None:
    folder = _placeholder_checkpoint(tmp_path / "ckpt")
    with pytest.raises(HubPushError, match="refused the token"):
        push_checkpoint(folder, "user/secret", token="not-the-token", endpoint=hub_server.url)
    assert hub_server.repos == {}


def test_incomplete_checkpoint_is_refused_before_any_request(hub_server: HubServer, tmp_path: Path) -> None:
    folder = _placeholder_checkpoint(tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "modeling_s2gr.S2GRModel"}}))
    with pytest.raises(ValueError, match=r"missing: model\.safetensors, modeling_s2gr\.py"):
        push_checkpoint(folder, "user/incomplete", token=hub_server.token, endpoint=hub_server.url)
    assert hub_server.requests == []


def test_s2gr_checkpoint_round_trip_gives_identical_recommendations(
    tiny_s2gr, hub_server: HubServer, run_with_hub: Callable[..., str], tmp_path: Path
) -> None:
    folder = tiny_s2gr.folder
    before = _fingerprint(folder)
    commit_url = push_checkpoint(folder, "user/s2gr-tiny", token=hub_server.token, endpoint=hub_server.url)
    assert _fingerprint(folder) == before
    api = HfApi(endpoint=hub_server.url)
    info = api.model_info("user/s2gr-tiny")
    assert {s.rfilename for s in info.siblings} == {".gitattributes", *before}
    assert {"modeling_s2gr.py", "configuration_s2gr.py", "tokenization_s2gr.py", "README.md"} <= set(before)
    assert info.card_data.library_name == "s2gr"
    assert {r.dataset_split for r in info.card_data.eval_results} == {"validation", "test"}

    histories = tiny_s2gr.data.splits["test"]["history"][:4]
    model = S2GRForGenerativeRecommendation.from_pretrained(folder)
    tokenizer = S2GRTokenizer.from_pretrained(folder)
    with single_thread():  # the child uses one thread too: same float sums, bit-identical scores
        local = S2GRRecommender(model, tokenizer).recommend(
            histories, top_k=10, num_beams=5, exclude=histories, return_scores=True
        )
    out = tmp_path / "out.json"
    args = ("user/s2gr-tiny", "user/s2gr-copy", str(out), "1", json.dumps(histories))
    run_with_hub(S2GR_ROUND_TRIP, *args)

    loaded = json.loads(out.read_text())
    assert loaded["s2gr_imported"] is False  # the Hub's code files alone did the work
    assert all(name.startswith("transformers_modules.") for name in loaded["classes"]), loaded["classes"]
    expected = [[[item, score] for item, score in row] for row in local]
    assert all(len(row) == 10 for row in expected)
    assert loaded["ranked"] == expected  # same item ids and bit-identical scores
    assert loaded["copy"] == expected  # push_to_hub of the remote-code objects ships a loadable checkpoint
    copy_files = set(api.list_repo_files("user/s2gr-copy"))
    assert {
        "modeling_s2gr.py",
        "configuration_s2gr.py",
        "tokenization_s2gr.py",
        "sid_arrays.safetensors",
    } <= copy_files
    print(
        f"round trip: {commit_url} -> {len(info.siblings)} files -> fresh process without s2gr: identical "
        f"top-10 item ids and scores for {len(histories)} users; push_to_hub copy: identical too"
    )
