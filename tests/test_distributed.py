"""``train_run`` unchanged under ``accelerate launch``: 2 CPU processes (DDP, gloo) against 1 process.

With per-process batch b on 2 processes and batch 2b on one, the same seeded sampler gives every optimiser step
the same 2b rows (accelerate hands consecutive batches of b to the ranks in turn). With no dropout, no in-batch
InfoNCE (its negatives are one process's rows) and plain SGD, both runs must then make the same updates up to
float summation order: this checks the loss scale under DDP (each rank's loss is its own sum over the global
target count, multiplied by the number of processes because DDP averages the gradients), the loss terms
averaged over the ranks, the epoch length (and so the evaluation steps) with 2 processes, and that every
rank evaluates the same model and reports the same metrics.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import (
    CHILD,
    EXACT_MODEL,
    MAX_USERS,
    METRIC_KEYS,
    SGD,
    assert_same_weights,
    child_env,
    model_weights,
    saved_weights,
    single_thread,
    tiny_config,
)

from s2gr.evaluation import evaluate_split, seen_items
from s2gr.modeling_s2gr import S2GRForGenerativeRecommendation
from s2gr.tokenization_s2gr import S2GRTokenizer
from s2gr.training.run import load_run_data, train_run

OVERRIDES = {**SGD, "learning_rate": 0.1, "max_steps": 6}
# infonce_loss is logged (the regulariser needs the auxiliary decoder) but weighted 0: its in-batch negatives
# are 4 rows per process here against 8 in one process, so it is the one term that differs.
LOGGED = ("loss", "grad_norm", "rec_loss", "align_loss", "reg_loss", "align_loss_l1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.timeout(300)
def saved_arrays(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tmp_path) -> None:
    config = tiny_config(tmp_path / "ddp", model=EXACT_MODEL, batch_size=4, eval_every_epochs=0.03)
    config.save(tmp_path / "ddp.yaml")
    env = child_env()
    env["ACCELERATE_USE_CPU"] = "1"  # CPU processes with the gloo backend (no GPU on the test machine)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(free_port())]
    command = [*launch, str(CHILD), str(tmp_path / "ddp.yaml"), str(tmp_path / "ddp"), json.dumps(OVERRIDES)]
    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=280)
    if finished.returncode != 0:
        pytest.fail(f"accelerate launch failed ({finished.returncode}):\n{finished.stderr[-6000:]}")
    ranks = [json.loads((tmp_path / f"ddp.rank{rank}.json").read_text()) for rank in (0, 1)]

    # Both processes trained one DDP model and evaluated it identically.
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    assert [rank["is_main_process"] for rank in ranks] == [True, False]  # only rank 0 writes and reports
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    evals = [[entry for entry in rank["log_history"] if "eval_ndcg@10" in entry] for rank in ranks]
    assert evals[0] == evals[1]
    assert [entry["step"] for entry in evals[0]] == [3, 6]
    losses = [[entry for entry in rank["log_history"] if "loss" in entry] for rank in ranks]
    assert losses[0] == losses[1]  # loss and loss terms are averaged over the processes
    ddp_folder = tmp_path / "ddp"
    assert json.loads((ddp_folder / "metrics.json").read_text()) == ranks[0]["metrics"]
    # The main process alone built the codebook and saved it in catalog/, which rank 1 loaded.
    built, saved = (
        saved_arrays(ddp_folder / name / "sid_arrays.safetensors") for name in ("catalog", "model")
    )
    assert built.keys() == saved.keys() and all(torch.equal(built[key], saved[key]) for key in built)

    # One process, twice the batch, the same steps.
    with single_thread():
        single = train_run(
            tiny_config(tmp_path / "single", model=EXACT_MODEL, batch_size=8, eval_every_epochs=0.03),
            **OVERRIDES,
        )
    single_losses = [entry for entry in single.log_history if "loss" in entry]
    assert [entry["step"] for entry in single_losses] == [entry["step"] for entry in losses[0]] == [2, 4, 6]
    for ddp_entry, single_entry in zip(losses[0], single_losses, strict=True):
        for key in LOGGED:
            assert ddp_entry[key] == pytest.approx(single_entry[key], rel=1e-4), key
    ddp_weights = saved_weights(ddp_folder / "model")
    assert_same_weights(model_weights(single.model), ddp_weights, atol=1e-5, rtol=1e-4)
    assert losses[0][-1]["loss"] < losses[0][0]["loss"]  # it did train

    # Validation metrics: on the DDP model's weights, this process computes what every rank reported. The
    # single-process run's own weights differ in the last bits; a beam may flip, at most 1/users per metric.
    data = load_run_data(config)
    model = S2GRForGenerativeRecommendation.from_pretrained(ddp_folder / "model")
    tokenizer = S2GRTokenizer.from_pretrained(ddp_folder / "model")
    with single_thread():
        again = evaluate_split(
            model,
            tokenizer,
            data.splits["validation"],
            seen=seen_items(data.splits, "validation"),
            num_beams=config.num_beams,
        )
    assert again == pytest.approx(ranks[0]["metrics"]["s2gr"]["validation"], abs=1e-9)
    single_evals = [entry for entry in single.log_history if "eval_ndcg@10" in entry]
    for ddp_entry, single_entry in zip(evals[0], single_evals, strict=True):
        for key in METRIC_KEYS:
            assert ddp_entry[f"eval_{key}"] == pytest.approx(
                single_entry[f"eval_{key}"], abs=1 / MAX_USERS + 1e-9
            )
