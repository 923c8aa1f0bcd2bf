"""Fine-tuning on a new catalog, measured on MovieLens: do held-out items become recommendable?

Protocol:

1. Hold out a random 10 % of the items and every interaction with them (``hold_out_items``); train the base
   model (codebook included) on the rest only, with ``train_run``.
2. Fine-tune it on the full data set with ``finetune_run``, with LoRA and/or fully (``--method``): the held-out
   items get SIDs from the base's frozen codebook and are learnt from their interactions.
3. Rank the top 10 of every test user of the *full* data set (seen items excluded) with
   - the base model on its own catalog (held-out items dropped from histories: it cannot read or name them),
   - the base model with the extended tokenizer but no training (can it name new items zero-shot?),
   - the base model with the held-out items as cold items (``s2gr.cold_start``: SIDs from their text alone, no
     training) and ``--epsilons`` ε: up to floor(ε · 10) of each top-10 for cold items sharing a beam's codes,
   - each fine-tuned (merged) model,
   and report Recall@10 / NDCG@10 on the users whose test item is a held-out item and on the others, the
   share of held-out items that appear in any top-10 list, the share of top-10 slots they fill, and the
   relative change on the other users.

Acceptance (the issue): held-out-target Recall@10 well above the base's (which is 0: it cannot name them), and
other users' Recall@10 within 5 % relative of the base's.

Usage::

    python benchmarks/finetune_new_catalog.py --quick     # ML-100K, small model, CPU: ~15 min on one thread
    python benchmarks/finetune_new_catalog.py             # ML-1M, TIGER-size model (a GPU is advisable)

Results go to ``--output-dir``: ``base/``, ``finetune-lora/``, ``finetune-full/`` run folders and
``benchmark.json``. ``--reuse-base`` skips step 1 when ``base/model`` exists (same ``--seed``/``--fraction``).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2gr import S2GRRecommender
from s2gr.checkpoint import load_checkpoint
from s2gr.codebook import FrozenQuantizer
from s2gr.data import RecData, embed_items, load_data
from s2gr.evaluation import ranking_metrics, seen_items
from s2gr.tokenization_s2gr import S2GRTokenizer
from s2gr.training.config import RunConfig, apply_assignments
from s2gr.training.finetune import (
    ATTENTION_PROJECTIONS,
    DEFAULT_LORA_RANK,
    extend_catalog,
    finetune_run,
    hold_out_items,
)
from s2gr.training.run import MODEL_DIR, train_run

# Per mode: data set, model size (S2GRConfig fields; {} = TIGER's size), run settings of both runs, epochs and
# learning rates of the base run and of fine-tuning, LoRA rank. Quick: measured on one CPU thread, batch 16
# gives the undertrained small model 4x more updates than 64 for the same compute.
MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "dataset": "ml-100k",
        "model": {
            "d_model": 64,
            "num_heads": 4,
            "d_kv": 16,
            "d_ff": 256,
            "encoder_layers": 1,
            "decoder_layers": 1,
        },
        "run": {"batch_size": 16},
        "base_epochs": 4,
        "base_lr": 2e-3,
        "finetune_epochs": 4,
        "finetune_lr": 2e-3,
        "lora_rank": DEFAULT_LORA_RANK,
    },
    "full": {
        "dataset": "ml-1m",
        "model": {},
        "run": {},
        "base_epochs": 30,
        "base_lr": 1e-3,
        "finetune_epochs": 5,
        "finetune_lr": 1e-3,
        "lora_rank": DEFAULT_LORA_RANK,
    },
}
METHODS = {"lora": ("lora",), "full": ("full",), "both": ("lora", "full"), "none": ()}
LABELS = {"base": "base (own catalog)", "zero_shot": "base + new SIDs, untrained"}
TOP_K = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="ML-100K with a small model (minutes on a CPU)")
    parser.add_argument("--output-dir", help="folder for the runs (default runs/bench-finetune[-quick])")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of items held out (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out item draw")
    parser.add_argument(
        "--method",
        choices=sorted(METHODS),
        default="both",
        help="LoRA, full fine-tuning, both (default), or none (base, zero-shot and cold-start rows only)",
    )
    parser.add_argument(
        "--epsilons",
        default="0.1,0.2",
        help="cold-start shares ε of the top-10, comma-separated (default 0.1,0.2)",
    )
    parser.add_argument("--lora-rank", type=int, help=f"LoRA rank (default {DEFAULT_LORA_RANK})")
    parser.add_argument(
        "--lora-targets",
        default=",".join(ATTENTION_PROJECTIONS),
        help="comma-separated linear layers for LoRA (default the attention projections; add wi,wo for FFNs)",
    )
    parser.add_argument("--base-epochs", type=float, help="override the mode's base-run epochs")
    parser.add_argument("--finetune-epochs", type=float, help="override the mode's fine-tuning epochs")
    parser.add_argument("--finetune-lr", type=float, help="override the mode's fine-tuning learning rate")
    parser.add_argument("--max-users", type=int, help="first N users only (a smoke run of the pipeline)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--reuse-base", action="store_true", help="reuse OUTPUT_DIR/base/model when it exists (same --seed)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="RunConfig field for both runs (YAML value; lr and model.* apply to the base run), e.g. batch_size=32",
    )
    return parser.parse_args()


def run_configs(
    args: argparse.Namespace, mode: dict[str, Any], output: Path
) -> tuple[RunConfig, dict[str, RunConfig]]:
    """The base run's config and one fine-tuning config per method; ``--set`` values apply to all."""
    extra = apply_assignments({}, args.set)
    model = {**mode["model"], **extra.pop("model", {})}
    common = {"dataset": mode["dataset"], "max_users": args.max_users, **mode["run"]}
    base = RunConfig.from_dict(
        {
            **common,
            "model": model,
            "output_dir": str(output / "base"),
            "epochs": args.base_epochs or mode["base_epochs"],
            "lr": mode["base_lr"],
            **extra,
        }
    )
    finetune = {
        method: RunConfig.from_dict(
            {
                **common,  # no model fields: the architecture is the base's
                "output_dir": str(output / f"finetune-{method}"),
                "epochs": args.finetune_epochs or mode["finetune_epochs"],
                "lr": args.finetune_lr or mode["finetune_lr"],
                **{key: value for key, value in extra.items() if key != "lr"},
            }
        )
        for method in METHODS[args.method]
    }
    return base, finetune


def rank_test_users(
    model: Any,
    tokenizer: Any,
    data: RecData,
    config: RunConfig,
    cold_items: list[str] | tuple = (),
    epsilon: float = 0.0,
) -> list[list[str]]:
    """Top-10 of every test user of ``data``, seen items excluded. Items outside the tokenizer's catalog are
    dropped from the histories (a model cannot read an item it has no SID for); a user left without history
    gets an empty list (a miss). ``cold_items``/``epsilon``: see ``S2GRRecommender``."""
    known = set(tokenizer.item_ids)
    histories = [[item for item in history if item in known] for history in data.splits["test"]["history"]]
    seen = seen_items(data.splits, "test")
    users = [user for user, history in enumerate(histories) if history]
    ranked = S2GRRecommender(model, tokenizer, cold_items=cold_items).recommend(
        [histories[user] for user in users],
        top_k=TOP_K,
        num_beams=config.num_beams,
        exclude=[seen[user] for user in users],
        batch_size=config.eval_batch_size,
        epsilon=epsilon,
    )
    rankings: list[list[str]] = [[] for _ in histories]
    for user, ranking in zip(users, ranked, strict=True):
        rankings[user] = ranking
    return rankings


def group_metrics(rankings: list[list[str]], targets: list[str], held_out: set[str]) -> dict[str, Any]:
    """Recall/NDCG@10 of the held-out-target users and of the others; the held-out items' coverage (share of
    them in any top-10 list) and slot share (share of all top-10 slots they fill)."""
    groups: dict[str, list[int]] = {"held_out": [], "other": []}
    for user, target in enumerate(targets):
        groups["held_out" if target in held_out else "other"].append(user)
    result: dict[str, Any] = {
        name: {
            "users": len(users),
            **ranking_metrics([rankings[u] for u in users], [targets[u] for u in users], cutoffs=(TOP_K,)),
        }
        for name, users in groups.items()
    }
    shown = [item for ranking in rankings for item in ranking]
    result["coverage"] = len(set(shown) & held_out) / max(len(held_out), 1)
    result["slot_share"] = sum(item in held_out for item in shown) / max(len(shown), 1)
    return result


def relative_change(value: float, reference: float) -> float:
    return (value - reference) / reference if reference else float("nan")


def format_table(results: dict[str, dict[str, Any]], target_share: float) -> str:
    held, other = results["base"]["held_out"]["users"], results["base"]["other"]["users"]
    recall, ndcg = f"recall@{TOP_K}", f"ndcg@{TOP_K}"
    lines = [
        f"test users: {held} with a held-out target item ({target_share:.1%}), {other} others",
        f"{'model':44}{'held-out R@10':>14}{'N@10':>8}{'other R@10':>12}{'N@10':>8}"
        f"{'coverage':>10}{'slots':>8}{'Δ other R@10':>14}{'Δ N@10':>9}",
    ]
    base = results["base"]["other"]
    for key, row in results.items():
        lines.append(
            f"{LABELS.get(key, key):44}{row['held_out'][recall]:>14.4f}{row['held_out'][ndcg]:>8.4f}"
            f"{row['other'][recall]:>12.4f}{row['other'][ndcg]:>8.4f}{row['coverage']:>10.1%}"
            f"{row['slot_share']:>8.1%}{relative_change(row['other'][recall], base[recall]):>+14.1%}"
            f"{relative_change(row['other'][ndcg], base[ndcg]):>+9.1%}"
        )
    lines.append(
        "coverage: share of held-out items in any top-10 list; slots: share of all top-10 slots they fill "
        "(compare with their share of test targets); Δ: relative to the base on the other users."
    )
    return "\n".join(lines)


def base_model_dir(config: RunConfig, data: RecData, embeddings: np.ndarray, reuse: bool) -> Path:
    """Train the base on ``data`` (the catalog minus held-out items), or reuse a finished base run."""
    existing = Path(config.output_dir) / MODEL_DIR
    if reuse and (existing / "config.json").is_file():
        print(f"reusing the base model in {existing}")
        return existing
    return train_run(config, data=data, embeddings=embeddings, overwrite=True).model_dir


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    mode = MODES["quick" if args.quick else "full"]
    lora_rank = args.lora_rank or mode["lora_rank"]
    output = Path(args.output_dir or f"runs/bench-finetune{'-quick' if args.quick else ''}")
    base_config, finetune_configs = run_configs(args, mode, output)
    started = time.perf_counter()
    data = load_data(mode["dataset"], max_users=args.max_users)
    embeddings = embed_items(data.items)  # (N, E) of the full catalog; the base uses its rows
    base_data, held_out = hold_out_items(data, args.fraction, args.seed)
    print(
        f"{data.name}: {len(data.items):,} items, {len(held_out):,} held out ({len(base_data.items):,} left)"
    )
    index = data.item_index()
    base_embeddings = embeddings[[index[item] for item in base_data.item_ids]]
    base_dir = base_model_dir(base_config, base_data, base_embeddings, args.reuse_base)
    tuned = {}
    for method, config in finetune_configs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            tuned[method] = finetune_run(
                base_dir,
                config,
                lora=method == "lora",
                lora_rank=lora_rank,
                lora_targets=args.lora_targets.split(","),
                data=data,
                embeddings=embeddings,
            )
    base_model, base_tokenizer = load_checkpoint(base_dir)
    tokenizer = S2GRTokenizer.from_pretrained(base_dir)  # the extended catalog, as fine-tuning extends it
    extend_catalog(tokenizer, data, embeddings, base_config.codebook_config())
    cold_tokenizer = S2GRTokenizer.from_pretrained(base_dir)  # held-out items coded from their text alone
    quantizer = FrozenQuantizer.from_state_dict(cold_tokenizer.quantizer_state)
    cold_tokenizer.add_items(held_out, codes=quantizer.assign(embeddings[[index[item] for item in held_out]]))
    models = {"base": (base_model, base_tokenizer, 0.0), "zero_shot": (base_model, tokenizer, 0.0)}
    for epsilon in map(float, args.epsilons.split(",")):
        models[f"base + cold items, ε={epsilon:g}"] = (base_model, cold_tokenizer, epsilon)
    for method, result in tuned.items():
        targets_ = "+".join(args.lora_targets.split(","))
        label = f"fine-tuned, LoRA r={lora_rank} {targets_}" if method == "lora" else "fine-tuned, full"
        models[label] = (result.model, tokenizer, 0.0)
    targets = data.splits["test"]["target"]
    held = set(held_out)
    any_config = next(iter(finetune_configs.values()), base_config)
    results = {}
    for key, (model, tok, epsilon) in models.items():
        cold = list(held_out) if tok is cold_tokenizer else []
        results[key] = group_metrics(
            rank_test_users(model, tok, data, any_config, cold, epsilon), targets, held
        )
    summary = {
        "dataset": data.name,
        "held_out_items": len(held_out),
        "base_epochs": base_config.epochs,
        "finetune_epochs": any_config.epochs if tuned else None,
        "finetune_lr": any_config.lr if tuned else None,
        "lora_targets": args.lora_targets,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "results": results,
    }
    (output / "benchmark.json").write_text(json.dumps(summary, indent=2))
    print(format_table(results, sum(target in held for target in targets) / len(targets)))
    (output / "benchmark.md").write_text(
        format_table(results, sum(t in held for t in targets) / len(targets)) + "\n"
    )
    print(f"{summary['minutes']} min; details in {output / 'benchmark.json'}")


if __name__ == "__main__":
    main()
