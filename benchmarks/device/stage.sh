#!/usr/bin/env bash
# Stage what a bare GPU machine of this workplace lacks into .device/ (git-ignored), for benchmarks/device/run.sh.
#
# Run here, on the CPU machine, from the repository root, after `make install` and one run of each data set
# (`s2gr data stats ml-1m`, `s2gr data stats ml-100k` and any training, which caches their item embeddings):
#     bash benchmarks/device/stage.sh
# The GPU image holds torch, transformers, accelerate, peft and sentence-transformers but not datasets or
# evaluate, and it reaches no network: the wheels of those (for its Python 3.12) and the verified MovieLens
# files and item embeddings of the s2gr cache travel with the working tree instead (under 64 MiB in all).
set -euo pipefail
cache="${S2GR_CACHE:-$HOME/.cache/s2gr}"
for need in assets/ml-1m assets/ml-100k embeddings; do
  [[ -d "$cache/$need" ]] || { echo "stage: $cache/$need is missing: run s2gr on ml-1m and ml-100k here first" >&2; exit 1; }
done
pins=()
for package in datasets evaluate dill multiprocess fsspec xxhash; do
  version="$(python -m pip show "$package" 2>/dev/null | sed -n 's/^Version: //p')"
  [[ -n "$version" ]] || { echo "stage: $package is not installed here: run make install first" >&2; exit 1; }
  pins+=("$package==$version")
done
rm -rf .device && mkdir -p .device/wheels
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .device/wheels "${pins[@]}"
# The data sets' files compress about 5x; the embeddings spare the encoder (88 MB) a trip.
tar -czf .device/cache.tgz -C "$cache" assets/ml-1m assets/ml-100k embeddings
du -sh .device/wheels .device/cache.tgz
