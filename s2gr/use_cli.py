"""The ``s2gr`` commands around a trained model: ``serve`` (HTTP API), ``add-items`` (cold-start items) and
``baseline`` (SASRec or most-popular under the same protocol). Registered by ``s2gr.cli.build_parser``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .checkpoint import resolve_model_folder
from .cli import (
    add_data_args,
    add_epsilon_arg,
    add_exclude_seen_arg,
    add_model_args,
    data_from_args,
    format_results,
)
from .data import DEFAULT_ENCODER, Columns
from .data.readers import read_item_file
from .errors import InputError
from .training.config import RunConfig
from .training.run_folder import write_json


def add_use_commands(commands: argparse._SubParsersAction) -> None:
    add_serve_parser(commands)
    add_add_items_parser(commands)
    add_baseline_parser(commands)


def cmd_baseline(args: argparse.Namespace) -> None:
    from .baselines import SASRecConfig, most_popular_metrics, train_sasrec

    data = data_from_args(args)
    metrics = {"most_popular": most_popular_metrics(data, exclude_seen=args.exclude_seen)}
    if args.method == "sasrec":
        config = SASRecConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        result = train_sasrec(data, config, exclude_seen=args.exclude_seen)
        metrics = {"sasrec": result.metrics, **metrics}
        print(f"SASRec: best validation epoch {result.best_epoch}, {result.seconds / 60:.1f} min")
    print(f"{data.name}: {data.stats.users:,} users, {data.stats.items:,} items, history {data.max_history}")
    print(format_results(metrics))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out) / "metrics.json", metrics)
        print(f"metrics written to {Path(args.out) / 'metrics.json'}")


def add_baseline_parser(commands: argparse._SubParsersAction) -> None:
    baseline = commands.add_parser(
        "baseline",
        help="SASRec or most-popular on a data set, under the same protocol as s2gr train",
        description="Train and evaluate a baseline on the same split, histories (--max-history) and metrics as "
        "s2gr train: SASRec (2 blocks, hidden 64, full-softmax cross-entropy, the epoch with the best validation "
        "NDCG@10) or most-popular. Prints validation and test Recall/NDCG beside most-popular.",
    )
    baseline.add_argument("method", choices=["sasrec", "most-popular"])
    baseline.add_argument(
        "--epochs", type=int, default=200, help="SASRec: at most this many epochs (default 200)"
    )
    baseline.add_argument(
        "--batch-size", type=int, default=128, help="SASRec: chunks per batch (default 128)"
    )
    baseline.add_argument("--lr", type=float, default=1e-3, help="SASRec: Adam learning rate (default 1e-3)")
    baseline.add_argument("--seed", type=int, default=0)
    baseline.add_argument("--out", metavar="DIR", help="also write DIR/metrics.json")
    add_exclude_seen_arg(baseline, "an item the user saw before the target (default: on)")
    add_data_args(baseline)
    baseline.set_defaults(handler=cmd_baseline)


def cmd_add_items(args: argparse.Namespace) -> None:
    from .cold_start import add_cold_items
    from .data import embed_texts

    folder = resolve_model_folder(args.model)
    run_config = folder.parent / "run_config.yaml"
    encoder = args.encoder or (
        RunConfig.from_yaml(run_config).encoder if run_config.is_file() else DEFAULT_ENCODER
    )
    columns = Columns(
        item_key=args.item_key_col, text=tuple(column for column in args.text_cols.split(",") if column)
    )
    items = read_item_file(args.items, columns)
    new = add_cold_items(
        folder,
        items,
        args.output,
        lambda texts: embed_texts(texts, encoder, cache_dir=args.cache_dir, progress=False),
    )
    print(
        f"{len(new):,} of the {len(items):,} items were new and got Semantic IDs from the frozen codebook (encoder "
        f"{encoder}); the extended model is in {args.output}. Recommend them with --epsilon (e.g. 0.1)."
    )


def add_add_items_parser(commands: argparse._SubParsersAction) -> None:
    add = commands.add_parser(
        "add-items",
        help="give new catalog items Semantic IDs without training (cold start, recommended with --epsilon)",
        description="Items of --items that the model's catalog lacks get Semantic IDs from the frozen codebook, "
        "from their text alone; the model's weights do not change. The extended model folder (--output) lists "
        "them in cold_items.json: they are never generated directly, but `recommend`/`serve` with --epsilon E "
        "let them take up to floor(E * top_k) slots, each scored like the generated item whose codes it shares "
        "(TIGER, Sec. 4.3). The item text must be built as in training: the same --item-key-col/--text-cols.",
    )
    add.add_argument(
        "--model", required=True, metavar="DIR", help="a model folder or a `s2gr train` run folder"
    )
    add.add_argument(
        "--items", required=True, metavar="FILE", help="item file (.csv/.tsv/.parquet/.jsonl/.item)"
    )
    add.add_argument("--output", required=True, metavar="DIR", help="where the extended model folder goes")
    add.add_argument("--item-key-col", default="item_id", help="item id column of --items")
    add.add_argument("--text-cols", default="", help="comma-separated text columns (default: all but the id)")
    add.add_argument(
        "--encoder", default=None, help="text encoder (default: the run's, else all-MiniLM-L6-v2)"
    )
    add.add_argument("--cache-dir", default=None, help="cache folder (default $S2GR_CACHE or ~/.cache/s2gr)")
    add.set_defaults(handler=cmd_add_items)


def cmd_serve(args: argparse.Namespace) -> None:
    from .serving import serve

    try:
        import fastapi  # noqa: F401 - checked here, imported where used
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise InputError(
            f"s2gr serve needs FastAPI and uvicorn: pip install 's2gr[serve]' ({error})."
        ) from None
    serve(
        args.model,
        host=args.host,
        port=args.port,
        device=args.device,
        num_beams=args.num_beams,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_top_k=args.max_top_k,
        epsilon=args.epsilon,
    )


def add_serve_parser(commands: argparse._SubParsersAction) -> None:
    from .serving import DEFAULT_MAX_BATCH, DEFAULT_MAX_TOP_K, DEFAULT_MAX_WAIT_MS

    serve = commands.add_parser(
        "serve",
        help="an HTTP JSON API over a model (POST /recommend, GET /items/ID, GET /health, /docs)",
        description="Serve recommendations over HTTP with FastAPI on uvicorn (pip install 's2gr[serve]'). "
        "Requests that arrive within --max-wait-ms of each other are ranked together in one beam search (up to "
        "--max-batch histories); --max-batch 1 turns that off. The OpenAPI page is at /docs.",
    )
    add_model_args(serve)
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help=f"histories per beam search (default {DEFAULT_MAX_BATCH})",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULT_MAX_WAIT_MS,
        help=f"how long a request waits for others to batch with (default {DEFAULT_MAX_WAIT_MS:g})",
    )
    serve.add_argument(
        "--max-top-k",
        type=int,
        default=DEFAULT_MAX_TOP_K,
        help=f"largest top_k a request may ask (default {DEFAULT_MAX_TOP_K})",
    )
    add_epsilon_arg(serve)
    serve.set_defaults(handler=cmd_serve)
