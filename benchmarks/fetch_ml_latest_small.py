"""The log the package was never tuned on: MovieLens "ml-latest-small" (2016: 671 users, 9,066 rated movies,
100,004 ratings; 671 users and 3,496 items after 5-core), as a new user would bring their own files.

No wheel ships it; LensKit's source distribution 2025.3.0a2.post2 does (``data/ml-latest-small``). This
script downloads that sdist with pip (no build, no install), checks its sha256 and the two files', and
writes ``ratings.csv`` and ``movies.csv`` into ``--out``. MovieLens' terms forbid redistribution, so the files
stay out of the repository.

    python benchmarks/fetch_ml_latest_small.py --out ~/.cache/s2gr/ml-latest-small
    python benchmarks/quality.py --config configs/ml-latest-small-demo.yaml --methods s2gr coba-only ...
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "lenskit==2025.3.0a2.post2"
SDIST = "lenskit-2025.3.0a2.post2.tar.gz"
SDIST_SHA256 = "8bd55f6c23c9ab4ba8e7e77c3da69afbbc3d87f4c1a138f8ff05fd9bf634d61a"
FILES = {
    "ratings.csv": "b4239649fbf90ebf405c56c3ae1d929d9e7c86fc1a3a80cbef1c884df593ef73",
    "movies.csv": "43d1736d3c688eb5b7856473c36d86a1c345676cab256c91720c1f6984d263b5",
}
MEMBER = "lenskit-2025.3.0a2.post2/data/ml-latest-small/"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path.home() / ".cache" / "s2gr" / "ml-latest-small")
    args = parser.parse_args()
    if all(
        (args.out / name).is_file() and sha256((args.out / name).read_bytes()) == digest
        for name, digest in FILES.items()
    ):
        print(f"{args.out} already holds the checked files")
        return
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            "lenskit",
            PACKAGE,
            "-d",
            folder,
        ]
        subprocess.run(command, check=True)
        sdist = Path(folder) / SDIST
        if sha256(sdist.read_bytes()) != SDIST_SHA256:
            raise SystemExit(f"{sdist.name}: sha256 differs from the pinned {SDIST_SHA256}; nothing written")
        with tarfile.open(sdist) as archive:
            contents = {name: archive.extractfile(MEMBER + name).read() for name in FILES}
    for name, data in contents.items():
        if sha256(data) != FILES[name]:
            raise SystemExit(f"{name}: sha256 differs from the pinned {FILES[name]}; nothing written")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (args.out / name).write_bytes(data)
    print(f"wrote {', '.join(FILES)} to {args.out}")


if __name__ == "__main__":
    main()
