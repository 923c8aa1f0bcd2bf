"""What exact causal training costs: the recommendation path and the training segments read
``context_items`` = W + layers·(W − 1) items instead of the W the decoder attends to.

Times, on a saved run's model and data, in one process with the same threads:
- recommend: ``S2GRRecommender.recommend`` over every validation user with histories of ``context_items`` items (exact)
  and of W items (the cost of the earlier, inexact path);
- train: forward + backward over one epoch of training segments carrying ``context_items`` items of
  context before their first target (exact) and W items (earlier).
Each case runs ``--rounds`` times in alternating order; the table gives the median seconds and the ratio.

    python benchmarks/context_cost.py --run benchmarks/results/quality-ml-100k-cpu-36ep-k32-hist10-exact/runs/s2gr-seed0
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from s2gr import S2GRForGenerativeRecommendation, S2GRRecommender, S2GRTokenizer
from s2gr.training.collator import SegmentCollator
from s2gr.training.config import RunConfig
from s2gr.training.run import load_run_data
from s2gr.training.samples import segment_sequences, training_split


def time_recommend(model, tokenizer, histories: list[list[str]], items: int, num_beams: int) -> float:
    rows = [history[-items:] for history in histories]
    started = time.perf_counter()
    S2GRRecommender(model, tokenizer).recommend(rows, num_beams=num_beams, exclude=histories)
    return time.perf_counter() - started


def time_train_epoch(model, tokenizer, segments, batch_size: int) -> float:
    """Seconds for forward + backward over one epoch of ``segments``."""
    loader = DataLoader(segments, batch_size=batch_size, collate_fn=SegmentCollator(tokenizer))
    model.train()
    started = time.perf_counter()
    for batch in loader:
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)
    model.eval()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, type=Path, help="a run folder (run_config.yaml + model/)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = RunConfig.from_yaml(args.run / "run_config.yaml")
    model = S2GRForGenerativeRecommendation.from_pretrained(args.run / "model").eval()
    tokenizer = S2GRTokenizer.from_pretrained(args.run / "model")
    data = load_run_data(config)
    window, context = model.config.max_history_items, model.config.context_items
    histories = [list(h) for h in data.splits["validation"]["history"]]
    train = training_split(data.splits, config.refit)
    segments = {
        c: segment_sequences(train, config.segment_items, c, config.recent_targets) for c in (context, window)
    }
    cases = {
        f"recommend, {context} items (exact)": lambda: time_recommend(
            model, tokenizer, histories, context, config.num_beams
        ),
        f"recommend, {window} items (earlier)": lambda: time_recommend(
            model, tokenizer, histories, window, config.num_beams
        ),
        f"train epoch, context {context} (exact)": lambda: time_train_epoch(
            model, tokenizer, segments[context], config.batch_size
        ),
        f"train epoch, context {window} (earlier)": lambda: time_train_epoch(
            model, tokenizer, segments[window], config.batch_size
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(args.rounds):
        order = list(cases) if round_ % 2 == 0 else list(reversed(cases))
        for name in order:
            times[name].append(cases[name]())
    medians = {name: statistics.median(values) for name, values in times.items()}
    names = list(cases)
    table = {
        "run": str(args.run),
        "threads": args.threads,
        "rounds": args.rounds,
        "window": window,
        "context_items": context,
        "median_seconds": medians,
        "recommend_ratio": medians[names[0]] / medians[names[1]],
        "train_ratio": medians[names[2]] / medians[names[3]],
        "segment_item_positions": {
            "exact": sum(segments[context]["length"]),
            "earlier": sum(segments[window]["length"]),
        },
    }
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {medians[name]:8.2f} s")
    print(
        f"exact / earlier: recommend {table['recommend_ratio']:.2f}x, train epoch {table['train_ratio']:.2f}x"
    )
    if args.out:
        args.out.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
