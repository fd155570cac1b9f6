"""Noise-type routing (``--method auto``) against the default model and median over every noise type.

The split's scans (central crops, :func:`train.evaluate.load_test_scans`) are degraded by each noise type at
two or three levels (:data:`LEVELS`; level ``i`` seeded ``seed + 97 * i``) with :mod:`LowLightDenoiseLib.degrade`,
and every entry runs through :func:`LowLightDenoiseLib.evaluation.evaluate` (the engine, CPU, blind). ``auto``'s
rows carry what it chose (``route``, ``noise_type``, ``noise_probability``); the classifier's full
probabilities on each noisy scan are recorded beside them. The report answers issue 14's rule: ``auto`` may
become the default only if it is never worse than the current default on photon noise, per level.

Extra entries (``--extra``) are any method names, and ``log:NAME`` (or ``logC:NAME``, offset ``C``): method NAME
in the log domain (:class:`~LowLightDenoiseLib.methods.logdomain.LogDomain`) with the noise level estimated
per volume as ``auto`` does; these chose the speckle route on the validation split.

    python train/routing_report.py --split test --slices 4 --extra nlm,log:default-2d --out train/reports/routing
    python train/routing_report.py --split val --slices 4 --noise speckle --out train/reports/routing-speckle-val \\
    --extra wavelet,nlm,tv,bilateral,log:default-2d,log:nlm,log:tv,log:wavelet,log0.003:default-2d,log0.03:default-2d
    python train/routing_report.py --split val --slices 4 --noise photon --peaks 300,100,30,10 \\
        --extra log:default-2d --out train/reports/routing-photon-val
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parent
if str(TRAIN_DIR.parent) not in sys.path:
    sys.path.insert(0, str(TRAIN_DIR.parent))

from LowLightDenoiseLib.degrade import Gaussian, LowLight, Rician, SaltPepper, Speckle  # noqa: E402
from LowLightDenoiseLib.evaluation import Entry, Level, Row, Scan, evaluate, mean_by  # noqa: E402
from LowLightDenoiseLib.files import sha256_of  # noqa: E402
from LowLightDenoiseLib.methods import Method, get_method  # noqa: E402
from LowLightDenoiseLib.methods.auto import (AUTO_NAME, DEFAULT_MODEL, ROUTES, classify_channels,  # noqa: E402
                                             volume_samples)
from LowLightDenoiseLib.methods.logdomain import OFFSET, LogDomain, log_sigma  # noqa: E402
from LowLightDenoiseLib.noise import CLASSIFIER_PATH  # noqa: E402
from LowLightDenoiseLib.options import RunOptions  # noqa: E402
from LowLightDenoiseLib.volume import Volume  # noqa: E402
from train.evaluate import NOISY, denoise_scores, load_test_scans  # noqa: E402

CPU = RunOptions(device="cpu")
#: noise type -> the classifier label that is right for it
TRUE_LABEL = {"photon": "poisson", "gaussian": "gaussian", "salt_pepper": "salt_pepper", "speckle": "speckle",
              "rician": "rician"}
#: the levels of each noise type (sigma: a fraction of the image's range; speckle's relative to the signal)
LEVELS: Dict[str, Tuple[Tuple[str, Any], ...]] = {
    "photon": tuple((f"peak {p:g}", LowLight(peak=p, read_noise=1.0)) for p in (300.0, 100.0, 30.0)),
    "gaussian": tuple((f"sigma {s:g}", Gaussian(sigma=s)) for s in (0.02, 0.05)),
    "salt_pepper": tuple((f"{a:.0%}", SaltPepper(amount=a)) for a in (0.01, 0.05)),
    "speckle": tuple((f"sigma {s:g}", Speckle(sigma=s)) for s in (0.15, 0.3)),
    "rician": tuple((f"sigma {s:g}", Rician(sigma=s)) for s in (0.03, 0.08)),
}
#: the entries every run has: the router, the current default and median
BASE_ENTRIES = (AUTO_NAME, DEFAULT_MODEL, "median")


def make_levels(noises: Sequence[str], peaks: Optional[Sequence[float]] = None, seed: int = 0) -> List[Level]:
    """The levels of ``noises`` (``peaks`` replace the photon peaks), seeded ``seed + 97 * i``."""
    out: List[Level] = []
    for noise in noises:
        levels = LEVELS[noise]
        if noise == "photon" and peaks:
            levels = tuple((f"peak {p:g}", LowLight(peak=float(p), read_noise=1.0)) for p in peaks)
        for label, degradation in levels:
            out.append(Level(f"{noise} {label}", degradation, seed=seed + 97 * len(out), columns={"noise": noise}))
    return out


def log_domain(name: str) -> Any:
    """An entry's method for ``log:NAME`` / ``logC:NAME``: NAME in the log domain, its sigma per volume like auto."""
    head, inner_name = name.split(":", 1)
    offset = float(head[3:]) if head[3:] else OFFSET
    inner = get_method(inner_name, device="cpu")

    def build(scan: Scan, level: Level, noisy: Volume) -> Method:
        sigma = float(np.median([log_sigma(s, offset) for s in volume_samples(noisy)]))
        return LogDomain(inner, sigma, offset)

    return build


def entries_for(extra: Sequence[str]) -> List[Entry]:
    names = list(BASE_ENTRIES) + [n for n in extra if n not in BASE_ENTRIES]
    return [Entry(n, log_domain(n) if n.startswith("log") and ":" in n else n, CPU) for n in names]


class Classified:
    """Observer: the classifier's probabilities on each noisy scan (what auto reads), by (scan, level)."""

    def __init__(self) -> None:
        self.probabilities: Dict[Tuple[str, str], Dict[str, float]] = {}

    def __call__(self, scan: Scan, level: Level, row: Row, noisy: Volume, output: Volume) -> None:
        if row["method"] == NOISY:
            _, probabilities = classify_channels(volume_samples(noisy))
            self.probabilities[(scan.name, level.label)] = {k: round(v, 4) for k, v in probabilities.items()}


def decide(rows: Sequence[Row]) -> Dict[str, Any]:
    """Issue 14's rule: auto never worse than the default on photon noise, per level (mean) and per case."""
    by_case = {(r["scan"], r["level"]): r for r in rows if r["method"] == DEFAULT_MODEL}
    per_level: Dict[str, List[float]] = {}
    for r in rows:
        if r["method"] == AUTO_NAME and r.get("noise") == "photon":
            per_level.setdefault(r["level"], []).append(r["psnr"] - by_case[(r["scan"], r["level"])]["psnr"])
    levels = {k: {"mean_delta_db": float(np.mean(v)), "worst_delta_db": float(np.min(v)), "cases": len(v)}
              for k, v in per_level.items()}
    never_worse = bool(levels) and all(v["worst_delta_db"] >= 0.0 for v in levels.values())
    return {"rule": "auto never worse than the current default on photon noise, per level (every case)",
            "current_default": DEFAULT_MODEL, "photon_levels": levels, "auto_never_worse": never_worse,
            "make_auto_default": never_worse}


def _fmt(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def render(report: Dict[str, Any]) -> str:
    rows, methods = report["rows"], report["methods"]
    lines = [f"# Noise-type routing (`--method {AUTO_NAME}`): {report['split']} split", "",
             f"Command: `{report['command']}`", "",
             f"Noise classifier: `Resources/NoiseClassifier.json`, sha256 `{report['classifier_sha256']}`.", "",
             f"Scans: {', '.join(report['scans'])}; central crops of {report['slices']} slices x 256 px (384 px for "
             "the radiograph), first colour channel. Every method blind, through the engine on the CPU. Routes: "
             + ", ".join(f"{k} -> {v['method']}" + (f" (p >= {v['min_probability']:g})" if v["min_probability"] else "")
                         for k, v in report["routes"].items()) + "; any other label -> " + DEFAULT_MODEL + ".", "",
             "## Mean over the scans", "", "PSNR in dB (SSIM below it in the detail); `auto - default`: the mean "
             "difference; routes: how many scans took each; classifier: scans whose label was the true type.", "",
             "| noise | level | noisy | " + " | ".join(methods) + " | auto - default | routes | classifier right |",
             "|---|---|---" + "|---" * len(methods) + "|---|---|---|"]
    means = {(m["level"], m["method"]): m for m in mean_by(rows, ("level", "method"))}
    for level in report["levels"]:
        auto_rows = [r for r in rows if r["level"] == level and r["method"] == AUTO_NAME]
        routes: Dict[str, int] = {}
        for r in auto_rows:
            routes[r.get("route")] = routes.get(r.get("route"), 0) + 1
        noise = auto_rows[0]["noise"] if auto_rows else ""
        right = sum(r.get("noise_type") == TRUE_LABEL.get(noise) for r in auto_rows)
        delta = means[(level, AUTO_NAME)]["psnr"] - means[(level, DEFAULT_MODEL)]["psnr"]
        cells = [_fmt(means.get((level, m), {}).get("psnr")) for m in methods]
        lines.append(f"| {noise} | {level.split(' ', 1)[1]} | {_fmt(means[(level, NOISY)]['psnr'])} | "
                     + " | ".join(cells) + f" | {delta:+.2f} | "
                     + ", ".join(f"{k} x{v}" for k, v in sorted(routes.items())) + f" | {right}/{len(auto_rows)} |")
    decision = report["decision"]
    lines += ["", "## The rule: never worse than the default on photon noise", ""]
    lines += [f"- {lv}: mean {v['mean_delta_db']:+.3f} dB, worst case {v['worst_delta_db']:+.3f} dB "
              f"over {v['cases']} scans"
              for lv, v in decision["photon_levels"].items()]
    verdict = ("met: `auto` may be the default" if decision["make_auto_default"]
               else "not met: the default stays " + decision["current_default"])
    lines += ["", f"Verdict: {verdict}." if decision["photon_levels"] else "No photon levels in this run.", "",
              "## Every case", "", "| scan | level | p(true type) | p(speckle) | p(salt_pepper) | label | p | route | "
              + " | ".join(methods) + " |", "|---|---|---|---|---|---|---|---" + "|---" * len(methods) + "|"]
    scores = {(r["scan"], r["level"], r["method"]): r for r in rows}
    for key, probabilities in report["classified"].items():
        scan, level = key.split(" | ")
        auto = scores.get((scan, level, AUTO_NAME), {})
        true = TRUE_LABEL.get(auto.get("noise", ""), "")
        found = [scores.get((scan, level, m), {}) for m in methods]
        cells = [f"{_fmt(r.get('psnr'))} / {_fmt(r.get('ssim'), 3)}" for r in found]
        lines.append(f"| {scan} | {level} | {probabilities.get(true, 0.0):.2f} | "
                     f"{probabilities.get('speckle', 0.0):.2f} | {probabilities.get('salt_pepper', 0.0):.2f} | "
                     f"{auto.get('noise_type')} | "
                     f"{_fmt(auto.get('noise_probability'))} | {auto.get('route')} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: PSNR (dB) / SSIM. p(...): the classifier's probability of the true noise type (photon noise: "
              "`poisson`), of speckle and of salt-and-pepper, averaged over channels as auto does.", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--noise", default=",".join(LEVELS), help=f"noise types, comma-separated ({', '.join(LEVELS)})")
    parser.add_argument("--peaks", default="", help="photon peaks instead of 300,100,30 (comma-separated)")
    parser.add_argument("--extra", default="", help="more entries: method names, log:NAME, logC:NAME")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="report path without extension (.md and .json are written)")
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    noises = [n.strip() for n in args.noise.split(",") if n.strip()]
    unknown = [n for n in noises if n not in LEVELS]
    if unknown:
        parser.error(f"unknown noise type {unknown[0]!r}; choose from {', '.join(LEVELS)}")
    peaks = [float(p) for p in args.peaks.split(",") if p.strip()]
    scans = load_test_scans(args.split, slices=args.slices)
    levels = make_levels(noises, peaks, args.seed)
    entries = entries_for([e.strip() for e in args.extra.split(",") if e.strip()])
    classified = Classified()
    t0 = time.perf_counter()
    rows = evaluate(scans, levels, entries, score=denoise_scores, observers=[classified],
                    log=lambda m: print(m, flush=True))
    methods = [e.label for e in entries]
    report = {"split": args.split, "slices": args.slices, "scans": [s.name for s in scans],
              "classifier_sha256": sha256_of(CLASSIFIER_PATH),
              "levels": [lv.label for lv in levels], "methods": methods,
              "routes": {k: {"method": r.method, "min_probability": r.min_probability} for k, r in ROUTES.items()},
              "command": "python train/routing_report.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "seconds": round(time.perf_counter() - t0, 1), "decision": decide(rows),
              "classified": {f"{s} | {lv}": p for (s, lv), p in classified.probabilities.items()}, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(render(report), encoding="utf-8")
    print(f"Wrote {out.with_suffix('.md')} and .json ({report['seconds']} s); decision: {report['decision']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
