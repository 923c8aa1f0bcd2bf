"""Shared pytest fixtures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hub_server import HubServer

if TYPE_CHECKING:  # s2gr.data imports pandas and datasets: only the tests that build a model pay for them
    from s2gr.data import RecData

# Environment prefixes of the Hub and transformers clients; a subprocess must not inherit any of them
# (a cache path or offline switch from the outer shell would bypass the local Hub).
_CLIENT_ENV_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_")


@pytest.fixture
def hub_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A local in-memory Hub (`.url`, `.token`, `.fail_all`, `.requests`, `.repos`) for one test.

    In this process `huggingface_hub`'s default endpoint is pointed at it as well: the client reads
    `HF_ENDPOINT` once at import, and some calls (the agent-registry lookup behind its user-agent header) use
    that default whatever endpoint `HfApi` is given, so without this they would contact huggingface.co.
    """
    from huggingface_hub import constants

    with HubServer() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        yield server


@pytest.fixture
def closed_port_url() -> str:
    """A local URL where nothing listens, so that connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def run_with_hub(hub_server: HubServer, tmp_path: Path) -> Callable[..., str]:
    """`run(code, *argv)`: run Python code in a fresh interpreter whose Hub is `hub_server`; returns its stdout.

    The child gets `HF_ENDPOINT` before it imports `huggingface_hub` (the only reliable way: the endpoint is
    read at import), `HF_HUB_OFFLINE=0`, the server's token as `HF_TOKEN`, no telemetry, and a private
    `HF_HOME`, so downloads, the remote-code module cache and the token all start empty. It runs in
    `tmp_path`, so no local package or folder can stand in for a Hub repo of the same name.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith(_CLIENT_ENV_PREFIXES)}
    env.update(
        HF_ENDPOINT=hub_server.url,
        HF_HUB_OFFLINE="0",
        HF_TOKEN=hub_server.token,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HOME=str(tmp_path / "hf_home"),
        TOKENIZERS_PARALLELISM="false",
    )

    def run(code: str, *argv: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code, *argv],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"subprocess failed with exit code {result.returncode}:\n{result.stderr[-6000:]}")
        return result.stdout

    return run


@dataclass(frozen=True)
class TinyS2GR:
    """A saved tiny S2GR model folder (model + tokenizer + code files + card + run.json) and its data."""

    folder: Path
    data: RecData
    num_beams: int
    data_args: tuple[str, ...]  # CLI flags that load `data` again (the model knows only this slice's items)


@pytest.fixture(scope="session")
def tiny_s2gr(tmp_path_factory: pytest.TempPathFactory) -> TinyS2GR:
    """An untrained tiny S2GR (`tiny_runs.tiny_config`) on a slice of ml-100k, saved as `s2gr train` saves it.

    Built from `train_run`'s own steps minus the training (seconds instead of a minute on a busy CPU): the
    folder and card are what a run writes, and the weights are seeded, so every test sees the same model.
    With this seed its validation metrics are non-zero (its test ones zero): compare numbers there.
    """
    from tiny_runs import single_thread, tiny_config
    from transformers import set_seed

    from s2gr.catalog import build_catalog
    from s2gr.evaluation import split_metrics
    from s2gr.titles import item_titles
    from s2gr.training.run import load_run_data, new_model, run_summary, save_model

    config = tiny_config(tmp_path_factory.mktemp("tiny-run"))
    with single_thread():
        set_seed(0)
        data = load_run_data(config)
        catalog = build_catalog(data, config.codebook_config(), encoder=config.encoder, progress=False)
        model = new_model(catalog.tokenizer, config).eval()
        # The card's splits only (final_metrics would also rank without seen-item filtering: twice the time).
        metrics: dict = {"s2gr": {}, "most_popular": {}}
        for split in ("validation", "test"):
            for method, values in split_metrics(
                model, catalog.tokenizer, data, split, num_beams=config.num_beams
            ).items():
                metrics[method][split] = values
    folder = Path(config.output_dir) / "model"
    summary = run_summary(config, data, catalog.tokenizer, catalog.stats, model, metrics, 0.0)
    save_model(model, catalog.tokenizer, folder, summary, item_titles(data.items))
    data_args = ("--dataset", str(config.dataset), "--max-users", str(config.max_users))
    return TinyS2GR(folder, data, config.num_beams, data_args)


@pytest.fixture(scope="module")
def loaded(tiny_s2gr: TinyS2GR):
    """The tiny model (eval mode) and its tokenizer, loaded once per test module from `tiny_s2gr`'s folder."""
    from s2gr import S2GRForGenerativeRecommendation, S2GRTokenizer

    folder = tiny_s2gr.folder
    return S2GRForGenerativeRecommendation.from_pretrained(folder).eval(), S2GRTokenizer.from_pretrained(
        folder
    )
