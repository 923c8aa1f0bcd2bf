"""Speed and memory of s2gr against what users would otherwise run, as ratios measured in one run.

    python benchmarks/speed.py            # ML-1M users, TIGER-size models
    python benchmarks/speed.py --quick    # ML-100K, fewer steps (a few minutes)

Reports, on real MovieLens histories:
- the machine's fp32 GEMM rate (GFLOP/s), the FLOPs per training target and per recommended user, and
  which fraction of the GEMM rate each path reaches;
- training targets/s: s2gr's fast causal mode (S2GR and TIGER mode), s2gr's sliding-window mode (exact
  bidirectional TIGER encoder), and Hugging Face ``T5ForConditionalGeneration`` of the same size on the
  sliding-window recipe; where the hardware computes bf16 natively, also s2gr's fast S2GR and HF T5 under
  bf16 autocast (``RunConfig.mixed_precision='bf16'``), each against the GEMM rate of its own dtype;
- recommendation users/s with beam 20, top 10: ``model.recommend`` vs ``model.generate`` with
  ``prefix_allowed_tokens_fn`` over a trie, on the same TIGER-mode model;
- thinking-token overhead (S2GR vs TIGER mode) for training and inference;
- peak memory (max RSS of a fresh process per case; on a GPU, peak allocated memory);
- how the codebook build and the constrained-decoding tables grow with the catalog (10^4-10^6 synthetic
  items with the covariance spectrum of text embeddings), and how many items the codes leave colliding.
Each case runs in its own process so that peaks and thread pools do not mix. A case's rate is the median
over its timed repeats (passes over a training case's batches, recommendation passes), pooled over
``--rounds`` rounds of the whole plan (in the plan's order, then reversed, alternately); the table's IQR column is their interquartile range as a share of the median. Shared machines drift
by 20-30 % within minutes, so each comparison (speed-up, overhead) is a ratio of two cases of one round,
and with several rounds the median of the rounds' ratios, each round's printed beside it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

# What each case trains: the model size, and rows per training batch in each recipe (segments of 80 targets
# in the fast mode, one-target windows in the sliding-window mode).
TIGER_SETUP = {
    "model": {
        "d_model": 128,
        "num_heads": 6,
        "d_kv": 64,
        "d_ff": 1024,
        "encoder_layers": 4,
        "decoder_layers": 4,
    },
    "segments": 16,
    "windows": 256,
}
# Batches each training case times, drawn at random from an epoch (see _sampled_batches).
TRAIN_BATCHES = 5
# --tiny: a check of the script itself (tests), not a measurement.
TINY_SETUP = {
    "model": {
        "d_model": 32,
        "num_heads": 2,
        "d_kv": 16,
        "d_ff": 64,
        "encoder_layers": 1,
        "decoder_layers": 1,
    },
    "segments": 4,
    "windows": 32,
}


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def gemm_gflops(n: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    a, b = (torch.randn(n, n, device=device(), dtype=dtype) for _ in range(2))
    a @ b
    _sync()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _seconds(run) -> float:
    """Wall seconds of one call of ``run``, the device's queue drained on both sides."""
    _sync()
    start = time.perf_counter()
    run()
    _sync()
    return time.perf_counter() - start


def summarise(rates: list[float]) -> dict:
    """The median of repeated rate measurements and its interquartile range as a share of it."""
    q25, median, q75 = np.quantile(rates, [0.25, 0.5, 0.75])
    return {"rate": float(median), "iqr": float((q75 - q25) / median), "rates": [float(r) for r in rates]}


def _catalog(dataset: str, num_thinking: int):
    """Real histories and real (residual k-means, fast to build) Semantic IDs of the catalog."""
    from s2gr.catalog import build_catalog
    from s2gr.codebook import CodebookConfig
    from s2gr.data import load_data

    name, _, users = dataset.partition(":")  # "ml-100k:40": the first 40 users (a tiny slice for tests)
    data = load_data(name, max_users=int(users) if users else None)
    catalog = build_catalog(data, CodebookConfig.rkmeans(), num_thinking=num_thinking, progress=False)
    return data, catalog.tokenizer


def _model(tokenizer, encoder_mode: str, size: dict):
    from s2gr.training.config import RunConfig
    from s2gr.training.run import new_model

    model = new_model(tokenizer, RunConfig(encoder_mode=encoder_mode, model=dict(size)))
    return model.to(device())


def _flops(run) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return float(counter.get_total_flops())


def _train_rates(model, batches, targets: list[int], steps: int, bf16: bool) -> tuple[list[float], float]:
    """(targets/s of each timed pass over ``batches``, FLOPs per target) over ``batches`` holding ``targets``
    targets each: at least ``steps`` full optimiser steps, in whole passes. A pass's rate is its targets over
    its time, so that short and long batches count as they do in an epoch. ``bf16``: the forward under bf16
    autocast, as the Trainer runs it with ``mixed_precision='bf16'``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step(batch):
        with torch.autocast(device(), dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def one_pass():
        for batch in batches:
            step(batch)

    step(batches[0])  # warm-up
    flops = _flops(one_pass) / sum(targets)
    passes = -(-steps // len(batches))
    return [sum(targets) / _seconds(one_pass) for _ in range(passes)], flops


def _sampled_batches(rows, collate, batch_size: int, count: int, grouped: bool = False) -> list[dict]:
    """``count`` batches of rows drawn at random from an epoch, as the ``Trainer`` batches them by default.
    ``grouped`` (``RunConfig.group_by_length``) orders the same rows as its ``LengthGroupedSampler`` orders a
    mega-batch, rows of similar length together, so the two differ only in padding (the Trainer sorts
    mega-batches of 50 batches, which pads still less than these ``count``)."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    rng = np.random.default_rng(0)
    sample = rng.choice(len(rows), size=min(len(rows), count * batch_size), replace=False).tolist()
    if grouped:
        lengths = [rows[i]["length"] for i in sample]
        order = get_length_grouped_indices(
            lengths, batch_size, mega_batch_mult=count, generator=torch.Generator().manual_seed(0)
        )
        sample = [sample[i] for i in order]
    return [
        _to_device(collate([rows[i] for i in sample[start : start + batch_size]]))
        for start in range(0, len(sample) - batch_size + 1, batch_size)
    ]


def _to_device(batch: dict) -> dict:
    return {key: value.to(device()) for key, value in batch.items()}


def case_train(
    dataset: str,
    mode: str,
    thinking: bool,
    steps: int,
    setup: dict,
    bf16: bool = False,
    grouped: bool = False,
) -> dict:
    """Training throughput of one s2gr path: mode 'causal' (segments) or 'bidirectional' (sliding windows);
    ``grouped``: batches of rows of similar length instead of random rows."""
    from s2gr.training.collator import HistoryCollator, SegmentCollator
    from s2gr.training.samples import segment_sequences, sliding_window_samples

    data, tokenizer = _catalog(dataset, 3 if thinking else 0)
    model = _model(tokenizer, mode, setup["model"])
    train = data.splits["train"]
    if mode == "causal":
        rows, collate, batch_size = (
            segment_sequences(train, 80, 20),
            SegmentCollator(tokenizer),
            setup["segments"],
        )
    else:
        rows, collate, batch_size = (
            sliding_window_samples(train, 20),
            HistoryCollator(tokenizer),
            setup["windows"],
        )
    batches = _sampled_batches(rows, collate, batch_size, TRAIN_BATCHES, grouped)
    targets = [int(b["target_mask"].sum()) if mode == "causal" else len(b["labels"]) for b in batches]
    rates, flops = _train_rates(model, batches, targets, steps, bf16)
    return {"unit": "targets/s", "rates": rates, "flops_per_unit": flops, "bf16": bf16}


def case_train_hf_t5(dataset: str, steps: int, setup: dict, bf16: bool = False) -> dict:
    """Hugging Face T5ForConditionalGeneration, same size, on the sliding-window recipe."""
    from transformers import T5Config, T5ForConditionalGeneration

    from s2gr.training.collator import HistoryCollator
    from s2gr.training.samples import sliding_window_samples

    data, tokenizer = _catalog(dataset, 0)
    size, batch = setup["model"], setup["windows"]
    config = T5Config(
        vocab_size=tokenizer.vocab_size,
        d_model=size["d_model"],
        d_kv=size["d_kv"],
        d_ff=size["d_ff"],
        num_layers=size["encoder_layers"],
        num_decoder_layers=size["decoder_layers"],
        num_heads=size["num_heads"],
        dropout_rate=0.1,
        feed_forward_proj="relu",
        pad_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config).to(device())
    rows = sliding_window_samples(data.splits["train"], 20)
    batches = _sampled_batches(rows, HistoryCollator(tokenizer), batch, TRAIN_BATCHES)
    rates, flops = _train_rates(model, batches, [batch] * len(batches), steps, bf16)
    return {"unit": "targets/s", "rates": rates, "flops_per_unit": flops, "bf16": bf16}


def case_epoch(max_users: int | None, grouped: bool) -> dict:
    """One epoch of the real ``Trainer`` on the ``make demo`` preset (ML-100K, history 10, the demo model, no
    evaluation): targets/s end to end (data loading, collation, optimiser), batches of random rows or, with
    ``grouped``, of rows of similar length (``RunConfig.group_by_length``); and the share of padded item
    positions in its batches."""
    import tempfile

    from s2gr.catalog import build_catalog
    from s2gr.codebook import CodebookConfig
    from s2gr.training.config import RunConfig
    from s2gr.training.presets import DEMO
    from s2gr.training.run import build_trainer, load_run_data, new_model
    from s2gr.training.samples import count_targets

    with tempfile.TemporaryDirectory() as out:
        preset = {**DEMO, "output_dir": out, "max_users": max_users, "epochs": 1, "patience": 0}
        preset["time_budget_minutes"] = None
        config = RunConfig(**preset, group_by_length=grouped)
        data = load_run_data(config)
        tokenizer = build_catalog(data, CodebookConfig.rkmeans(), progress=False).tokenizer
        no_evaluation = {"eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False}
        trainer = build_trainer(
            config, data, tokenizer, new_model(tokenizer, config), disable_tqdm=True, **no_evaluation
        )
        masks = [batch["sequence_mask"] for batch in trainer.get_train_dataloader()]
        padding = sum(int((mask == 0).sum()) for mask in masks) / sum(mask.numel() for mask in masks)
        seconds = _seconds(trainer.train)
    rate = count_targets(data.splits["train"]) / seconds
    return {"unit": "targets/s", "rates": [rate], "flops_per_unit": None, "padding": padding, "bf16": False}


def case_recommend(
    dataset: str, thinking: bool, users: int, use_generate: bool, setup: dict, repeats: int
) -> dict:
    """Users/s of beam 20, top 10 over real test histories, ``repeats`` passes: ``recommend`` or
    ``generate`` + trie."""
    from s2gr.beam_search_s2gr import DEFAULT_NUM_BEAMS, DEFAULT_TOP_K

    data, tokenizer = _catalog(dataset, 3 if thinking else 0)
    model = (
        _model(tokenizer, "bidirectional", setup["model"]).eval().requires_grad_(False)
    )  # FLOP counting needs no grad hooks
    histories = data.splits["test"]["history"][:users]
    users = len(histories)
    batch = _to_device(dict(tokenizer.encode_histories(histories, return_tensors="pt")))
    if use_generate:
        allowed = _trie_fn(tokenizer)

        def run():
            return model.generate(
                **batch,
                num_beams=DEFAULT_NUM_BEAMS,
                num_return_sequences=DEFAULT_TOP_K,
                max_new_tokens=tokenizer.num_levels + 1,
                prefix_allowed_tokens_fn=allowed,
                do_sample=False,
            )
    else:
        tables = tokenizer.prefix_tables(device())

        def run():
            return model.recommend(
                batch["input_ids"],
                batch["attention_mask"],
                tables,
                top_k=DEFAULT_TOP_K,
                num_beams=DEFAULT_NUM_BEAMS,
            )

    with torch.no_grad():
        run()  # warm-up
        flops = _flops(run) / users
        rates = [users / _seconds(run) for _ in range(repeats)]
    return {"unit": "users/s", "rates": rates, "flops_per_unit": flops}


def _trie_fn(tokenizer):
    """What users write for generate(): a Python dict trie of token-id prefixes, queried per beam."""
    offsets = [tokenizer.code_token_id(level, 0) for level in range(tokenizer.num_levels + 1)]
    tokens = tokenizer.codes + np.asarray(offsets)
    trie: dict[tuple[int, ...], list[int]] = {}
    for row in tokens.tolist():
        for depth in range(len(row)):
            trie.setdefault(tuple(row[:depth]), []).append(row[depth])
    trie = {prefix: sorted(set(children)) for prefix, children in trie.items()}

    def allowed(batch_id: int, prefix: torch.Tensor) -> list[int]:
        return trie.get(tuple(prefix.tolist()[1:]), [0])  # drop the decoder start token

    return allowed


# Covariance spectrum of the synthetic catalogs: eigenvalue i ∝ i^-0.8. MiniLM embeddings of the 3,416
# MovieLens-1M titles (standardised) decay about as i^-0.87 over their first 200 directions, with a
# participation ratio of 78 and 49 % of the variance in the top 32 directions (i^-0.8: 64 and 47 %).
# Isotropic random vectors would have nothing in common for a 32-dim latent to keep.
SPECTRUM_DECAY = 0.8


def text_like_embeddings(size: int, rng: np.random.Generator, dim: int = 384) -> np.ndarray:
    """(size, dim) Gaussian items with the power-law covariance spectrum above, in a random basis."""
    scale = np.arange(1, dim + 1, dtype=np.float32) ** (-SPECTRUM_DECAY / 2)
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    out = np.empty((size, dim), dtype=np.float32)
    block = 65536  # rows drawn at a time: bounded temporaries at 10^6 items
    for start in range(0, size, block):
        rows = rng.standard_normal((min(block, size - start), dim), dtype=np.float32) * scale
        out[start : start + len(rows)] = rows @ basis
    return out


def case_catalog_scaling(sizes: list[int], full_schedule: bool = False) -> dict:
    """Seconds and memory of the codebook build and of the constrained-decoding tables for synthetic
    catalogs (`text_like_embeddings`, 3 × 256 codes): how both grow with the number of items, and how
    well the codes tell items apart.

    The build runs CoBa without the co-occurrence graph (synthetic items have no histories), by default
    for a fixed 1 warm-up + 1 RQ-VAE epoch at every size, so its time shows how the k-means
    initialisation, one epoch and the balanced assignment grow; ``full_schedule`` uses the default
    10 + 50 epochs instead, for the collisions a user gets. ``MB`` is the tables' tensor size (the trie
    in CSR form: linear in the catalog, whatever the size of the largest collision group).
    """
    from s2gr.codebook import CodebookConfig, build_semantic_ids
    from s2gr.tokenization_s2gr import S2GRTokenizer

    rng = np.random.default_rng(0)
    rows = {}
    for size in sizes:
        embeddings = text_like_embeddings(size, rng)
        schedule = {} if full_schedule else {"epochs": 1, "warmup_epochs": 1}
        config = CodebookConfig(use_graph=False, num_threads=torch.get_num_threads(), **schedule)
        start = time.perf_counter()
        semantic_ids = build_semantic_ids(embeddings, [], config, progress=False)
        build = time.perf_counter() - start
        start = time.perf_counter()  # the tokenizer sorts the SID trie at construction
        tables = S2GRTokenizer.from_semantic_ids([str(i) for i in range(size)], semantic_ids).prefix_tables()
        rows[str(size)] = {
            "codebook_s": build,
            "tables_s": time.perf_counter() - start,
            "tables_mb": tables.nbytes / 2**20,
            "epochs": config.warmup_epochs + config.epochs,
            "collision_rate": semantic_ids.stats["collision_rate"],
            "recon_mse": semantic_ids.stats["recon_mse"],
            "dedup_size": semantic_ids.stats["dedup_size"],
        }
        print(f"catalog {size:,}: {rows[str(size)]}", file=sys.stderr, flush=True)
    return {"catalogs": rows}


def _measure(name: str, kwargs: dict) -> dict:
    torch.manual_seed(0)
    result = CASES[name](**kwargs)
    result["peak_mb"] = (
        torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return result


def _worker(queue, name: str, kwargs: dict) -> None:
    queue.put(_measure(name, kwargs))


CASES = {
    "train": case_train,
    "train_hf_t5": case_train_hf_t5,
    "epoch": case_epoch,
    "recommend": case_recommend,
    "catalog_scaling": case_catalog_scaling,
}


def run_case(name: str, fresh_process: bool = True, **kwargs) -> dict:
    """One case in a fresh process (clean peaks and thread pools), or here (``--tiny``: the peaks add up)."""
    if not fresh_process:
        return _measure(name, kwargs)
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_worker, args=(queue, name, kwargs))
    process.start()
    result = queue.get()
    process.join()
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="ML-100K and fewer steps (a few minutes)")
    parser.add_argument(
        "--dataset", default=None, help="override the data set (default ml-1m, ml-100k with --quick)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed training steps per case and round, in whole passes over its batches",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the whole plan this many times, interleaved (default 1)"
    )
    parser.add_argument("--users", type=int, default=None, help="test users per recommendation case")
    parser.add_argument("--max-users", type=int, default=None, help="only the first N users (a tiny slice)")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["train", "epoch", "recommend", "scaling"],
        default=["train", "epoch", "recommend", "scaling"],
        help="what to measure (default: everything)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="synthetic catalog sizes")
    parser.add_argument(
        "--full-codebook-schedule",
        action="store_true",
        help="scaling: build with the default 10 + 50 codebook epochs instead of 1 + 1",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="tiny model and batches, all cases in this process: checks the script only",
    )
    parser.add_argument("--out", default="benchmarks/results/speed.json", help="where to write the results")
    args = parser.parse_args(argv)
    dataset = args.dataset or ("ml-100k" if args.quick else "ml-1m")
    if args.max_users:
        dataset = f"{dataset}:{args.max_users}"
    steps = args.steps or (2 if args.quick else 10)
    users = args.users or (64 if args.quick else 256)
    repeats = 1 if args.quick or args.tiny else 3  # recommendation passes per case and round
    setup = TINY_SETUP if args.tiny else TIGER_SETUP
    from s2gr.training.run import native_bf16

    gemm = gemm_gflops()
    bf16 = native_bf16()
    results = {
        "device": torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"cpu × {torch.get_num_threads()} threads",
        "dataset": dataset,
        "gemm_gflops": gemm,
        "gemm_gflops_bf16": gemm_gflops(dtype=torch.bfloat16) if bf16 else None,
        "setup": setup,
        "cases": {},
    }
    # What every training case and every recommendation case shares; each plan entry adds what sets it apart.
    train = dict(dataset=dataset, steps=steps, setup=setup)
    recommend = dict(dataset=dataset, users=users, setup=setup, repeats=repeats)
    plan = {
        "train fast (causal) S2GR": ("train", dict(train, mode="causal", thinking=True)),
        "train fast (causal) TIGER mode": ("train", dict(train, mode="causal", thinking=False)),
        # RunConfig(group_by_length=True): what batches of rows of similar length save.
        "train fast (causal) S2GR, length-grouped": (
            "train",
            dict(train, mode="causal", thinking=True, grouped=True),
        ),
        "train sliding-window S2GR": ("train", dict(train, mode="bidirectional", thinking=True)),
        "train sliding-window HF T5": ("train_hf_t5", train),
        # Mixed precision (RunConfig.mixed_precision='bf16'), where the hardware computes bf16 natively.
        "train fast (causal) S2GR, bf16": ("train", dict(train, mode="causal", thinking=True, bf16=True)),
        "train sliding-window HF T5, bf16": ("train_hf_t5", dict(train, bf16=True)),
        # The real Trainer on the make-demo preset (its own data set, ML-100K), one epoch per round.
        "demo epoch (Trainer)": ("epoch", dict(max_users=args.max_users, grouped=False)),
        "demo epoch (Trainer), length-grouped": ("epoch", dict(max_users=args.max_users, grouped=True)),
        "recommend S2GR": ("recommend", dict(recommend, thinking=True, use_generate=False)),
        "recommend TIGER mode": ("recommend", dict(recommend, thinking=False, use_generate=False)),
        "generate + trie TIGER mode": ("recommend", dict(recommend, thinking=False, use_generate=True)),
    }
    sizes = args.sizes or ([10**3, 10**4] if args.quick else [10**4, 10**5, 10**6])
    chosen = {
        label: case
        for label, case in plan.items()
        if case[0].split("_")[0] in args.parts and (bf16 or not case[1].get("bf16"))
    }
    rounds: dict[str, list[dict]] = {label: [] for label in chosen}
    for round_ in range(args.rounds):
        for label in round_order(list(chosen), round_):
            name, kwargs = chosen[label]
            rounds[label].append(run_case(name, not args.tiny, **kwargs))
            print(f"round {round_ + 1}, {label}: {rounds[label][-1]}", file=sys.stderr, flush=True)
    results["cases"] = {label: pool_rounds(measured) for label, measured in rounds.items()}
    results["comparisons"] = compare(results["cases"])
    if "scaling" in args.parts:
        results["scaling"] = run_case(
            "catalog_scaling", not args.tiny, sizes=sizes, full_schedule=args.full_codebook_schedule
        )
    print(format_table(results))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return results


def round_order(labels: list[str], round_: int) -> list[str]:
    """The plan's order in even rounds, reversed in odd ones. The machine drifts within a round, and the case
    that always ran first (right after the previous round's 10 GB ``generate`` case) fell from 292 to 164
    targets/s over three rounds while its neighbour held; alternating the order gives each pair of cases
    compared both orders, so a steady drift biases their rounds' ratios in opposite directions."""
    return labels if round_ % 2 == 0 else labels[::-1]


def pool_rounds(measured: list[dict]) -> dict:
    """One case's results from several rounds -> one: the median over every repeat of every round, the
    largest peak."""
    pooled = {key: value for key, value in measured[0].items() if key not in ("rates", "peak_mb")}
    pooled["peak_mb"] = max(m["peak_mb"] for m in measured)
    pooled["round_rates"] = [float(np.median(m["rates"])) for m in measured]
    return pooled | summarise([rate for m in measured for rate in m["rates"]])


# (name, case a, case b, how to print): a's rate over b's as a speed-up "x", or as the extra cost "%" of b over a.
COMPARISONS = [
    ("fast S2GR vs HF T5 sliding window", "train fast (causal) S2GR", "train sliding-window HF T5", "x"),
    ("fast S2GR vs s2gr sliding window", "train fast (causal) S2GR", "train sliding-window S2GR", "x"),
    ("recommend vs generate (TIGER mode)", "recommend TIGER mode", "generate + trie TIGER mode", "x"),
    ("fast S2GR bf16 vs HF T5 (fp32)", "train fast (causal) S2GR, bf16", "train sliding-window HF T5", "x"),
    (
        "fast S2GR bf16 vs HF T5 bf16",
        "train fast (causal) S2GR, bf16",
        "train sliding-window HF T5, bf16",
        "x",
    ),
    ("fast S2GR bf16 vs fast S2GR fp32", "train fast (causal) S2GR, bf16", "train fast (causal) S2GR", "x"),
    (
        "length-grouped vs random batches",
        "train fast (causal) S2GR, length-grouped",
        "train fast (causal) S2GR",
        "x",
    ),
    (
        "length-grouped vs random batches, demo epoch",
        "demo epoch (Trainer), length-grouped",
        "demo epoch (Trainer)",
        "x",
    ),
    ("thinking overhead, training", "train fast (causal) TIGER mode", "train fast (causal) S2GR", "%"),
    ("thinking overhead, inference", "recommend TIGER mode", "recommend S2GR", "%"),
]


def compare(cases: dict) -> dict:
    """Each comparison whose cases ran: the rate ratio within each round and its median over the rounds
    (two cases of one round ran minutes apart; across rounds the machine may have drifted)."""
    out = {}
    for name, a, b, kind in COMPARISONS:
        if a in cases and b in cases:
            per_round = [x / y for x, y in zip(cases[a]["round_rates"], cases[b]["round_rates"], strict=True)]
            out[name] = {"ratio": float(np.median(per_round)), "per_round": per_round, "kind": kind}
    return out


def format_table(results: dict) -> str:
    cases, gemm, gemm_bf16 = results["cases"], results["gemm_gflops"], results.get("gemm_gflops_bf16")

    peaks = f"fp32 GEMM {gemm:.1f} GFLOP/s" + (f", bf16 GEMM {gemm_bf16:.1f}" if gemm_bf16 else "")
    lines = [f"device: {results['device']}, data: {results['dataset']}, {peaks}", ""]
    width = max(map(len, ["case", *cases])) + 2  # the longest label, then a gap (no cases: --parts scaling)
    lines.append(f"{'case':{width}}{'rate':>9}{'':10}{'IQR':>6}{'MFLOP/unit':>12}{'% GEMM':>8}{'peak MB':>9}")
    for label, case in cases.items():
        rate, flops = case["rate"], case["flops_per_unit"]
        if flops is None:  # a whole epoch is not FLOP-counted
            shown = f"{'–':>12}{'–':>8}"
        else:
            fraction = rate * flops / ((gemm_bf16 if case.get("bf16") else gemm) * 1e9)  # of its dtype's peak
            shown = f"{flops / 1e6:>12.1f}{fraction:>8.1%}"
        lines.append(
            f"{label:{width}}{rate:>9.1f} {case['unit']:<9}{case['iqr']:>6.0%}{shown}{case['peak_mb']:>9.0f}"
        )
    lines += [
        f"{label}: {case['padding']:.0%} of batch positions padded"
        for label, case in cases.items()
        if "padding" in case
    ]
    lines.append("")
    comparisons = results.get("comparisons", {})
    width = max(map(len, comparisons), default=0) + 2  # the longest name and its colon, then a gap
    for name, comparison in comparisons.items():
        ratios = [comparison["ratio"], *comparison["per_round"]]
        shown = [
            f"{r:.{1 if r >= 2 else 2}f}x" if comparison["kind"] == "x" else f"{r - 1:+.0%}" for r in ratios
        ]
        rounds = f"  (rounds: {', '.join(shown[1:])})" if len(shown) > 2 else ""
        lines.append(f"{name + ':':{width}}{shown[0]}{rounds}")
    lines += [
        "",
        f"{'catalog items':>14}{'codebook epochs':>16}{'codebook s':>11}{'tables s':>10}{'tables MB':>11}"
        f"{'colliding':>11}{'dedup size':>11}{'recon MSE':>11}",
    ]
    for size, row in results.get("scaling", {}).get("catalogs", {}).items():
        lines.append(
            f"{int(size):>14,}{row['epochs']:>16}{row['codebook_s']:>11.1f}{row['tables_s']:>10.2f}"
            f"{row['tables_mb']:>11.1f}{row['collision_rate']:>11.1%}{row['dedup_size']:>11}"
            f"{row['recon_mse']:>11.3f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
