#!/usr/bin/env bash
# The GPU checks of issue 6 on a bare GPU machine (the device tool's `run`), after stage.sh. Each part fits one
# 10-minute call; the session's 15 device minutes hold both (a machine takes 1-2 minutes to start):
#     run(command="bash benchmarks/device/run.sh speed", carry=[".device"], timeout_s=360)
#     run(command="bash benchmarks/device/run.sh quality", carry=[".device"], timeout_s=600)
# Every call first installs the staged wheels, unpacks the staged cache, prints the card and the versions,
# and stops at once if s2gr cannot import (say, the image's pyarrow is older than datasets needs). Then
# - speed: speed.py on ML-1M, train and recommend, 20 steps per case, 2 rounds (a few minutes);
# - quality: quality.py on ML-1M, S2GR and TIGER side by side, TIGER-size, batch 64 segments, lr 2e-3 (the
#   better of two measured there), BUDGET minutes of training each (default 6) on an EPOCHS-epoch cosine
#   schedule (default 15), mixed precision as the package picks it.
# What comes back in $OUT: speed.json and speed.log; quality.md, results.json, curves.png and quality.log.
# Locally: `OUT=/tmp/out SKIP_INSTALL=1 SPEED_ARGS="--tiny --max-users 60 --steps 1 --users 8"
# QUALITY_ARGS="--quick --max-users 200 --seeds 1" bash benchmarks/device/run.sh speed quality` checks it.
set -euo pipefail
: "${OUT:?OUT is where the results go (the device tool sets it)}"
BUDGET="${BUDGET:-6}" EPOCHS="${EPOCHS:-15}"
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || { echo "usage: run.sh speed|quality [...]" >&2; exit 2; }
run_speed() {
  # shellcheck disable=SC2086  # the argument strings are word lists
  $python benchmarks/speed.py --dataset ml-1m --parts train recommend $SPEED_ARGS --out "$OUT/speed.json" \
    > "$OUT/speed.log" 2>&1 || { tail -20 "$OUT/speed.log"; exit 1; }
  grep -v "examples/s" "$OUT/speed.log" | grep -v "^round" | tail -22
}
run_quality() {
  # shellcheck disable=SC2086
  $python benchmarks/quality.py --dataset ml-1m --methods s2gr tiger $QUALITY_ARGS --set batch_size=64 \
    --set segment_items=80 --set lr=0.002 --set eval_every_epochs=1 --set patience=0 --set eval_batch_size=512 \
    --out /tmp/quality > "$OUT/quality.log" 2>&1 || { tail -20 "$OUT/quality.log"; exit 1; }
  cp /tmp/quality/quality.md /tmp/quality/results.json "$OUT/"
  cp /tmp/quality/curves.png "$OUT/" 2>/dev/null || true
  cat "$OUT/quality.md"
}
for part in "${parts[@]}"; do  # every part is a run_<part> function above
  declare -F "run_$part" > /dev/null || { echo "run.sh: unknown part $part (speed, quality)" >&2; exit 2; }
done
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
for part in "${parts[@]}"; do "run_$part"; done
