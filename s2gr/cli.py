"""The ``s2gr`` command line: one sub-command per job, each taking a data set name or your own files."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from .data import DATASETS, DEFAULT_DATASET, Columns, RecData, embed_items, load_data


def add_data_args(parser: argparse.ArgumentParser, default: str | None = DEFAULT_DATASET) -> None:
    """Every command that reads data takes ``--dataset NAME`` or ``--interactions FILE [--items FILE]``."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset", default=None, choices=sorted(DATASETS), help=f"named data set (default {default})"
    )
    group.add_argument(
        "--interactions", help="your own interactions file (.csv/.tsv/.parquet/.jsonl/.inter/Amazon .json.gz)"
    )
    group.add_argument(
        "--items", help="item metadata file for --interactions (its text columns feed the encoder)"
    )
    group.add_argument("--user-col", default="user_id")
    group.add_argument("--item-col", default="item_id")
    group.add_argument("--time-col", default="timestamp")
    group.add_argument("--item-key-col", default="item_id", help="item id column of the --items file")
    group.add_argument(
        "--text-cols", default="", help="comma-separated --items columns for the item text (default: all)"
    )
    group.add_argument("--kcore", type=int, default=5, help="iterative k-core filter (default 5)")
    group.add_argument("--max-history", type=int, default=20, help="items of history per target (default 20)")
    group.add_argument(
        "--cache-dir", default=None, help="cache folder (default $S2GR_CACHE or ~/.cache/s2gr)"
    )
    parser.set_defaults(default_dataset=default)


def data_from_args(args: argparse.Namespace) -> RecData:
    name = args.dataset
    if name is None and args.interactions is None:
        name = args.default_dataset
    if name is not None and args.interactions is not None:
        raise SystemExit("error: give --dataset or --interactions, not both.")
    columns = Columns(
        user=args.user_col,
        item=args.item_col,
        timestamp=args.time_col,
        item_key=args.item_key_col,
        text=tuple(column for column in args.text_cols.split(",") if column),
    )
    return load_data(
        name,
        interactions=args.interactions,
        items=args.items,
        columns=columns,
        kcore=args.kcore,
        max_history=args.max_history,
        cache_dir=args.cache_dir,
    )


def format_data_stats(data: RecData) -> str:
    rows = [("before filtering", data.raw_stats), (f"after {data.kcore}-core", data.stats)]
    lines = [
        f"{data.name}",
        f"{'':18}{'users':>9}{'items':>9}{'interactions':>14}{'mean len':>10}{'median len':>12}",
    ]
    for label, stats in rows:
        lines.append(
            f"{label:18}{stats.users:>9,}{stats.items:>9,}{stats.interactions:>14,}"
            f"{stats.mean_length:>10.1f}{stats.median_length:>12.1f}"
        )
    splits = ", ".join(f"{name} {len(split):,}" for name, split in data.splits.items())
    lines.append(f"leave-one-out rows per split: {splits} (history ≤ {data.max_history} items)")
    return "\n".join(lines)


def cmd_data_stats(args: argparse.Namespace) -> None:
    if args.name is not None:
        args.dataset = args.name
    print(format_data_stats(data_from_args(args)))


def cmd_demo(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    data = data_from_args(args)
    print(format_data_stats(data))
    embeddings = embed_items(data.items, cache_dir=args.cache_dir)
    print(f"item embeddings: {embeddings.shape[0]:,} × {embeddings.shape[1]} (unit norm, cached)")
    print(f"demo finished in {time.perf_counter() - started:.1f} s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2gr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="inspect data sets").add_subparsers(
        dest="data_command", required=True
    )
    stats = data.add_parser("stats", help="users, items, interactions before and after filtering")
    stats.add_argument("name", nargs="?", default=None, help="data set name (or use --interactions)")
    add_data_args(stats)
    stats.set_defaults(handler=cmd_data_stats)

    demo = commands.add_parser("demo", help="the main job on the default data set (what `make demo` runs)")
    add_data_args(demo)
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], None] = args.handler
    try:
        handler(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
