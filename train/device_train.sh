#!/usr/bin/env bash
# One training run on a lent GPU machine (the `device` tool's `run`), prepared here; see docs/training.md,
# "On a lent GPU". That machine fetches nothing: the training scans travel packed (.devicedata, by
# train/device_data.py) and the Python packages its image lacks travel as wheels (.whl). Run there as
#   bash train/device_train.sh CONFIG MINUTES        (carry: .devicedata and .whl)
# It unpacks the scans, trains CONFIG on the GPU for MINUTES and leaves the run folder in $OUT/run
# (config, log, summary, curve, best and last checkpoints) for train/evaluate.py here.
set -euo pipefail
config="${1:?give a training config}"
minutes="${2:?give the training minutes}"
out="${OUT:-/tmp/device-out}"
python="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" > /dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
data="${DEVICE_DATA_DIR:-/tmp/lld-data}"
"$python" train/device_data.py unpack --data-dir "$data"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
mkdir -p "$out"
PYTHONUNBUFFERED=1 "$python" train/train.py "$config" --device "${DEVICE:-cuda}" --max-minutes "$minutes" \
    --data-dir "$data" --run-dir "$out/run" 2>&1 | tee "$out/train.log"
rm -rf "$out/run/tensorboard"  # log.csv holds the same; a call returns at most 8 files
ls -la "$out" "$out/run"
