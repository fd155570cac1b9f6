"""Cases for measuring adaptation to one scan: clean central crops of real scans, degraded with a fixed seed.

A case is a scan of ``train/data`` (its split recorded), a crop and a degradation: low light at the
training levels (in distribution) or outside them (out of distribution: fewer photons, stronger read
noise, stronger speckle than the model was trained on). Used by ``train/adapt_loss_choice.py`` (the
loss, chosen on the validation split) and ``train/adapt_report.py`` (the report, on the test split and
out-of-distribution cases).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from LowLightDenoiseLib.degrade import Degradation, LowLight, Speckle, simulate_volume
from LowLightDenoiseLib.normalize import Normalizer
from LowLightDenoiseLib.volume import Volume

DATA_DIR = Path(__file__).resolve().parent / "data"
SPLITS = Path(__file__).resolve().parent / "splits.json"


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    scan: str  # id in train/data
    degradation: Degradation
    kind: str  # "in distribution" or "out of distribution"
    why: str  # what is unlike training (out of distribution) or which training level it is
    slices: int = 32
    side: int = 256
    seed: int = 0

    def split(self) -> str:
        splits = json.loads(SPLITS.read_text())
        return next((s for s in ("train", "val", "test") if self.scan in splits[s]), "none")


def clean_crop(scan: str, slices: int, side: int, data_dir: Path = DATA_DIR) -> Volume:
    """The central ``slices x side x side`` crop of a scan (first colour channel), in physical units."""
    meta = json.loads((data_dir / f"{scan}.json").read_text())
    a = np.load(data_dir / f"{scan}.npy", mmap_mode="r")
    if meta.get("channels", 1) > 1:
        a = a[:1]
    z0 = max(0, (a.shape[0] - slices) // 2)
    y0, x0 = max(0, (a.shape[1] - side) // 2), max(0, (a.shape[2] - side) // 2)
    crop = np.array(a[z0:z0 + slices, y0:y0 + side, x0:x0 + side], dtype=np.float32)
    return Volume(crop, spacing=tuple(meta["spacing_xyz"]), metadata={"path": f"{scan}.npy"})


def load_case(case: Case, data_dir: Path = DATA_DIR) -> Tuple[Volume, Volume]:
    """(clean crop, degraded crop) of a case."""
    clean = clean_crop(case.scan, case.slices, case.side, data_dir)
    noisy = simulate_volume(clean, case.degradation, seed=case.seed)
    noisy.metadata["path"] = f"{case.name}.npy"
    return clean, noisy


def true_vst_parameters(clean: Volume, noisy: Volume, degradation: Degradation) -> Optional[Tuple[float, float]]:
    """True Poisson-Gaussian ``(a, b)`` of a low-light case in the engine's normalised units (BM3D's oracle)."""
    if not isinstance(degradation, LowLight):
        return None
    rng_norm = Normalizer.fit(clean.array, "range")
    eng = Normalizer.fit(noisy.array)
    k = rng_norm.scale / eng.scale
    c = (rng_norm.low - eng.low) / eng.scale
    a = 1.0 / degradation.peak
    b = (degradation.read_noise / degradation.peak) ** 2
    return k * a, max(k * k * b - k * a * c, 0.0)


def scores(output: Volume, clean: Volume) -> Dict[str, float]:
    """PSNR and 2D SSIM in physical units over the clean crop's range (as train/evaluate.py)."""
    from LowLightDenoiseLib.metrics import psnr, ssim

    ref = clean.array
    rng = float(ref.max() - ref.min())
    return {"psnr": psnr(output.array, ref, rng), "ssim": ssim(output.array, ref, rng, spatial_dims=2)}


def describe(case: Case) -> Dict[str, Any]:
    return {"case": case.name, "scan": case.scan, "split": case.split(), "kind": case.kind,
            "degradation": case.degradation.describe(), "why": case.why,
            "crop": f"{case.slices} x {case.side} x {case.side}"}


#: validation cases: the loss is chosen on these (never on the test split)
VALIDATION_CASES = (
    Case("val-ct-peak30", "ct_lung1_volume", LowLight(peak=30, read_noise=1), "in distribution",
         "peak 30, read noise 1 (a test level)", slices=16),
    Case("val-ct-peak2", "ct_lung1_volume", LowLight(peak=2, read_noise=0), "out of distribution",
         "2 photons at full scale (training: 10-1000)", slices=16),
    Case("val-ct-read15", "ct_lung1_volume", LowLight(peak=100, read_noise=15), "out of distribution",
         "read noise 15 photons (training: 0-3)", slices=16),
    Case("val-ct-speckle", "ct_lung1_volume", Speckle(sigma=0.8), "out of distribution",
         "speckle 0.8 (training: 0.05-0.5, about 1 sample in 20)", slices=16),
)

#: more validation cases for the guard's rule (``train/adapt_guard_choice.py``): other validation scans, levels
#: and seeds, none of them a test case
GUARD_CASES = VALIDATION_CASES + (
    Case("val-ct-peak100", "ct_lung1_volume", LowLight(peak=100, read_noise=1), "in distribution",
         "peak 100, read noise 1 (a test level)", slices=16, seed=11),
    Case("val-mr-peak30", "mr_head_small_volume", LowLight(peak=30, read_noise=1), "in distribution",
         "peak 30, read noise 1 (a test level)", slices=10, side=64, seed=12),
    Case("val-photo-peak3", "photo_chelsea", LowLight(peak=3, read_noise=0.5), "out of distribution",
         "a photograph at 3 photons (training: 10-1000)", slices=1, seed=13),
    Case("val-ctneck-read15", "ct_neck", LowLight(peak=100, read_noise=15), "out of distribution",
         "read noise 15 photons at peak 100 (training: 0-3)", slices=1, seed=14),
)

#: cases no guard rule has been chosen or judged on yet (test-split volumes, new degradations and seeds): where a
#: candidate guard is compared with the shipped one after the test split steered the rule (docs/adaptation.md)
FRESH_CASES = (
    Case("fresh-ct-peak50", "ct_chest_volume", LowLight(peak=50, read_noise=1), "in distribution",
         "peak 50, read noise 1 (within training)", slices=32, seed=35),
    Case("fresh-mr-peak200", "mr_brain_pd_volume", LowLight(peak=200, read_noise=1), "in distribution",
         "peak 200, read noise 1 (within training)", slices=32, seed=36),
    Case("fresh-mr-peak2", "mr_brain_pd_volume", LowLight(peak=2, read_noise=0), "out of distribution",
         "2 photons at full scale (training: 10-1000)", slices=32, seed=31),
    Case("fresh-ct-read10", "ct_chest_volume", LowLight(peak=50, read_noise=10), "out of distribution",
         "read noise 10 photons at peak 50 (training: 0-3)", slices=32, seed=32),
    Case("fresh-mr-speckle", "mr_brain_pd_volume", Speckle(sigma=0.6), "out of distribution",
         "multiplicative speckle 0.6 (training: 0.05-0.5)", slices=32, seed=33),
    Case("fresh-ct-peak5-read3", "ct_chest_volume", LowLight(peak=5, read_noise=3), "out of distribution",
         "5 photons with read noise 3 (training: 10-1000, 0-3)", slices=32, seed=34),
)

#: the test split at the levels of train/evaluate.py (peak 300 / 100 / 30, read noise 1): in distribution
TEST_CASES = tuple(
    Case(f"test-{m}-peak{p}", scan, LowLight(peak=p, read_noise=1), "in distribution",
         f"peak {p}, read noise 1 (a training level)", slices=32, seed=97 * i)
    for m, scan in (("ct", "ct_chest_volume"), ("mr", "mr_brain_pd_volume"))
    for i, p in enumerate((300, 100, 30)))

#: unlike anything in training: fewer photons, stronger read noise, stronger speckle (test scans), and two
#: 2D images never used in training nor in choosing the loss (ultrasound speckle, microscopy photon counting)
OOD_CASES = (
    Case("ood-ct-peak2", "ct_chest_volume", LowLight(peak=2, read_noise=0), "out of distribution",
         "2 photons at full scale (training: 10-1000)", slices=32, seed=1),
    Case("ood-mr-read15", "mr_brain_pd_volume", LowLight(peak=100, read_noise=15), "out of distribution",
         "read noise 15 photons at peak 100 (training: 0-3)", slices=32, seed=2),
    Case("ood-ct-speckle", "ct_chest_volume", Speckle(sigma=0.8), "out of distribution",
         "multiplicative speckle 0.8 (training: 0.05-0.5, about 1 sample in 20)", slices=32, seed=3),
    Case("ood-us-speckle", "us_rgb", Speckle(sigma=0.8), "out of distribution",
         "an ultrasound frame with speckle 0.8 (training: 0.05-0.5)", slices=1, seed=4),
    Case("ood-histology-peak3", "microscopy_histology", LowLight(peak=3, read_noise=0.5), "out of distribution",
         "a histology image at 3 photons (training: 10-1000)", slices=1, seed=5),
)
