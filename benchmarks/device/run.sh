#!/usr/bin/env bash
# The GPU checks of issue 6 as one command on a bare GPU machine (the device tool's `run`), after stage.sh:
#     run(command="bash benchmarks/device/run.sh", carry=[".device"], timeout_s=600)
# 1. pre-flight: installs the staged wheels, unpacks the staged cache, prints the card and the versions, and
#    stops at once if s2gr cannot import (say, the image's pyarrow older than datasets needs);
# 2. speed.py on ML-1M, train and recommend, 2 rounds (about 3 minutes on an H200);
# 3. quality.py on ML-1M: S2GR and TIGER side by side, TIGER-size, BUDGET minutes of training each
#    (default 4) on an EPOCHS-epoch cosine schedule (default 12), lr 2e-3 (the better of two measured there),
#    mixed precision chosen by the package.
# What comes back in $OUT (at most 8 files): speed.json, speed.log, quality.md, results.json, curves.png,
# quality.log. Locally, `OUT=/tmp/out SPEED_ARGS="--tiny ..." QUALITY_ARGS="--quick ..."` checks the script.
set -euo pipefail
: "${OUT:?OUT is where the results go (the device tool sets it)}"
BUDGET="${BUDGET:-4}" EPOCHS="${EPOCHS:-12}"
SPEED_ARGS="${SPEED_ARGS:---steps 20 --users 256 --rounds 2}"
QUALITY_ARGS="${QUALITY_ARGS:---seeds 1 --epochs $EPOCHS --time-budget $BUDGET --threads 4 --workers 2}"
export PYTHONUNBUFFERED=1 S2GR_CACHE="${S2GR_CACHE:-/tmp/s2gr-cache}"
python=python3
if [[ -z "${SKIP_INSTALL:-}" ]]; then
  $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .device/wheels/*.whl
  export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
mkdir -p "$S2GR_CACHE" && tar -xzf .device/cache.tgz -C "$S2GR_CACHE"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi: running on CPU"
$python - <<'PY'
import importlib
for name in ("torch", "transformers", "datasets", "evaluate", "accelerate", "peft", "pyarrow", "s2gr"):
    module = importlib.import_module(name)
    print(f"{name} {getattr(module, '__version__', '?')}")
import torch
print("cuda:", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
PY
# shellcheck disable=SC2086  # the argument strings are word lists
$python benchmarks/speed.py --dataset ml-1m --parts train recommend $SPEED_ARGS --out "$OUT/speed.json" \
  > "$OUT/speed.log" 2>&1 || { tail -20 "$OUT/speed.log"; exit 1; }
grep -v "examples/s" "$OUT/speed.log" | grep -v "^round" | tail -22
# shellcheck disable=SC2086
$python benchmarks/quality.py --dataset ml-1m --methods s2gr tiger $QUALITY_ARGS --set batch_size=64 \
  --set segment_items=80 --set lr=0.002 --set eval_every_epochs=1 --set patience=0 --set eval_batch_size=512 \
  --out /tmp/quality > "$OUT/quality.log" 2>&1 || { tail -20 "$OUT/quality.log"; exit 1; }
cp /tmp/quality/quality.md /tmp/quality/results.json "$OUT/"
cp /tmp/quality/curves.png "$OUT/" 2>/dev/null || true
cat "$OUT/quality.md"
