"""The ``s2gr`` command line: one sub-command per job, each taking a data set name or your own files."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import yaml

from .catalog import CODE_USAGE_PLOT, build_catalog, describe_catalog, save_catalog
from .data import DATASETS, DEFAULT_DATASET, DEFAULT_ENCODER, Columns, RecData, embed_items, load_data
from .tokenization import CodebookConfig
from .training.config import RunConfig
from .training.run import train_run


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


def add_codebook_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("codebook (CoBa RQ-VAE; see s2gr.tokenization.CodebookConfig)")
    group.add_argument("--levels", type=int, default=3, help="code levels L (default 3)")
    group.add_argument("--codebook-size", type=int, default=256, help="codes per level K (default 256)")
    group.add_argument("--clusters", type=int, default=16, help="coarse clusters per level Kc (default 16)")
    group.add_argument("--quantizer", choices=["rqvae", "rkmeans"], default="rqvae")
    group.add_argument(
        "--plain", action="store_true", help="plain RQ-VAE (TIGER): no graph, balancing, uniformity"
    )
    group.add_argument("--no-graph", action="store_true", help="encode content embeddings only")
    group.add_argument("--no-balance", action="store_true", help="no usage-balanced assignment")
    group.add_argument("--no-uniformity", action="store_true", help="no code repulsion loss")
    group.add_argument("--codebook-seed", type=int, default=0)
    group.add_argument("--encoder", default=DEFAULT_ENCODER, help="item text encoder (name or folder)")


def codebook_from_args(args: argparse.Namespace) -> CodebookConfig:
    sizes = {
        "num_levels": args.levels,
        "codebook_size": args.codebook_size,
        "num_clusters": args.clusters,
        "seed": args.codebook_seed,
    }
    if args.plain:
        return CodebookConfig.plain(**sizes)
    config = CodebookConfig(quantizer=args.quantizer, **sizes)
    if args.no_graph:
        config.use_graph = False
    if args.no_balance:
        config.balance = config.balance_at_assign = config.reset_dead_codes = False
    if args.no_uniformity:
        config.uniformity_weight = 0.0
    return config


def cmd_build_codebook(args: argparse.Namespace) -> None:
    data = data_from_args(args)
    codebook = codebook_from_args(args)
    catalog = build_catalog(data, codebook, encoder=args.encoder, cache_dir=args.cache_dir)
    folder = save_catalog(catalog, args.out, codebook)
    print(describe_catalog(catalog))
    print(
        f"tokenizer saved to {folder} (load with S2GRTokenizer.from_pretrained or AutoTokenizer, trust_remote_code=True)"
    )
    print(f"code usage plot: {folder / CODE_USAGE_PLOT}")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Run config: a YAML file, then explicit flags, then ``--set key=value`` (dotted keys for nested fields)."""
    parser.add_argument("--config", help="YAML file of RunConfig fields (see s2gr.training.RunConfig)")
    parser.add_argument(
        "--dataset", choices=sorted(DATASETS), help=f"named data set (default {DEFAULT_DATASET})"
    )
    parser.add_argument("--interactions", help="your own interactions file instead of --dataset")
    parser.add_argument("--items", help="item metadata file for --interactions")
    parser.add_argument("--output-dir", help="run folder (default runs/s2gr)")
    parser.add_argument("--epochs", type=float, help="training epochs")
    parser.add_argument(
        "--encoder-mode", choices=["causal", "bidirectional"], help="fast causal (default) or TIGER"
    )
    parser.add_argument(
        "--tiger", action="store_true", help="no thinking tokens (num_thinking=0): the TIGER baseline"
    )
    parser.add_argument("--seed", type=int, help="random seed of training")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any RunConfig field, e.g. model.d_model=64",
    )


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {}
    if args.config:
        values = RunConfig.from_yaml(args.config).to_dict()
    if args.interactions:
        values.update(dataset=None, interactions=args.interactions, items=args.items)
    flags = {"dataset": args.dataset, "output_dir": args.output_dir, "epochs": args.epochs}
    flags |= {"encoder_mode": args.encoder_mode, "seed": args.seed, "num_thinking": 0 if args.tiger else None}
    values.update({key: value for key, value in flags.items() if value is not None})
    for assignment in args.set:
        key, separator, raw = assignment.partition("=")
        if not separator:
            raise ValueError(f"--set expects KEY=VALUE, got {assignment!r}.")
        target = values
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = yaml.safe_load(raw)
    return RunConfig.from_dict(values, source="flags")


def cmd_train(args: argparse.Namespace) -> None:
    config = run_config_from_args(args)
    result = train_run(config, resume=args.resume)
    print(format_results(result.metrics))
    print(f"model saved to {result.model_dir} ({result.seconds / 60:.1f} min)")


def format_results(metrics: dict) -> str:
    """Validation/test table of S2GR beside the most-popular baseline."""
    names = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
    lines = [f"{'method':14}{'split':24}" + "".join(f"{name:>11}" for name in names)]
    for method, label in (("s2gr", "S2GR"), ("most_popular", "most-popular")):
        for split, values in metrics[method].items():
            lines.append(f"{label:14}{split:24}" + "".join(f"{values[name]:>11.4f}" for name in names))
    return "\n".join(lines)


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

    codebook = commands.add_parser("build-codebook", help="Semantic IDs for a catalog, saved as a tokenizer")
    add_data_args(codebook)
    add_codebook_args(codebook)
    codebook.add_argument("--out", required=True, help="folder for the tokenizer, stats and plot")
    codebook.set_defaults(handler=cmd_build_codebook)

    train = commands.add_parser("train", help="data → codebook → train → evaluate → save (one run folder)")
    add_run_args(train)
    train.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --output-dir"
    )
    train.set_defaults(handler=cmd_train)

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
