"""Two questions about default-2d, answered on a split's central crops (4 slices, as train/evaluate.py):

    python train/probe_default_2d.py --split test --oracle   # blind vs the TRUE noise parameters
    python train/probe_default_2d.py --split val --tta       # averaging over 1, 2, 4, 8 flips/rotations

``--oracle``: is the noise estimate what limits the model? The same network is run once with the
engine's estimate (what users get) and once with the true Poisson-Gaussian (a, b) of the simulation
(``train.evaluate.true_profile``). ``--tta``: what does test-time averaging over the dihedral
transforms of the input buy (the engine's ``RunOptions.flips``, the CLI's ``--flips``)? Mean PSNR (dB)
per level of ``train.evaluate.DENOISE_LEVELS``.
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
from LowLightDenoiseLib.methods.base import MethodContext  # noqa: E402
from LowLightDenoiseLib.metrics import psnr  # noqa: E402
from LowLightDenoiseLib.noise import NoiseProfile, estimate_noise  # noqa: E402
from LowLightDenoiseLib.normalize import Normalizer  # noqa: E402
from LowLightDenoiseLib.options import FLIP_COUNTS  # noqa: E402
from LowLightDenoiseLib.pipeline import denoise_volume  # noqa: E402
from train.evaluate import DENOISE_LEVELS, load_test_images, true_profile  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="default-2d with the true noise parameters, or with flip averaging.")
    parser.add_argument("--split", default="val")
    parser.add_argument("--model", default="default-2d")
    parser.add_argument("--oracle", action="store_true")
    parser.add_argument("--tta", action="store_true")
    args = parser.parse_args(argv)
    if args.oracle == args.tta:
        parser.error("choose one of --oracle or --tta.")
    import torch

    torch.set_num_threads(1)
    method = get_method(args.model, device="cpu")
    images = load_test_images(args.split, slices=4)
    for li, level in enumerate(DENOISE_LEVELS):
        scores: dict = {}
        for image in images:
            noisy = simulate_volume(image.clean, LowLight(**level), seed=97 * li)  # the seeds of train/evaluate.py
            ref = image.clean.array
            data_range = float(ref.max() - ref.min())
            if args.tta:  # the engine's own averaging (RunOptions.flips), the same network each time
                for count in FLIP_COUNTS:
                    out = denoise_volume(noisy, method, device="cpu", flips=count).volume.array
                    scores.setdefault(f"x{count}", []).append(psnr(out, ref, data_range))
                continue
            norm = Normalizer.fit(noisy.array)
            x = norm.forward(noisy.array).astype(np.float32)
            a, b = true_profile(ref, noisy.array, level)
            for key, profile in (("estimated", estimate_noise(x, constrained=True)), ("true", NoiseProfile(float(np.sqrt(b)), a, b))):
                out = norm.inverse(method.apply(x, MethodContext(spatial_dims=2, noise=profile)))
                scores.setdefault(key, []).append(psnr(out, ref, data_range))
        print(f"peak {level['peak']:g}: " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in scores.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
