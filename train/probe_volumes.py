"""Probe how models use neighbouring slices: 2D and 3D models on thick-slice versions of volumes.

    python train/probe_volumes.py --models default-2d,volume-2.5d --runs train/runs/volume-3d-slab \\
        --volumes mr_inia19_volume:5,mr_colin27_volume:10,mr_head_small_volume:1

Each ``scan:step`` takes the central slices of ``train/data/<scan>.npy``, averages every ``step``
consecutive slices into one (a ``step`` times thicker slice, before any noise, as
``data.slice_step`` does in training), crops 16 slices x 160 px, simulates photon-limited noise
(peak 100 and 30, read noise 1) and prints each model's PSNR. The training volumes are a fit check
(the models saw them), not a test: use ``train/evaluate.py`` on the test split for that. A model
that uses its neighbours well beats its 2D start on thick slices and does not lose where the slices
are unrelated.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parent
if str(TRAIN_DIR.parent) not in sys.path:
    sys.path.insert(0, str(TRAIN_DIR.parent))

from LowLightDenoiseLib.degrade import LowLight, simulate_volume  # noqa: E402
from LowLightDenoiseLib.methods import get_method  # noqa: E402
from LowLightDenoiseLib.metrics import psnr  # noqa: E402
from LowLightDenoiseLib.pipeline import denoise_volume  # noqa: E402
from LowLightDenoiseLib.volume import Volume  # noqa: E402
from train.dataset import DATA_DIR, thick_slices  # noqa: E402
from train.evaluate import method_from_run  # noqa: E402


def thick_crop(scan_id: str, step: int, slices: int = 16, side: int = 160, data_dir: Path = DATA_DIR) -> Volume:
    """Central ``slices`` thick slices (each the mean of ``step`` thin ones) x ``side`` px of a volume."""
    a = np.load(data_dir / f"{scan_id}.npy", mmap_mode="r")
    n = min(slices, a.shape[0] // step)
    if n < 1:
        raise ValueError(f"{scan_id} has {a.shape[0]} slices: too few for steps of {step}.")
    z0 = (a.shape[0] - n * step) // 2
    thick = thick_slices(np.asarray(a[z0:z0 + n * step], dtype=np.float32), step)
    y0, x0 = max(0, (thick.shape[1] - side) // 2), max(0, (thick.shape[2] - side) // 2)
    return Volume(np.ascontiguousarray(thick[:, y0:y0 + side, x0:x0 + side]))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="2D and 3D models on thick-slice versions of volumes.")
    parser.add_argument("--models", default="default-2d", help="registered models, comma-separated")
    parser.add_argument("--runs", default="", help="training run folders, comma-separated")
    parser.add_argument("--volumes", default="mr_inia19_volume:5,mr_colin27_volume:10,mr_head_small_volume:1",
                        help="scan:step pairs, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    methods = [(n, get_method(n, device="cpu")) for n in filter(None, args.models.split(","))]
    methods += [(Path(r).name, method_from_run(Path(r))) for r in filter(None, args.runs.split(","))]
    print("| volume | slice step | peak | noisy | " + " | ".join(n for n, _ in methods) + " |")
    print("|---|---|---|---|" + "---|" * len(methods))
    for item in filter(None, args.volumes.split(",")):
        scan_id, step = item.split(":")
        clean = thick_crop(scan_id, int(step))
        ref = clean.array
        data_range = float(ref.max() - ref.min())
        for peak in (100.0, 30.0):
            noisy = simulate_volume(clean, LowLight(peak=peak, read_noise=1.0), seed=1)
            scores = [psnr(denoise_volume(noisy, m, device="cpu").volume.array, ref, data_range) for _, m in methods]
            print(f"| {scan_id} | {step} | {peak:g} | {psnr(noisy.array, ref, data_range):.2f} | "
                  + " | ".join(f"{s:.2f}" for s in scores) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
