#!/usr/bin/env bash
# The README's table: simulate low light on the real CT crop, denoise it with every automatic
# classical denoiser (and the learned denoisers when installed), then evaluate every output against the clean crop.
# Usage: bash examples/ct_crop_classical_table.sh [OUT_DIR]   (default: out/ct-table)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-out/ct-table}
REF=Testing/Data/ct_chest_crop.nrrd
mkdir -p "$OUT"
$PY -m LowLightDenoiseLib simulate "$REF" "$OUT/noisy.nrrd" --noise lowlight --peak 100 --read-noise 1 --seed 1 --dtype float32 --overwrite -q
outputs=()
models=""
listing=$($PY -m LowLightDenoiseLib models list)
for model in default-2d volume-3d; do  # the learned denoisers, when their weights are installed
  if grep -Eq "^$model .* yes " <<<"$listing"; then models="$models $model"; fi
done
for m in gaussian median bilateral anisotropic-diffusion tv wavelet nlm $models; do
  mode=2d; case " $models " in *" $m "*) mode=auto ;; esac  # classical: slice-wise; models: their own mode
  $PY -m LowLightDenoiseLib denoise "$OUT/noisy.nrrd" "$OUT/$m.nrrd" --method "$m" --mode "$mode" --dtype float32 --overwrite -q
  outputs+=("$OUT/$m.nrrd")
done
$PY -m LowLightDenoiseLib evaluate "$REF" "$OUT/noisy.nrrd" "${outputs[@]}" --input "$OUT/noisy.nrrd" --csv "$OUT/table.csv" --overwrite -q
