"""Effect of the classical denoisers' options on the low-light CT crop: variance stabilisation
(``vst``) and self-supervised J-invariant calibration (``calibrate``), against the default rule.

Usage: python examples/classical_options_study.py   (about a minute on 2 cores)
Prints a Markdown table of PSNR (dB) at 100 photons at full scale, read noise 1, seed 1, 2D mode.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from LowLightDenoiseLib import degrade, io, metrics  # noqa: E402
from LowLightDenoiseLib.methods import get_method  # noqa: E402
from LowLightDenoiseLib.pipeline import denoise_volume  # noqa: E402

DENOISERS = ("nlm", "tv", "bilateral", "anisotropic-diffusion", "wavelet", "gaussian", "median")
VARIANTS = (("automatic rule (vst=auto)", {}), ("no VST (vst=False)", {"vst": False}),
            ("J-invariant calibration", {"calibrate": True}))


def main() -> int:
    clean = io.read_volume(REPO / "Testing" / "Data" / "ct_chest_crop.nrrd")
    noisy = degrade.simulate_volume(clean, degrade.LowLight(peak=100, read_noise=1), seed=1)
    print(f"noisy input: {metrics.psnr(noisy.array, clean.array):.2f} dB\n")
    print("| method | " + " | ".join(name for name, _ in VARIANTS) + " |")
    print("|---" * (len(VARIANTS) + 1) + "|")
    for method in DENOISERS:
        cells = []
        for _, options in VARIANTS:
            result = denoise_volume(noisy, get_method(method, **options), mode="2d", device="cpu")
            cells.append(f"{metrics.psnr(result.volume.array, clean.array):.2f}")
        print(f"| {method} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
