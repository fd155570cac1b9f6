"""Which of OIDN's weight sets, and which exposure, for grey photon-limited images? On the VALIDATION split.

    python train/probe_oidn.py --out train/reports/oidn-filters-val

The pinned pyoidn wheel (``train/convert_oidn.py``) carries five colour-only weight sets. Each is run
as ``oidn-2d`` is (the engine's normalised image as OIDN's colour with input scale 1, OIDN's transfer
function of that filter, blind), and ``rt_hdr`` also with OIDN's automatic exposure (``key 0.18`` over
the geometric mean of the luminance of at most 16 x 16 pixel bins, per slice, as OIDN's HDR mode does
when no input scale is set). Levels, crops and seeds are ``train/evaluate.py``'s (4 central slices);
default-2d is the reference. Mean PSNR/SSIM per level, and per image.

    python train/probe_oidn.py --inputs --out train/reports/oidn-inputs-val

``--inputs``: the shipped ``oidn-2d`` (no wheel needed) with other input scales (the engine's normalised
image times the scale through OIDN's PU transfer function) and with the image in the generalised-Anscombe
domain (the engine's noise estimate, rescaled to [0, 1] as default-2d's input is) through the PU, sRGB or
no transfer function: whether OIDN's blind network gains from another exposure or a stabilised noise.
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


def input_entries(scales: List[float]) -> List[Entry]:
    """The shipped oidn-2d at each input scale, and in the VST domain through each transfer function."""
    import copy
    import dataclasses

    from LowLightDenoiseLib.methods import get_method

    base = get_method("oidn-2d")
    entries = []
    for label, vst, transfer, scale in ([(f"oidn-2d (scale {s:g})", False, "pu", s) for s in scales]
                                        + [(f"oidn-2d, VST input, {t} (scale {s:g})", True, t, s)
                                           for t in ("pu", "srgb", "none") for s in (0.3, 1.0)]):
        method = copy.deepcopy(base)
        method.spec = dataclasses.replace(method.spec, input=dict(method.spec.input, vst=vst))
        method.network.transfer, method.network.input_scale = transfer, float(scale)
        entries.append(Entry(label, method, CPU))
    return entries


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="OIDN's weight sets and exposure on the validation split.")
    parser.add_argument("--split", default="val")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--inputs", action="store_true",
                        help="the shipped oidn-2d at other input scales and in the VST domain (no wheel needed)")
    parser.add_argument("--scales", default="0.03,0.1,0.3,1,3,10", help="input scales for --inputs")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    entries = input_entries([float(v) for v in args.scales.split(",")]) if args.inputs else []
    library = None if args.inputs else convert_oidn.core_library(convert_oidn.fetch_wheel())
    for weights in () if args.inputs else ("rt_hdr", "rt_hdr_small", "rt_ldr", "rt_ldr_small", "rtlightmap_hdr"):
        spec, network = convert_oidn.build(library, weights, f"oidn:{weights}")
        entries.append(Entry(f"{weights} (scale 1)", LearnedMethod(spec, network), CPU))
        if weights == "rt_hdr":
            entries.append(Entry("rt_hdr (auto exposure)", AutoExposed(spec, network), CPU))
    entries.append(Entry("default-2d", "default-2d", CPU))
    scans = load_test_scans(args.split, slices=args.slices)
    rows = evaluate(scans, task_levels(DENOISE_LEVELS), entries, score=denoise_scores, log=print)
    means = mean_by(rows, ("level", "method"), ("psnr", "ssim"))
    command = "python train/probe_oidn.py " + " ".join(argv if argv is not None else sys.argv[1:])
    title = "oidn-2d's input scale and domain" if args.inputs else "OIDN's weight sets and exposure"
    lines = [f"# {title} ({args.split} split)", "", f"Command: `{command}`", "",
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
