#!/usr/bin/env bash
# The README's table: simulate low light on the real CT crop, denoise it with every automatic
# classical denoiser (and default-2d when installed), then evaluate every output against the clean crop.
# Usage: bash examples/ct_crop_classical_table.sh [OUT_DIR]   (default: out/ct-table)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-out/ct-table}
REF=Testing/Data/ct_chest_crop.nrrd
mkdir -p "$OUT"
$PY -m LowLightDenoiseLib simulate "$REF" "$OUT/noisy.nrrd" --noise lowlight --peak 100 --read-noise 1 --seed 1 --dtype float32 --overwrite -q
outputs=()
methods="gaussian median bilateral anisotropic-diffusion tv wavelet nlm"
if $PY -m LowLightDenoiseLib models list 2>/dev/null | grep -q "^default-2d.*installed"; then methods="$methods default-2d"; fi
for m in $methods; do
  $PY -m LowLightDenoiseLib denoise "$OUT/noisy.nrrd" "$OUT/$m.nrrd" --method "$m" --mode 2d --dtype float32 --overwrite -q
  outputs+=("$OUT/$m.nrrd")
done
$PY -m LowLightDenoiseLib evaluate "$REF" "$OUT/noisy.nrrd" "${outputs[@]}" --input "$OUT/noisy.nrrd" --csv "$OUT/table.csv" --overwrite -q
