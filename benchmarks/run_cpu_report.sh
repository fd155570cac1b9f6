#!/usr/bin/env sh
# Regenerates reports/cpu/: the benchmark as committed for this project's CPU report.
# Quality: every classical method and every installed model (plus BM3D when the bm3d package is
# importable) on the test split of train/splits.json (prepare it with `python train/prepare_data.py`),
# at peak 300/100/30 photons with read noise 1, plus extra Gaussian and Rician noise and a darkened
# level (for the enhancers); per-resolution variants at 128 and 512 pixels. Speed and memory: a subset of methods on the 512 x 512 x 300 CT volume.
# Usage: sh benchmarks/run_cpu_report.sh [extra benchmark arguments]
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SPEED_METHODS=${SPEED_METHODS:-gaussian,median,tv,wavelet,nlm,bilateral}
for model in default-2d volume-3d enhance-2d; do
  if "$PY" -c "import sys; from LowLightDenoiseLib import registry; sys.exit(0 if registry.is_registered('$model') and registry.installed('$model') else 1)"; then
    SPEED_METHODS="$SPEED_METHODS,$model"
  fi
done
exec "$PY" -m LowLightDenoiseLib benchmark --methods all --levels 300,100,30 --read-noise 1 \
  --noise gaussian,rician,dark --resolutions 128,512 --device cpu --speed-devices cpu \
  --speed-methods "$SPEED_METHODS" --out reports/cpu "$@"
