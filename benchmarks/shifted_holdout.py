"""A fresh holdout: each user's log a few interactions shorter, so validation falls on items no setting was
chosen on.

    python benchmarks/shifted_holdout.py --dataset ml-100k --drop-last 1 --out /tmp/ml-100k-shift1.inter

Every setting of the package was picked on the validation items of MovieLens (each user's second-last
item). To tell a real lead on validation from one that tuning made, this takes the data set after its
k-core filter, in its chronological order (equal timestamps in file order), drops each user's last
``--drop-last`` interactions and writes a RecBole ``.inter`` file in that order, so the tie-break is kept.
Read with ``kcore=1`` (it is filtered already), the users and their histories are the same; with
``--drop-last 1`` the new test is the old validation (same history, same target) and the new validation
is each user's last training item, which no setting was chosen on. The script prints the ``--set`` flags
that point ``quality.py`` at the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from s2gr.data.assets import fetch_asset
from s2gr.data.loading import DATASETS
from s2gr.data.preprocess import chronological, kcore_filter
from s2gr.data.readers import read_recbole

MIN_LEFT = 3  # leave-one-out needs a training item, a validation item and a test item per user


def shifted_log(interactions: pd.DataFrame, drop_last: int, kcore: int = 5) -> pd.DataFrame:
    """The k-core of ``interactions`` in chronological order, less each user's last ``drop_last`` rows."""
    if drop_last < 1:
        raise ValueError(f"drop_last must be >= 1, got {drop_last}.")
    ordered = chronological(kcore_filter(interactions, kcore))
    per_user = ordered.groupby("user_id", sort=False)
    if per_user.size().min() - drop_last < MIN_LEFT:
        raise ValueError(
            f"dropping {drop_last} interactions leaves a user with fewer than {MIN_LEFT}; lower --drop-last."
        )
    from_end = per_user.cumcount(ascending=False)  # 0 = a user's last row
    return ordered[from_end >= drop_last].reset_index(drop=True)


def write_inter(log: pd.DataFrame, path: Path) -> None:
    """A RecBole atomic interactions file, rows in the given order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {"user_id": "user_id:token", "item_id": "item_id:token", "timestamp": "timestamp:float"}
    log[list(columns)].rename(columns=columns).to_csv(path, sep="\t", index=False)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(DATASETS))
    parser.add_argument("--drop-last", type=int, default=1, help="interactions dropped from each user's end")
    parser.add_argument("--kcore", type=int, default=5, help="the k-core filter applied first (5)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", type=Path, required=True, help="the .inter file to write")
    args = parser.parse_args(argv)
    if args.out.suffix != ".inter":
        parser.error("--out must end in .inter (the RecBole format the loader reads by its extension).")
    folder = fetch_asset(args.dataset, args.cache_dir)
    inter_file, item_file = DATASETS[args.dataset]
    interactions, _ = read_recbole(folder / inter_file, folder / item_file)
    write_inter(shifted_log(interactions, args.drop_last, args.kcore), args.out)
    print(f"--set dataset=null --set interactions={args.out} --set items={folder / item_file} --set kcore=1")
    return args.out


if __name__ == "__main__":
    main()
