"""Measure ``lowlightdenoise estimate-noise`` on real scans at each photon level: Poisson-Gaussian fit and noise type.

Every image (the test and validation scans of ``train/splits.json`` that are CT, MR or radiographs, central
crops of ``train/data``, and the shipped crops ``Testing/Data``) is degraded by the project's own simulator
(:func:`LowLightDenoiseLib.degrade.simulate_volume` with ``LowLight(peak, read_noise=1)``: the image's exact
range mapped to [0, 1], ``peak`` photons at full scale) and analysed by
:func:`LowLightDenoiseLib.noise.noise_report`, the function behind ``estimate-noise``. The truth:

* physical units: ``a = range / peak`` and ``b = (range * read / peak)**2 - a * min`` (``var = a X + b``);
* the engine's normalised units ``x = (X - low) / scale`` (its robust percentile window, fitted on the noisy
  image): ``a_n = a / scale`` and ``b_n = (b + a * low) / scale**2``, negative when the window's low end lies
  below the photon-zero level (read noise spreads the zero-photon voxels below the image's minimum).

The clean images are analysed too (their own scanner noise only: no simulated noise). Each scan's own noise
adds to the simulated noise, so at high peaks (little simulated noise) the gain may read high.

Usage::

    python train/noise_estimation_report.py [--seeds 2] [--out train/reports/noise_estimation]

Writes ``<out>.md`` and ``<out>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parent
REPO = TRAIN_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from LowLightDenoiseLib.degrade import LowLight, simulate_volume  # noqa: E402
from LowLightDenoiseLib.io import read_volume  # noqa: E402
from LowLightDenoiseLib.noise import NOISE_LABELS, noise_report  # noqa: E402
from LowLightDenoiseLib.volume import Volume  # noqa: E402

DATA_DIR = TRAIN_DIR / "data"
SPLITS = TRAIN_DIR / "splits.json"
CROPS_DIR = REPO / "Testing" / "Data"
CROPS = ("ct_chest_crop.nrrd", "mr_brain_crop.nrrd", "xray_chest_crop.png")
MODALITIES = ("ct", "mr", "xray")
PEAKS = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
READ_NOISE = 1.0
SLICES = 16
OUT = TRAIN_DIR / "reports" / "noise_estimation"


def load_images(slices: int = SLICES) -> List[Tuple[str, str, str, Volume]]:
    """(id, modality, split, clean volume): central ``slices`` of the test and validation scans, then the crops."""
    splits = json.loads(SPLITS.read_text())
    out = []
    for split in ("test", "val"):
        for sid in splits[split]:
            meta_path = DATA_DIR / f"{sid}.json"
            if not meta_path.is_file():
                continue
            meta = json.loads(meta_path.read_text())
            if meta["modality"] not in MODALITIES or meta.get("channels", 1) != 1:
                continue
            a = np.load(DATA_DIR / f"{sid}.npy", mmap_mode="r")
            z0 = max(0, (a.shape[0] - slices) // 2)
            crop = np.array(a[z0:z0 + slices], dtype=np.float32)
            vol = Volume(crop if crop.shape[0] > 1 else crop[0], spacing=tuple(meta["spacing_xyz"]))
            out.append((sid, meta["modality"], split, vol))
    for name in CROPS:
        path = CROPS_DIR / name
        if path.is_file():
            vol = read_volume(path)
            out.append((path.stem, name.split("_")[0], "crop", vol))
    return out


def truth(clean: np.ndarray, peak: float, row: Dict) -> Dict[str, float]:
    """True (a, b) in physical and in the report's normalised units (see the module docstring)."""
    lo, hi = float(np.min(clean)), float(np.max(clean))
    a = (hi - lo) / peak
    b = ((hi - lo) * READ_NOISE / peak) ** 2 - a * lo
    low = float(row["normalization_low"])
    scale = float(row["normalization_high"]) - low
    return {"a": a, "b": b, "a_normalized": a / scale, "b_normalized": (b + a * low) / scale ** 2}


def measure(images: List[Tuple[str, str, str, Volume]], seeds: int) -> List[Dict]:
    rows = []
    for sid, modality, split, vol in images:
        t0 = time.perf_counter()
        r = noise_report(vol)[0]
        rows.append(dict(image=sid, modality=modality, split=split, peak=None, seed=None, **_fields(r)))
        for peak in PEAKS:
            for seed in range(seeds):
                noisy = simulate_volume(vol, LowLight(peak=peak, read_noise=READ_NOISE), seed=seed)
                r = noise_report(noisy)[0]
                t = truth(vol.array, peak, r)
                rows.append(dict(image=sid, modality=modality, split=split, peak=peak, seed=seed, **_fields(r),
                                 **{f"true_{k}": v for k, v in t.items()}))
        print(f"{sid}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def _fields(r: Dict) -> Dict:
    keys = ("a", "b", "sigma", "a_normalized", "b_normalized", "sigma_normalized", "normalization_low",
            "normalization_high", "noise_type")
    out = {k: r[k] for k in keys}
    out["probabilities"] = dict(r["probabilities"])
    return out


def summarise(rows: List[Dict]) -> List[Dict]:
    """One row per image and peak: mean over seeds of the estimates, relative gain error, labels."""
    groups: Dict[Tuple[str, Optional[float]], List[Dict]] = {}
    for r in rows:
        groups.setdefault((r["image"], r["peak"]), []).append(r)
    out = []
    for (sid, peak), rs in groups.items():
        s = {"image": sid, "modality": rs[0]["modality"], "split": rs[0]["split"], "peak": peak, "n": len(rs),
             "labels": [r["noise_type"] for r in rs],
             "p": {k: float(np.mean([r["probabilities"].get(k, 0.0) for r in rs]))
                   for k in rs[0]["probabilities"]}}
        for k in ("a", "b", "a_normalized", "b_normalized", "sigma", "sigma_normalized"):
            s[k] = float(np.mean([r[k] for r in rs]))
            if peak is not None and "true_" + k in rs[0]:
                s["true_" + k] = float(np.mean([r["true_" + k] for r in rs]))
        if peak is not None:
            s["a_rel_error"] = s["a"] / s["true_a"] - 1.0
        out.append(s)
    return out


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def markdown(summary: List[Dict], command: str, seconds: float, seeds: int) -> str:
    labels = list(summary[0]["p"]) if summary else list(NOISE_LABELS)
    lines = [
        "# estimate-noise on real scans: Poisson-Gaussian gain and noise type at each photon level\n",
        f"Generated by `{command}` ({seconds:.0f} s). Simulation: `LowLight(peak, read_noise={READ_NOISE:g})` on "
        f"the image's exact range ({seeds} seed(s) per level, estimates averaged); analysis: "
        "`LowLightDenoiseLib.noise.noise_report` (what `lowlightdenoise estimate-noise` prints). Volumes: the "
        f"central {SLICES} slices. Truth and units: see the script's docstring. `a err` is the relative error "
        "of the physical gain a (the same in normalised units); b is in the engine's normalised units "
        "(x 1e4). Each scan's own noise adds to the simulated noise (it dominates at the highest peaks).\n",
        "## Gain a and offset b\n",
        "| image | peak | true a | est. a | a err | true b_n x1e4 | est. b_n x1e4 | labels | "
        + " | ".join(f"p({k})" for k in labels) + " |",
        "|---" * (8 + len(labels)) + "|",
    ]
    for s in summary:
        if s["peak"] is None:
            continue
        lines.append(
            f"| {s['image']} | {s['peak']:g} | {_fmt(s['true_a'])} | {_fmt(s['a'])} | {s['a_rel_error']:+.1%} | "
            f"{s['true_b_normalized'] * 1e4:.3g} | {s['b_normalized'] * 1e4:.3g} | {', '.join(s['labels'])} | "
            + " | ".join(f"{s['p'].get(k, 0.0):.2f}" for k in labels) + " |")
    lines += ["\n## Clean images (scanner noise only)\n",
              "| image | est. a | est. b | sigma | sigma normalised | label | "
              + " | ".join(f"p({k})" for k in labels) + " |",
              "|---" * (6 + len(labels)) + "|"]
    for s in summary:
        if s["peak"] is not None:
            continue
        lines.append(f"| {s['image']} | {_fmt(s['a'])} | {_fmt(s['b'])} | {_fmt(s['sigma'])} | "
                     f"{s['sigma_normalized']:.4f} | {s['labels'][0]} | "
                     + " | ".join(f"{s['p'].get(k, 0.0):.2f}" for k in labels) + " |")
    noisy = [s for s in summary if s["peak"] is not None]
    lines += ["\n## Summary by peak\n", "| peak | mean abs. a err | worst a err | labelled poisson |",
              "|---|---|---|---|"]
    for peak in PEAKS:
        ss = [s for s in noisy if s["peak"] == peak]
        if not ss:
            continue
        errs = [s["a_rel_error"] for s in ss]
        labels_all = [lab for s in ss for lab in s["labels"]]
        lines.append(f"| {peak:g} | {np.mean(np.abs(errs)):.1%} | {max(errs, key=abs):+.1%} | "
                     f"{sum(lab == 'poisson' for lab in labels_all)} / {len(labels_all)} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2, help="simulations per image and level")
    parser.add_argument("--slices", type=int, default=SLICES, help="central slices of each volume")
    parser.add_argument("--out", type=Path, default=OUT, help="report prefix: writes <out>.md and <out>.json")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows = measure(load_images(args.slices), args.seeds)
    summary = summarise(rows)
    seconds = time.perf_counter() - t0
    command = "python train/noise_estimation_report.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"command": command.strip(), "seconds": seconds, "peaks": PEAKS, "read_noise": READ_NOISE,
         "summary": summary, "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(summary, command.strip(), seconds, args.seeds))
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
