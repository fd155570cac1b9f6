"""Choose the self-supervised loss and the guard of adaptation by measurement, on the VALIDATION split.

For each validation case (``train/adapt_cases.py``) and each loss (Noise2Self blind-spot masking,
Neighbor2Neighbor, Recorrupted-to-Recorrupted), default-2d is adapted for a fixed number of steps; every
``--every`` steps the true PSNR of the whole crop (through the engine) is measured together with every
candidate guard on the held-out pixels (each loss, and Monte-Carlo SURE of the full output). The report
says which loss gains most per second of CPU, and which guard follows the true PSNR (the guard must
see when adaptation makes things worse, e.g. in distribution).

    python train/adapt_loss_choice.py --steps 600 --every 100 --threads 1 --out train/reports/adapt-loss-choice
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LowLightDenoiseLib.methods import get_method  # noqa: E402
from LowLightDenoiseLib.methods.adaptation import (  # noqa: E402
    AdaptSettings, _batch, _patch_shape, _picks, _sources, adapt)
from LowLightDenoiseLib.methods.adaptation_guard import GUARDS, _fix_variance, _heldout_loss  # noqa: E402
from LowLightDenoiseLib.methods.learned import LearnedMethod  # noqa: E402
from LowLightDenoiseLib.methods.selfsupervised import LOSSES  # noqa: E402
from LowLightDenoiseLib.pipeline import denoise_volume  # noqa: E402
from LowLightDenoiseLib.tables import markdown_table, write_text_atomic  # noqa: E402
from train.adapt_cases import VALIDATION_CASES, describe, load_case, scores  # noqa: E402


def run_case(case: Any, loss: str, steps: int, every: int, lr: float, seed: int = 0) -> List[Dict[str, Any]]:
    """The trajectory of one adaptation: step, training seconds, true PSNR/SSIM and every guard."""
    clean, noisy = load_case(case)
    base = get_method("default-2d", device="cpu")
    settings = AdaptSettings(loss=loss, lr=lr, max_steps=steps, eval_every=every, patience=10 ** 6)
    spec = base.spec
    sources = _sources(noisy, 2, 0, settings.holdout, np.random.default_rng([seed, 0]))
    shape = _patch_shape(sources, spec, settings)
    picks = _picks(sources, shape, settings.eval_patches, np.random.default_rng([seed, 1]))
    held = [_batch(sources, picks[i:i + settings.batch], shape, spec, True, "cpu")
            for i in range(0, len(picks), settings.batch)]
    _fix_variance(base, sources, held)
    rows: List[Dict[str, Any]] = []
    clock = {"start": time.perf_counter(), "outside": 0.0}

    def measure(step: int, network: Any) -> None:
        t = time.perf_counter()
        method = LearnedMethod(spec, copy.deepcopy(network).eval(), settings=base.settings)
        out = denoise_volume(noisy, method, device="cpu")
        row = {"step": step, "train_s": round(t - clock["start"] - clock["outside"], 1)}
        row.update(scores(out.volume, clean))
        for guard in GUARDS:
            row[f"guard_{guard}"] = _heldout_loss(method, sources, held, guard, seed)
        rows.append(row)
        clock["outside"] += time.perf_counter() - t

    measure(0, base.network)
    adapt(noisy, base, None, settings=settings, monitor=lambda step, _, net: measure(step, net))
    return rows


def correlation(rows: List[Dict[str, Any]], guard: str) -> float:
    """Pearson correlation of a guard with -PSNR over a trajectory (1: the guard falls exactly when PSNR rises)."""
    g = np.array([r[f"guard_{guard}"] for r in rows])
    p = -np.array([r["psnr"] for r in rows])
    if g.std() == 0 or p.std() == 0:
        return float("nan")
    return float(np.corrcoef(g, p)[0, 1])


def render(results: Dict[str, Any], args: argparse.Namespace) -> str:
    lines = ["# Adaptation: choice of the self-supervised loss and of the guard (validation split)", "",
             f"`python train/adapt_loss_choice.py --steps {args.steps} --every {args.every} --lr {args.lr:g} "
             f"--threads {args.threads}` (default-2d, CPU, {args.threads} thread(s), shared machine). True PSNR of the "
             "whole crop through the engine; guards measured on the held-out pixels (20 % of 8 x 8 blocks), in noise "
             "variances of the network's domain.", ""]
    lines += ["## Cases", "", markdown_table(["case", "scan", "split", "kind", "degradation", "crop"],
                                             [[d["case"], d["scan"], d["split"], d["kind"], d["degradation"], d["crop"]]
                                              for d in results["cases"]]), ""]
    header = ["case", "loss", "PSNR before", "best PSNR (step)", "PSNR at end", "train s at end", "steps/s"]
    header += [f"corr({g}, -PSNR)" for g in GUARDS]
    body = []
    for r in results["runs"]:
        rows = r["rows"]
        best = max(rows, key=lambda x: x["psnr"])
        end = rows[-1]
        body.append([r["case"], r["loss"], f"{rows[0]['psnr']:.2f}", f"{best['psnr']:.2f} ({best['step']})",
                     f"{end['psnr']:.2f}", f"{end['train_s']:.0f}", f"{end['step'] / max(end['train_s'], 1e-9):.1f}"]
                    + [f"{correlation(rows, g):+.2f}" for g in GUARDS])
    lines += ["## Summary", "", markdown_table(header, body), ""]
    lines += ["## Trajectories", ""]
    for r in results["runs"]:
        lines += [f"### {r['case']}, {r['loss']}", ""]
        cols = ["step", "train_s", "psnr", "ssim"] + [f"guard_{g}" for g in GUARDS]
        lines += [markdown_table(cols, [[f"{x[c]:.4f}" if isinstance(x[c], float) else x[c] for c in cols]
                                        for x in r["rows"]]), ""]
    return "\n".join(lines)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all validation cases)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="train/reports/adapt-loss-choice")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    cases = [c for c in VALIDATION_CASES if not args.cases or c.name in args.cases.split(",")]
    results: Dict[str, Any] = {"cases": [describe(c) for c in cases], "runs": []}
    out = Path(args.out)
    for case in cases:
        for loss in args.losses.split(","):
            t = time.perf_counter()
            rows = run_case(case, loss, args.steps, args.every, args.lr)
            results["runs"].append({"case": case.name, "loss": loss, "rows": rows})
            print(f"{case.name} {loss}: PSNR {rows[0]['psnr']:.2f} -> {rows[-1]['psnr']:.2f} "
                  f"(best {max(r['psnr'] for r in rows):.2f}) in {time.perf_counter() - t:.0f} s", flush=True)
            write_text_atomic(out.with_suffix(".json"), json.dumps(results, indent=1))
            write_text_atomic(out.with_suffix(".md"), render(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
