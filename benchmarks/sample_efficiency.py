"""Sample efficiency: the epochs (and CPU minutes) each method needs to reach TIGER mode's final validation
NDCG@10, read from a quality benchmark's result folder (``runs/<method>-seed<k>/result.json`` curves).

The bar is the mean over TIGER's seeds of the validation NDCG@10 of the checkpoint each run kept (its best).
For every run the table gives the first evaluated epoch whose validation NDCG@10 reaches the bar, and the
minutes to get there (the run's wall time × that epoch / its last epoch: evaluation time included, so the
figure is what a user waits). Curves are only as fine as ``eval_every_epochs``.

    python benchmarks/sample_efficiency.py benchmarks/results/quality-ml-100k-cpu-36ep-k32-hist4-exact
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def load_runs(folder: Path) -> list[dict]:
    runs = [json.loads(path.read_text()) for path in sorted(folder.glob("runs/*/result.json"))]
    return [run for run in runs if run.get("curve")]


def reach(run: dict, bar: float) -> tuple[float | None, float | None]:
    """(epoch, minutes) at which the run's validation curve first reaches ``bar``; (None, None) if never."""
    last_epoch = run["curve"][-1][0]
    for epoch, value in run["curve"]:
        if value >= bar:
            return epoch, run["seconds"] / 60 * epoch / last_epoch
    return None, None


def table(folder: Path, reference: str = "tiger") -> tuple[str, dict]:
    runs = load_runs(folder)
    finals = [run["metrics"]["validation"]["ndcg@10"] for run in runs if run["method"] == reference]
    if not finals:
        raise SystemExit(f"{folder}: no {reference} runs with curves")
    bar = statistics.mean(finals)
    lines = [
        f"bar: {reference}'s final validation NDCG@10, mean of {len(finals)} seed(s) = {bar:.4f}",
        "",
        "| method | seed | final val N@10 | epoch reaching the bar | minutes to it | run minutes | epochs run |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = []
    for run in sorted(runs, key=lambda r: (r["method"], r["seed"])):
        epoch, minutes = reach(run, bar)
        row = {
            "method": run["method"],
            "seed": run["seed"],
            "final": run["metrics"]["validation"]["ndcg@10"],
            "epoch": epoch,
            "minutes": minutes,
            "run_minutes": run["seconds"] / 60,
            "epochs": run["curve"][-1][0],
        }
        rows.append(row)
        reached = "not reached" if epoch is None else f"{epoch:g}"
        spent = "–" if minutes is None else f"{minutes:.1f}"
        lines.append(
            f"| {row['method']} | {row['seed']} | {row['final']:.4f} | {reached} | {spent} | "
            f"{row['run_minutes']:.1f} | {row['epochs']:g} |"
        )
    return "\n".join(lines), {"bar": bar, "reference": reference, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="a quality.py --out folder")
    parser.add_argument("--reference", default="tiger", help="the method whose final validation sets the bar")
    args = parser.parse_args()
    text, data = table(args.folder, args.reference)
    print(text)
    (args.folder / "sample_efficiency.md").write_text(text + "\n")
    (args.folder / "sample_efficiency.json").write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
