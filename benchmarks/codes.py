"""How much of the next item the codes alone predict: codebook variants compared before any model trains.

For each variant the script builds the catalog's Semantic IDs (training histories only) and reports the
codebook statistics (utilisation, collisions) and, on the validation pairs (a user's last training item →
their validation item), the mutual information between the two items' first-level codes, raw and above its
value for randomly re-paired items (the estimate's small-sample bias), the latter also as a share of the
target code's entropy. A code that the last item predicts is one the
decoder (and S2GR's thinking targets, which are clusters of these codes) can learn from history; codes
drawn from text alone predict little on MovieLens, whose text is a title, a year and genres.

    python benchmarks/codes.py --dataset ml-100k --variant coba: --variant collab32:collab_dim=32 \
        --variant rkmeans:quantizer=rkmeans --out benchmarks/results/codes/codes-ml-100k.json
    python benchmarks/codes.py --config configs/ml-latest-small-demo.yaml --variant coba: ...   # a config's data

A variant is NAME:FIELD=VALUE,FIELD=VALUE of `CodebookConfig` on top of the package's default (CoBa).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from s2gr.catalog import build_catalog
from s2gr.codebook import CodebookConfig
from s2gr.data import load_data
from s2gr.training.config import RunConfig
from s2gr.training.run import load_run_data


def entropy(labels: np.ndarray) -> float:
    """Shannon entropy in bits of a label array, Miller-Madow corrected: the plug-in estimate falls short by
    about (bins - 1) / (2 n ln 2), which at level 2 (up to K² labels for ~1k pairs) is most of the value."""
    counts = np.unique(labels, return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() + (len(counts) - 1) / (2 * counts.sum() * np.log(2)))


def mutual_information(source: np.ndarray, target: np.ndarray) -> float:
    """I(source; target) in bits from paired label arrays (bias-corrected entropies)."""
    joint = source.astype(np.int64) * (int(target.max()) + 1) + target
    return entropy(source) + entropy(target) - entropy(joint)


def excess_information(
    source: np.ndarray, target: np.ndarray, shuffles: int = 20, seed: int = 0
) -> tuple[float, float]:
    """(I(source; target), the same minus its mean over random pairings of the two): the estimate's bias with
    few pairs per label pair (64² labels for 671 pairs on the smallest log) is most of the raw value, and the
    shuffled pairings carry that bias and nothing else."""
    rng = np.random.default_rng(seed)
    raw = mutual_information(source, target)
    null = np.mean([mutual_information(source, rng.permutation(target)) for _ in range(shuffles)])
    return raw, raw - float(null)


def prefix_labels(codes: np.ndarray, levels: int, size: int) -> np.ndarray:
    """One integer per item for its first ``levels`` codes."""
    labels = np.zeros(len(codes), dtype=np.int64)
    for level in range(levels):
        labels = labels * size + codes[:, level]
    return labels


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, assignments = text.partition(":")
    fields = {}
    for assignment in filter(None, assignments.split(",")):
        key, _, value = assignment.partition("=")
        fields[key] = yaml.safe_load(value)
    return name, fields


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument(
        "--config", type=Path, help="read the data of this RunConfig file instead of --dataset"
    )
    parser.add_argument("--max-history", type=int, default=4, help="only shapes the evaluation histories")
    parser.add_argument("--variant", action="append", required=True, help="NAME:FIELD=VALUE,...")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.config:
        data = load_run_data(RunConfig.from_yaml(args.config, max_history=args.max_history))
    else:
        data = load_data(args.dataset, max_history=args.max_history)
    index = data.item_index()
    validation = data.splits["validation"]
    last = np.array([index[history[-1]] for history in validation["history"]])
    target = np.array([index[item] for item in validation["target"]])
    rows = []
    for name, fields in map(parse_variant, args.variant):
        started = time.perf_counter()
        catalog = build_catalog(data, CodebookConfig(**fields), progress=False)
        codes, size = catalog.semantic_ids.codes, catalog.tokenizer.codebook_size
        stats = catalog.stats
        row = {
            "variant": name,
            "fields": fields,
            "utilisation": stats["utilisation"],
            "collision_rate": stats["collision_rate"],
            "largest_group": stats["largest_group"],
            "seconds": round(time.perf_counter() - started, 1),
        }
        labels = prefix_labels(codes, 1, size)
        row["mi_level1"], row["excess_mi_level1"] = excess_information(labels[last], labels[target])
        row["excess_share_level1"] = row["excess_mi_level1"] / entropy(labels[target])
        rows.append(row)
        print(
            f"{name:12s} util {[round(u, 2) for u in row['utilisation']]} collisions {row['collision_rate']:.3f} "
            f"MI@1 {row['mi_level1']:.3f} bits, above shuffled pairs {row['excess_mi_level1']:.3f} "
            f"({row['excess_share_level1']:.1%} of the target code's entropy) {row['seconds']} s",
            flush=True,
        )
    if args.out:
        default = asdict(CodebookConfig())
        args.out.write_text(json.dumps({"dataset": data.name, "default": default, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
