"""Throughput of the ways to use a trained model: batch files, and `s2gr serve` with and without request batching.

Offline first, in this process with `--threads` torch threads: `S2GRRecommender.recommend` over every test
history of the run's data, and `s2gr.batch.recommend_to_file` over the same users (the batch command's path,
Parquet output included), in users/s.

For each setting the script starts `s2gr serve` on a free port, warms it up, then sends `--requests` POST
/recommend requests (one user's history each: the test histories of the run's data) from `--concurrency` clients
at once, and reports requests/s, p50/p99 latency, the beam searches the server ran and failed requests (any
non-200 answer). Batching off is `--max-batch 1`: one beam search per request. Server and clients share the
machine, so run it on quiet cores; `--threads` is the server's torch threads.

    python benchmarks/serving.py --model runs/demo --requests 400 --concurrency 32 \
        --out benchmarks/results/serving-cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from s2gr.checkpoint import resolve_model_folder
from s2gr.training.config import RunConfig
from s2gr.training.run import load_run_data

SETTINGS = {"batching": ["--max-batch", "64", "--max-wait-ms", "5"], "no batching": ["--max-batch", "1"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, extra: list[str], threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [
        sys.executable,
        "-m",
        "s2gr.cli",
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(command + extra, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2, trust_env=False).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the server did not start")


async def load(url: str, histories: list[list[str]], concurrency: int, top_k: int) -> dict:
    """Send one request per history, `concurrency` at a time; latencies in ms and failures."""
    latencies, failures = [], 0
    queue = list(histories)
    async with httpx.AsyncClient(base_url=url, timeout=300, trust_env=False) as client:

        async def worker() -> None:
            nonlocal failures
            while queue:
                history = queue.pop()
                started = time.perf_counter()
                response = await client.post("/recommend", json={"history": history, "top_k": top_k})
                latencies.append((time.perf_counter() - started) * 1000)
                failures += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "failed": failures,
        "requests_per_second": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def offline(model: str, histories: list[list[str]], threads: int, top_k: int) -> dict:
    """users/s of `recommend` and of `recommend_to_file` over the same histories, each timed twice (best kept)."""
    import tempfile

    import torch

    from s2gr import S2GRRecommender
    from s2gr.batch import recommend_to_file

    torch.set_num_threads(threads)
    recommender = S2GRRecommender.from_pretrained(model, device="cpu")
    users = [str(index) for index in range(len(histories))]
    rows = {"recommend (Python)": [], "batch file (recommend_to_file)": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(2):
            started = time.perf_counter()
            recommender.recommend(histories, top_k=top_k, exclude=histories)
            rows["recommend (Python)"].append(len(histories) / (time.perf_counter() - started))
            summary = recommend_to_file(
                recommender, users, histories, f"{folder}/out.parquet", top_k=top_k, progress=False
            )
            rows["batch file (recommend_to_file)"].append(summary.users_per_second)
    result = {name: {"users_per_second": max(rates)} for name, rates in rows.items()}
    for name, row in result.items():
        print(f"{name:32s} {row['users_per_second']:7.1f} users/s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a run folder (its run_config.yaml names the data)")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    run_folder = resolve_model_folder(args.model).parent
    data = load_run_data(RunConfig.from_yaml(run_folder / "run_config.yaml"))
    histories = [list(history) for history in data.splits["test"]["history"]]
    histories = (histories * (args.requests // len(histories) + 1))[: args.requests]
    rows = offline(args.model, histories[: len(data.splits["test"])], args.threads, args.top_k)
    for name, extra in SETTINGS.items():
        process, url = start_server(args.model, extra, args.threads)
        try:
            asyncio.run(load(url, histories[: args.concurrency], args.concurrency, args.top_k))  # warm-up
            before = httpx.get(url + "/health", trust_env=False).json()["beam_searches"]
            rows[name] = asyncio.run(load(url, histories, args.concurrency, args.top_k))
            rows[name]["beam_searches"] = (
                httpx.get(url + "/health", trust_env=False).json()["beam_searches"] - before
            )
        finally:
            process.terminate()
            process.wait(timeout=60)
        row = rows[name]
        print(
            f"{name:12s} {row['requests_per_second']:7.1f} req/s  p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms"
            f"  beam searches {row['beam_searches']}  failed {row['failed']}",
            flush=True,
        )
    speedup = rows["batching"]["requests_per_second"] / rows["no batching"]["requests_per_second"]
    print(f"batching: {speedup:.1f}x the requests/s")
    if args.out:
        settings = {"requests": args.requests, "concurrency": args.concurrency, "top_k": args.top_k}
        settings |= {"threads": args.threads, "model": str(args.model), "date": time.strftime("%Y-%m-%d")}
        args.out.write_text(json.dumps({"settings": settings, "rows": rows, "speedup": speedup}, indent=2))


if __name__ == "__main__":
    main()
