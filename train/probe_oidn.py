"""Which of OIDN's weight sets, and which exposure, for grey photon-limited images? On the VALIDATION split.

    python train/probe_oidn.py --out train/reports/oidn-filters-val

The pinned pyoidn wheel (``train/convert_oidn.py``) carries five colour-only weight sets. Each is run
as ``oidn-2d`` is (the engine's normalised image as OIDN's colour with input scale 1, OIDN's transfer
function of that filter, blind), and ``rt_hdr`` also with OIDN's automatic exposure (``key 0.18`` over
the geometric mean of the luminance of at most 16 x 16 pixel bins, per slice, as OIDN's HDR mode does
when no input scale is set). Levels, crops and seeds are ``train/evaluate.py``'s (4 central slices);
default-2d is the reference. Mean PSNR/SSIM per level, and per image.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parent
if str(TRAIN_DIR.parent) not in sys.path:
    sys.path.insert(0, str(TRAIN_DIR.parent))

from LowLightDenoiseLib.evaluation import Entry, evaluate, mean_by  # noqa: E402
from LowLightDenoiseLib.methods.learned import LearnedMethod  # noqa: E402
from train import convert_oidn  # noqa: E402
from train.evaluate import CPU, DENOISE_LEVELS, denoise_scores, load_test_scans, task_levels  # noqa: E402


def autoexposure(image: np.ndarray, key: float = 0.18, bin_size: int = 16) -> float:
    """OIDN's automatic exposure of a grey image: ``key / 2**mean(log2 L)`` over bins with ``L > 1e-8``."""
    h, w = image.shape
    nh, nw = -(-h // bin_size), -(-w // bin_size)
    logs = []
    for i in range(nh):
        for j in range(nw):
            tile = image[i * h // nh:(i + 1) * h // nh, j * w // nw:(j + 1) * w // nw]
            mean = float(np.clip(np.nan_to_num(tile), 0.0, None).mean())
            if mean > 1e-8:
                logs.append(np.log2(mean))
    return key / 2.0 ** float(np.mean(logs)) if logs else 1.0


class AutoExposed(LearnedMethod):
    """An ``oidn_unet`` method whose input scale is OIDN's automatic exposure of each slice."""

    def _denoise(self, block, noise, context):
        out = np.empty(block.shape, dtype=np.float32)
        for k in range(block.shape[0]):
            scale = autoexposure(block[k])
            out[k] = super()._denoise(block[k:k + 1] * scale, noise, context)[0] / scale
        return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="OIDN's weight sets and exposure on the validation split.")
    parser.add_argument("--split", default="val")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    library = convert_oidn.core_library(convert_oidn.fetch_wheel())
    entries = []
    for weights in ("rt_hdr", "rt_hdr_small", "rt_ldr", "rt_ldr_small", "rtlightmap_hdr"):
        spec, network = convert_oidn.build(library, weights, f"oidn:{weights}")
        entries.append(Entry(f"{weights} (scale 1)", LearnedMethod(spec, network), CPU))
        if weights == "rt_hdr":
            entries.append(Entry("rt_hdr (auto exposure)", AutoExposed(spec, network), CPU))
    entries.append(Entry("default-2d", "default-2d", CPU))
    scans = load_test_scans(args.split, slices=args.slices)
    rows = evaluate(scans, task_levels(DENOISE_LEVELS), entries, score=denoise_scores, log=print)
    means = mean_by(rows, ("level", "method"), ("psnr", "ssim"))
    command = "python train/probe_oidn.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# OIDN's weight sets and exposure ({args.split} split)", "", f"Command: `{command}`", "",
             f"Images: {', '.join(f'{s.name} ({s.modality})' for s in scans)}; {args.slices} central slices x 256 px, "
             "levels and seeds of train/evaluate.py; every entry runs through the engine, blind.", "",
             "| level | method | PSNR | SSIM |", "|---|---|---|---|"]
    lines += [f"| {m['level']} | {m['method']} | {m['psnr']:.2f} | {m['ssim']:.4f} |" for m in means]
    lines += ["", "## Per image", "", "| image | level | method | PSNR |", "|---|---|---|---|"]
    lines += [f"| {r['scan']} | {r['level']} | {r['method']} | {r['psnr']:.2f} |" for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "means": means, "rows": rows}, indent=1))
    print("\n".join(lines[:len(means) + 8]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
