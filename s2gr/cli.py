"""The ``s2gr`` command line: one sub-command per job, each taking a data set name or your own files."""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from pathlib import Path

from .batch import dataset_histories, read_history_file, recommend_to_file
from .beam_search_s2gr import DEFAULT_NUM_BEAMS, DEFAULT_TOP_K
from .catalog import CODE_USAGE_PLOT, build_catalog, describe_catalog, save_catalog
from .checkpoint import default_device, load_checkpoint, resolve_model_folder
from .codebook import CodebookConfig
from .cold_start import load_cold_items
from .data import DATASETS, DEFAULT_DATASET, DEFAULT_ENCODER, Columns, RecData, load_data
from .data.readers import read_item_file
from .errors import InputError, S2GRError
from .evaluation import split_metrics, user_sequence
from .hub import push_checkpoint
from .recommender import DEFAULT_BATCH_SIZE, S2GRRecommender
from .titles import item_titles, load_titles
from .tokenization_s2gr import S2GRTokenizer
from .training.config import RunConfig, apply_assignments, settings_help
from .training.presets import DEMO, with_method
from .training.run import load_run_data, train_run

# Characters of item text shown per recommendation.
TEXT_WIDTH = 70


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
    group.add_argument(
        "--max-history",
        type=int,
        default=20,
        help="items of history per target (default 20; evaluate and recommend: the model's own context)",
    )
    group.add_argument(
        "--max-users",
        type=int,
        default=None,
        help="keep only the first N users of the log (a quick slice; for a model, the N it was trained on)",
    )
    group.add_argument(
        "--cache-dir", default=None, help="cache folder (default $S2GR_CACHE or ~/.cache/s2gr)"
    )
    parser.set_defaults(default_dataset=default)


def data_from_args(args: argparse.Namespace, max_history: int | None = None) -> RecData:
    """The data the flags name; ``max_history`` (a model's ``context_items``) overrides ``--max-history``."""
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
        max_history=max_history or args.max_history,
        max_users=args.max_users,
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
    """The main job on the default data set: data → embeddings → codebook → train → evaluate → save."""
    config = run_config_from_args(args, base=DEMO)
    data = load_run_data(config)
    print(format_data_stats(data), flush=True)
    # Rerunning the demo replaces the earlier demo in its own folder; any other folder follows `train`'s rules.
    result = train_run(config, data=data, overwrite=config.output_dir == DEMO["output_dir"])
    summary = json.loads((result.output_dir / "run.json").read_text())
    print(format_codebook_summary(summary["codebook"]))
    print(format_results(result.metrics))
    print(f"\nmodel saved to {result.model_dir}  (demo wall time {result.seconds / 60:.1f} min)")
    user_history = data.splits["test"][0]["history"][-5:]
    print("\nLoad it and recommend, in any Python process:")
    print("    from s2gr import S2GRRecommender")
    print(f'    recommender = S2GRRecommender.from_pretrained("{result.model_dir}")')
    print(f"    print(recommender.recommend([{user_history!r}], top_k=10))")


def format_codebook_summary(codebook: dict) -> str:
    usage = ", ".join(f"{share:.1%}" for share in codebook.get("utilisation", []))
    return (
        f"codebook: {codebook['num_levels']} levels × {codebook['codebook_size']} codes, utilisation per level "
        f"{usage}, colliding items before dedup {codebook.get('colliding_items', 0)}"
    )


def add_codebook_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("codebook (CoBa RQ-VAE; see s2gr.codebook.CodebookConfig)")
    group.add_argument("--levels", type=int, default=3, help="code levels L (default 3)")
    group.add_argument(
        "--codebook-size", type=int, default=None, help="codes per level K (default: sized to the catalog)"
    )
    group.add_argument(
        "--clusters",
        type=int,
        default=None,
        help="coarse clusters per level Kc (default: K / 16, at least 4)",
    )
    group.add_argument("--quantizer", choices=["rqvae", "rkmeans"], default="rqvae")
    group.add_argument(
        "--plain", action="store_true", help="plain RQ-VAE (TIGER): no graph, balancing, uniformity"
    )
    group.add_argument("--no-graph", action="store_true", help="encode content embeddings only")
    group.add_argument("--no-balance", action="store_true", help="no usage-balanced assignment")
    group.add_argument("--no-uniformity", action="store_true", help="no code repulsion loss")
    group.add_argument("--codebook-seed", type=int, default=0)
    group.add_argument("--encoder", default=DEFAULT_ENCODER, help="item text encoder (name or folder)")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any CodebookConfig field, applied after the flags above, e.g. balance_cap=0.2",
    )


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
    try:
        fields = apply_assignments({}, args.set)
        nested = [name for name, value in fields.items() if isinstance(value, dict)]
        if nested:  # a dotted key would put a dict into a flat field
            raise InputError(
                f"codebook fields are flat, write FIELD=VALUE (e.g. balance_cap=0.2), got {nested}"
            )
        return replace(config, **fields)
    except (ValueError, TypeError) as error:  # TypeError: a field CodebookConfig does not have
        known = ", ".join(f.name for f in dataclass_fields(CodebookConfig))
        raise InputError(f"--set: {error}. Codebook fields: {known}.") from None


def cmd_build_codebook(args: argparse.Namespace) -> None:
    data = data_from_args(args)
    codebook = codebook_from_args(args)
    catalog = build_catalog(data, codebook, encoder=args.encoder, cache_dir=args.cache_dir)
    folder = save_catalog(catalog, args.out)
    print(describe_catalog(catalog))
    print(
        f"tokenizer saved to {folder} (load with S2GRTokenizer.from_pretrained or AutoTokenizer, trust_remote_code=True)"
    )
    print(f"code usage plot: {folder / CODE_USAGE_PLOT}")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Run config: a YAML file, then explicit flags, then ``--set key=value`` (dotted keys for nested fields).
    The help lists every setting (``settings_help``)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = settings_help()
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
    method = parser.add_mutually_exclusive_group()
    method.add_argument(
        "--tiger",
        action="store_const",
        const="tiger",
        dest="method",
        help="the TIGER baseline: plain RQ-VAE codebook and no thinking tokens (the benchmarks' tiger)",
    )
    method.add_argument(
        "--no-thinking",
        action="store_const",
        const="coba-only",
        dest="method",
        help="S2GR's CoBa codebook without thinking tokens (num_thinking=0; the benchmarks' coba-only)",
    )
    parser.add_argument("--seed", type=int, help="random seed of training")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting listed below, e.g. lr=5e-4 or model.d_model=64 (repeat for several)",
    )


# The data errors name the flags of the commands that take add_data_args (data stats, evaluate, ...); the run
# commands (train, demo, finetune) set the same things with --set.
RUN_SETTING_OF_DATA_FLAG = {
    "--user-col": "columns.user=NAME",
    "--item-col": "columns.item=NAME",
    "--time-col": "columns.timestamp=NAME",
    "--item-key-col": "columns.item_key=NAME",
    "--text-cols": "columns.text=[NAME,...]",
    "--kcore": "kcore=N",
    "--max-history": "max_history=N",
    "--max-users": "max_users=N",
    "--cache-dir": "cache_dir=DIR",
}
DATA_FLAG = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, RUN_SETTING_OF_DATA_FLAG)) + r")(?![\w-])")


def name_run_settings(message: str) -> str:
    """``message`` with each data flag (``--kcore``) replaced by the run commands' ``--set kcore=N``."""
    return DATA_FLAG.sub(lambda flag: f"--set {RUN_SETTING_OF_DATA_FLAG[flag[0]]}", message)


def with_run_setting_hints(
    handler: Callable[[argparse.Namespace], None],
) -> Callable[[argparse.Namespace], None]:
    """``handler`` of a run command, whose errors name ``--set`` settings instead of data flags it lacks."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> None:
        try:
            handler(args)
        except S2GRError as error:
            if len(error.args) == 1 and isinstance(error.args[0], str):
                error.args = (name_run_settings(error.args[0]),)
            raise

    return run


def run_config_from_args(args: argparse.Namespace, base: dict | None = None) -> RunConfig:
    values = copy.deepcopy(base) if base else {}
    if args.config:
        values = RunConfig.from_yaml(args.config).to_dict()
    if args.interactions:
        values.update(dataset=None, interactions=args.interactions, items=args.items)
    flags = {"dataset": args.dataset, "output_dir": args.output_dir, "epochs": args.epochs}
    flags |= {"encoder_mode": args.encoder_mode, "seed": args.seed}
    values.update({key: value for key, value in flags.items() if value is not None})
    if args.method is not None:
        values = with_method(values, args.method)
    try:
        apply_assignments(values, args.set)
    except ValueError as error:
        raise InputError(f"--set: {error}") from None
    return RunConfig.from_dict(values, source="flags")


def cmd_train(args: argparse.Namespace) -> None:
    config = run_config_from_args(args)
    result = train_run(config, resume=args.resume, overwrite=args.overwrite)
    if not result.is_main_process:  # under `accelerate launch` the main process reports for all
        return
    print(format_results(result.metrics))
    print(f"model saved to {result.model_dir} ({result.seconds / 60:.1f} min)")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="model folder: a `s2gr train` run folder or its model/ folder, or model + tokenizer "
        "save_pretrained'ed together (for a Hub model: `hf download USER/NAME --local-dir DIR` first)",
    )
    parser.add_argument(
        "--num-beams",
        type=int,
        default=DEFAULT_NUM_BEAMS,
        help=f"beam width of the constrained search (default {DEFAULT_NUM_BEAMS})",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )


def check_catalog(data: RecData, tokenizer: S2GRTokenizer) -> None:
    """Data whose items the model never saw would fail deep inside the tokenizer: say what to pass instead."""
    known = set(tokenizer.item_ids)
    unknown = [item for item in data.item_ids if item not in known]
    if unknown:
        raise InputError(
            f"{len(unknown):,} of the {len(data.item_ids):,} items of {data.name} are not in the model's catalog "
            f"({tokenizer.num_items:,} items), e.g. {unknown[:3]}. Pass the data the model was trained on: the "
            "same --dataset or --interactions, --kcore and --max-users."
        )


def check_items(items: Sequence[str], tokenizer: S2GRTokenizer) -> None:
    known = set(tokenizer.item_ids)
    unknown = [item for item in items if item not in known]
    if unknown:
        raise InputError(
            f"unknown item id(s) {unknown[:5]}: not in the model's catalog of {tokenizer.num_items:,} items "
            f"(listed in item_ids.json of the model folder, e.g. {tokenizer.item_ids[:3]}). Pass item ids "
            "exactly as in the data the model was trained on."
        )


def cmd_evaluate(args: argparse.Namespace) -> None:
    model, tokenizer = load_checkpoint(args.model, args.device or default_device())
    data = data_from_args(args, max_history=model.config.context_items)
    check_catalog(data, tokenizer)
    values = split_metrics(
        model,
        tokenizer,
        data,
        args.split,
        exclude_seen=args.exclude_seen,
        num_beams=args.num_beams,
        batch_size=args.batch_size,
        progress=True,
    )
    key = args.split if args.exclude_seen else f"{args.split}_unfiltered"  # the keys of a run's metrics.json
    metrics = {method: {key: result} for method, result in values.items()}
    seen = "seen items excluded" if args.exclude_seen else "seen items kept"
    print(
        f"{data.name}, {args.split}: {len(data.splits[args.split]):,} users, full ranking over "
        f"{tokenizer.num_items:,} items ({seen}), {args.num_beams} beams"
    )
    print(format_results(metrics))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(f"metrics written to {out / 'metrics.json'}")


def cmd_recommend(args: argparse.Namespace) -> None:
    if args.output is not None:
        cmd_recommend_batch(args)
        return
    if args.user is None and args.history is None:
        raise InputError(
            "say whom to recommend to: --user USER_ID, --history ITEM ..., or --output FILE for every user of "
            "--input FILE (or of the data set)."
        )
    model, tokenizer = load_checkpoint(args.model, args.device or default_device())
    data = None
    if args.user is not None or args.dataset is not None or args.interactions is not None:
        data = data_from_args(args, max_history=model.config.context_items)
        check_catalog(data, tokenizer)
    known = user_sequence(data.splits, args.user) if args.user is not None else args.history
    check_items(known, tokenizer)
    history = known[-model.config.context_items :]  # what the model reads
    cold = load_cold_items(resolve_model_folder(args.model))
    (ranking,) = S2GRRecommender(model, tokenizer, cold_items=cold).recommend(
        [history],
        top_k=args.top_k,
        num_beams=args.num_beams,
        exclude=[known] if args.exclude_seen else None,
        return_scores=True,
        epsilon=args.epsilon,
    )
    who = f"user {args.user}" if args.user is not None else "the given history"
    print(f"{who}: {len(known)} known items, the model reads the last {len(history)} (oldest first):")
    print("  " + " ".join(history))
    seen = "known items excluded" if args.exclude_seen else "known items allowed"
    print(f"top {args.top_k} ({seen}; score = log-probability):")
    texts = dict(zip(data.items["item_id"], data.items["text"], strict=True)) if data is not None else None
    print(format_recommendations(ranking, texts))


def cmd_recommend_batch(args: argparse.Namespace) -> None:
    """Every user of --input (or of the data set) -> --output, a ranked table (s2gr.batch)."""
    if args.user is not None or args.history is not None:
        raise InputError("--output ranks every user of --input or of a data set; drop --user/--history.")
    if args.input is not None and (args.dataset is not None or args.interactions is not None):
        raise InputError("give --input FILE or a data set (--dataset/--interactions), not both.")
    folder = resolve_model_folder(args.model)
    recommender = S2GRRecommender(
        *load_checkpoint(folder, args.device or default_device()), cold_items=load_cold_items(folder)
    )
    titles = load_titles(resolve_model_folder(args.model))  # saved by s2gr train; --items or the data set win
    if args.input is not None:
        users, histories = read_history_file(
            args.input, args.user_col, args.item_col, args.time_col, args.history_col
        )
        if args.items is not None:
            titles = item_titles(read_item_file(args.items, Columns(item_key=args.item_key_col)))
    else:
        data = data_from_args(args, max_history=recommender.model.config.context_items)
        users, histories = dataset_histories(data)
        titles = item_titles(data.items)
    summary = recommend_to_file(
        recommender,
        users,
        histories,
        args.output,
        top_k=args.top_k,
        num_beams=args.num_beams,
        exclude_seen=args.exclude_seen,
        batch_size=args.batch_size,
        titles=titles,
        epsilon=args.epsilon,
    )
    print(
        f"{summary.rows:,} rows for {summary.users - summary.users_without_known_items:,} of {summary.users:,} "
        f"users written to {args.output} ({summary.users_per_second:,.1f} users/s)"
    )
    if summary.unknown_items:
        print(f"{summary.unknown_items:,} history items outside the model's catalog were skipped")
    if summary.users_without_known_items:
        print(f"{summary.users_without_known_items:,} users had no item of the catalog: no rows for them")


def format_recommendations(ranking: Sequence[tuple[str, float]], texts: dict[str, str] | None) -> str:
    """One row per item: rank, id, score and, with a data set, the start of the item's text."""
    if not ranking:
        return "no item left to recommend: every catalog item is excluded (try --no-exclude-seen)"
    width = max(len("item"), *(len(item) for item, _ in ranking))
    lines = [f"{'rank':>4}  {'item':<{width}}  {'score':>9}" + ("  text" if texts else "")]
    for rank, (item, score) in enumerate(ranking, start=1):
        line = f"{rank:>4}  {item:<{width}}  {score:>9.4f}"
        if texts:
            text = texts.get(item, "")
            line += "  " + (text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…")
        lines.append(line)
    return "\n".join(lines)


def cmd_push(args: argparse.Namespace) -> None:
    url = push_checkpoint(
        args.model, args.repo_id, token=args.token, private=args.private, commit_message=args.commit_message
    )
    print(f"pushed {args.model} to {args.repo_id}: {url}")
    print(
        f"load it with AutoModel.from_pretrained({args.repo_id!r}, trust_remote_code=True) and "
        f"AutoTokenizer.from_pretrained({args.repo_id!r}, trust_remote_code=True)"
    )


METHOD_LABELS = {"s2gr": "S2GR", "sasrec": "SASRec", "most_popular": "most-popular"}


def format_results(metrics: dict) -> str:
    """Validation/test table of each method (S2GR, a baseline) beside the most-popular baseline."""
    names = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
    lines = [f"{'method':14}{'split':24}" + "".join(f"{name:>11}" for name in names)]
    for method, by_split in metrics.items():
        label = METHOD_LABELS.get(method, method)
        for split, values in by_split.items():
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
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run already in --output-dir and start afresh (without it such a folder is refused)",
    )
    train.set_defaults(handler=with_run_setting_hints(cmd_train))

    demo = commands.add_parser("demo", help="the main job on the default data set (what `make demo` runs)")
    add_run_args(demo)
    demo.set_defaults(handler=with_run_setting_hints(cmd_demo))

    add_evaluate_parser(commands)
    add_recommend_parser(commands)
    add_push_parser(commands)
    # These modules import this one's shared argument helpers.
    from .finetune_cli import add_finetune_command
    from .use_cli import add_use_commands

    add_use_commands(commands)
    add_finetune_command(commands)
    return parser


def add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="Recall@5/10 and NDCG@5/10 of a saved model on a leave-one-out split",
        description="Rank every catalog item for each user of the split and report Recall/NDCG@5/10 beside "
        "the most-popular baseline. Give the data the model was trained on.",
    )
    add_model_args(evaluate)
    add_data_args(evaluate)
    evaluate.add_argument("--split", choices=["test", "validation"], default="test", help="(default test)")
    add_exclude_seen_arg(evaluate, "what a user saw before the target (default: on, as in training)")
    evaluate.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"users per beam search (default {DEFAULT_BATCH_SIZE})",
    )
    evaluate.add_argument("--out", metavar="DIR", help="also write DIR/metrics.json")
    evaluate.set_defaults(handler=cmd_evaluate)


def add_exclude_seen_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """--exclude-seen / --no-exclude-seen, on by default: ``what`` is never recommended."""
    parser.add_argument(
        "--exclude-seen", action=argparse.BooleanOptionalAction, default=True, help=f"never recommend {what}"
    )


def add_recommend_parser(commands: argparse._SubParsersAction) -> None:
    recommend = commands.add_parser(
        "recommend",
        help="top-k items for a user, a history, or every user of a file or data set (--output)",
        description="Recommend the next items. --user USER_ID reads everything known about the user in the "
        "data set (training items, then the validation and test targets) and feeds the last of them to the "
        "model (as many as its config's context_items); --history ITEM ... takes the items directly (oldest "
        "first), and then a data set is only loaded when given, to show item texts. --output FILE (.parquet or "
        ".csv) ranks every user of --input FILE (one row per event, or per user with a list column) or, "
        "without --input, of the data set, and writes user_id, rank, item_id, score and title rows.",
    )
    add_model_args(recommend)
    who = recommend.add_mutually_exclusive_group()
    who.add_argument("--user", metavar="USER_ID", help="a user id of the data set")
    who.add_argument("--history", nargs="+", metavar="ITEM", help="item ids, oldest first")
    recommend.add_argument(
        "--top-k", type=int, default=DEFAULT_TOP_K, help=f"items to recommend (default {DEFAULT_TOP_K})"
    )
    add_exclude_seen_arg(recommend, "a known item of the user or history (default: on)")
    add_epsilon_arg(recommend)
    batch = recommend.add_argument_group("batch (--output)")
    batch.add_argument("--output", metavar="FILE", help="write every user's top-k here (.parquet or .csv)")
    batch.add_argument(
        "--input",
        metavar="FILE",
        help="histories to rank (.csv/.tsv/.parquet/.jsonl): user and item columns (one row per event, ordered by "
        "--time-col when present) or a --history-col list column (one row per user); default: every user of the "
        "data set. --items FILE adds titles.",
    )
    batch.add_argument(
        "--history-col", default="history", help="list column of a one-row-per-user --input (default history)"
    )
    batch.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"users per beam search (default {DEFAULT_BATCH_SIZE})",
    )
    add_data_args(recommend)
    recommend.set_defaults(handler=cmd_recommend)


def add_epsilon_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--epsilon",
        type=float,
        default=0.0,
        help="largest share of each top-k for cold items (s2gr add-items), scored like the generated item whose "
        "codes they share (default 0: none)",
    )


def add_push_parser(commands: argparse._SubParsersAction) -> None:
    push = commands.add_parser(
        "push",
        help="upload a model folder to the Hugging Face Hub",
        description="Check that the folder loads from the Hub (weights, tokenizer, code files, model card; "
        "a card is generated from run.json when README.md is missing), create the repo if needed and upload "
        "the folder in one commit. The folder itself is never modified. The endpoint is HF_ENDPOINT "
        "(default https://huggingface.co).",
    )
    push.add_argument("--model", required=True, metavar="DIR", help="model folder (e.g. runs/s2gr/model)")
    push.add_argument("--repo-id", required=True, metavar="USER/NAME", help="Hub repo, created if missing")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--token", help="write token (default: HF_TOKEN or the `hf auth login` token)")
    push.add_argument("--commit-message", default="Upload S2GR checkpoint")
    push.set_defaults(handler=cmd_push)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], None] = args.handler
    try:
        handler(args)
    except (
        S2GRError
    ) as error:  # the user's mistake, explained by the message; anything else keeps its traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
