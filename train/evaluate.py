"""Measure trained models on the TEST split against the classical methods; write a Markdown/JSON report.

Every method, learned or classical, runs through the engine (:func:`LowLightDenoiseLib.pipeline.denoise_volume`)
in ``mode="auto"``, blind: the engine estimates the noise itself. Baselines:

* every automatic classical denoiser of the engine (parameters from the estimated noise);
* non-local means and total variation *tuned with the clean image* (strength multiplier searched
  for the best PSNR, per image and level: an oracle no real user has);
* BM3D after the generalised Anscombe transform with the TRUE noise parameters (``bm3d`` package,
  installed for measurement only and never a dependency of the project).

Denoising task (``--task denoise``): photon-limited noise at peak 300, 100 and 30 photons at full
scale with read noise 1 photon (:class:`~LowLightDenoiseLib.degrade.LowLight`, brightness 1); PSNR
and SSIM in physical units with the clean crop's range. On CT it also checks that the mean HU of
homogeneous regions moves by less than a tenth of the noise standard deviation.

Enhancement task (``--task enhance``): darkened images (brightness, gamma, peak, read noise 1);
baseline: the best automatic classical denoiser (chosen per image and level with the clean image)
followed by gamma correction and CLAHE. Scores are
in the dark input's normalised frame against the clean image mapped by its own robust range (an
enhancer's output spans the input's range; see ``train/dataset.py``).

    python train/evaluate.py --models default-2d --out train/reports/default-2d
    python train/evaluate.py --models volume-3d,default-2d --task denoise --out train/reports/volume-3d
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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parent
if str(TRAIN_DIR.parent) not in sys.path:
    sys.path.insert(0, str(TRAIN_DIR.parent))

from LowLightDenoiseLib.degrade import LowLight, simulate_volume  # noqa: E402
from LowLightDenoiseLib.methods import Method, MethodContext, get_method  # noqa: E402
from LowLightDenoiseLib.metrics import psnr, ssim  # noqa: E402
from LowLightDenoiseLib.normalize import Normalizer  # noqa: E402
from LowLightDenoiseLib.pipeline import denoise_volume  # noqa: E402
from LowLightDenoiseLib.volume import Volume  # noqa: E402
from train.dataset import DATA_DIR, SPLITS, split_ids  # noqa: E402

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


@dataclasses.dataclass
class TestImage:
    id: str
    modality: str
    clean: Volume


def load_test_images(split: str = "test", data_dir: Path = DATA_DIR, splits_file: Path = SPLITS,
                     slices: int = CROP_SLICES, side: Optional[int] = None,
                     modalities: Optional[Sequence[str]] = None, volumes_only: bool = False) -> List[TestImage]:
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
        out.append(TestImage(sid, meta["modality"], Volume(crop, spacing=tuple(meta["spacing_xyz"]))))
    return out


class BM3DTrueVST(Method):
    """BM3D (``bm3d`` package) slice by slice after the generalised Anscombe transform, TRUE (a, b).

    ``a``, ``b`` must be given in the engine's normalised units (see :func:`true_profile`); the
    estimate the engine passes in ``context`` is ignored. Measurement only, never shipped.
    """

    name = "bm3d-vst-true"
    title = "BM3D + generalised Anscombe (true noise parameters)"
    spatial_dims = (2,)

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b = float(a), float(b)

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        import bm3d

        from LowLightDenoiseLib.vst import generalized_anscombe, inverse_generalized_anscombe

        out = np.empty(block.shape, dtype=np.float32)
        for i in range(block.shape[0]):
            y = generalized_anscombe(block[i].astype(np.float64), self.a, self.b)
            den = bm3d.bm3d(y, sigma_psd=1.0)
            out[i] = inverse_generalized_anscombe(np.asarray(den, dtype=np.float64), self.a, self.b)
        return out


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


def classical_denoisers() -> List[str]:
    from LowLightDenoiseLib.methods.classical import CLASSICAL_METHODS

    return sorted(n for n, cls in CLASSICAL_METHODS.items() if cls().category == "denoise")


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


def _scores(out: np.ndarray, ref: np.ndarray, data_range: float) -> Dict[str, float]:
    return {"psnr": psnr(out, ref, data_range), "ssim": ssim(out, ref, data_range, spatial_dims=2)}


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


class Evaluation:
    """Runs the methods on every (image, level) and collects rows."""

    def __init__(self, images: List[TestImage], task: str, levels: Sequence[Dict[str, float]], seed: int = 0,
                 log: Callable[[str], None] = print) -> None:
        self.images, self.task, self.levels, self.seed, self.log = images, task, list(levels), seed, log
        self.rows: List[Dict[str, Any]] = []
        self.checks: List[Dict[str, Any]] = []

    def _run(self, method: Any, noisy: Volume, **kw: Any) -> Tuple[np.ndarray, float]:
        t = time.perf_counter()
        result = denoise_volume(noisy, method, device="cpu", **kw)
        return result.volume.array, time.perf_counter() - t

    def _frame(self, clean: Volume, noisy: Volume) -> Tuple[Callable[[np.ndarray], np.ndarray], np.ndarray, float]:
        """(map of an output to the scoring frame, reference in that frame, data range)."""
        if self.task == "denoise":
            ref = clean.array
            return (lambda a: a), ref, float(ref.max() - ref.min())
        eng = Normalizer.fit(noisy.array)
        return eng.forward, Normalizer.fit(clean.array).forward(clean.array), 1.0

    def add(self, image: TestImage, level_name: str, method: str, out: np.ndarray, seconds: float,
            frame: Callable[[np.ndarray], np.ndarray], ref: np.ndarray, data_range: float, **extra: Any) -> float:
        row = {"image": image.id, "modality": image.modality, "level": level_name, "method": method,
               **_scores(frame(out), ref, data_range), "seconds": round(seconds, 3), **extra}
        self.rows.append(row)
        self.log(f"  {image.id:22s} {level_name:18s} {method:24s} psnr {row['psnr']:6.2f} ssim {row['ssim']:.4f} "
                 f"{seconds:6.1f}s")
        return row["psnr"]

    def run(self, models: Sequence[Tuple[str, Any]], baselines: bool = True, bm3d: bool = True) -> None:
        for image in self.images:
            for li, level in enumerate(self.levels):
                name = _level_name(level)
                deg = LowLight(**level)
                noisy = simulate_volume(image.clean, deg, seed=self.seed + 97 * li)
                frame, ref, rng = self._frame(image.clean, noisy)
                self.add(image, name, "noisy input", noisy.array, 0.0, frame, ref, rng)
                self._check_hu(image, name, "noisy input", noisy, noisy.array)
                for label, method in models:
                    out, sec = self._run(method, noisy)
                    self.add(image, name, label, out, sec, frame, ref, rng)
                    self._check_hu(image, name, label, noisy, out)
                if not baselines:
                    continue
                if self.task == "denoise":
                    self._denoise_baselines(image, name, level, noisy, frame, ref, rng, bm3d)
                else:
                    self._enhance_baselines(image, name, noisy, frame, ref, rng)

    def _check_hu(self, image: TestImage, level_name: str, label: str, noisy: Volume, out: np.ndarray) -> None:
        """CT only: the homogeneous-region mean shift of ``out`` (models and baselines alike)."""
        if self.task == "denoise" and image.modality == "ct":
            self.checks.append({"image": image.id, "level": level_name, "method": label,
                                **homogeneous_shift(image.clean.array, noisy.array, out)})

    def _denoise_baselines(self, image: TestImage, name: str, level: Dict[str, float], noisy: Volume,
                           frame: Callable, ref: np.ndarray, rng: float, bm3d: bool) -> None:
        for m in classical_denoisers():
            out, sec = self._run(m, noisy)
            self.add(image, name, f"auto:{m}", out, sec, frame, ref, rng)
            self._check_hu(image, name, f"auto:{m}", noisy, out)
        for m in ("nlm", "tv"):
            best, best_s, best_out, sec_total = -math.inf, None, None, 0.0
            for s in TUNING_GRID:
                out, sec = self._run(get_method(m, strength=s), noisy)
                sec_total += sec
                score = psnr(frame(out), ref, rng)
                if score > best:
                    best, best_s, best_out = score, s, out
            self.add(image, name, f"tuned:{m}", best_out, sec_total / len(TUNING_GRID), frame, ref, rng,
                     strength=best_s)
            self._check_hu(image, name, f"tuned:{m}", noisy, best_out)
        if bm3d:
            a, b = true_profile(image.clean.array, noisy.array, level)
            out, sec = self._run(BM3DTrueVST(a, b), noisy, mode="2d")
            self.add(image, name, "bm3d-vst-true", out, sec, frame, ref, rng)
            self._check_hu(image, name, "bm3d-vst-true", noisy, out)

    def _enhance_baselines(self, image: TestImage, name: str, noisy: Volume, frame: Callable, ref: np.ndarray,
                           rng: float) -> None:
        best = None
        for m in classical_denoisers():
            den, sec = self._run(m, noisy)
            vol = noisy.with_array(den)
            g, sec2 = self._run("gamma", vol)
            c, sec3 = self._run("clahe", noisy.with_array(g))
            score = psnr(frame(c), ref, rng)
            if best is None or score > best[0]:
                best = (score, m, c, sec + sec2 + sec3)
        g, sec2 = self._run("gamma", noisy)
        c, sec3 = self._run("clahe", noisy.with_array(g))
        self.add(image, name, "gamma+clahe", c, sec2 + sec3, frame, ref, rng)
        self.add(image, name, "best-classical+gamma+clahe", best[2], best[3], frame, ref, rng, denoiser=best[1])


def _level_name(level: Dict[str, float]) -> str:
    if level["brightness"] == 1.0 and level["gamma"] == 1.0:
        return f"peak {level['peak']:g}"
    return f"b{level['brightness']:g} g{level['gamma']:g} peak {level['peak']:g}"


def summarise(rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Mean PSNR/SSIM per level and method (over images)."""
    table: Dict[str, Dict[str, Dict[str, float]]] = {}
    for level in dict.fromkeys(r["level"] for r in rows):
        table[level] = {}
        for method in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["level"] == level and r["method"] == method]
            if sel:
                table[level][method] = {"psnr": float(np.mean([r["psnr"] for r in sel])),
                                        "ssim": float(np.mean([r["ssim"] for r in sel])),
                                        "seconds": float(np.mean([r["seconds"] for r in sel])), "n": len(sel)}
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
            for m in ("tuned:nlm", "tuned:tv", "bm3d-vst-true"):
                if m in methods:
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


def render(report: Dict[str, Any]) -> str:
    lines = [f"# Evaluation: {', '.join(report['models'])} ({report['task']})", "",
             f"Command: `{report['command']}`", "",
             f"{report.get('split', 'test').capitalize()} images (split by scan, `train/splits.json`): "
             f"{', '.join(f'{i} ({m})' for i, m in report['images'])}; central crops of at most "
             f"{report.get('slices', CROP_SLICES)} slices x {DEFAULT_SIDE} px ({CROP_SIDE['xray']} px for radiographs).",
             "", f"Mean over the {report.get('split', 'test')} images; PSNR in dB.", ""]
    for level, methods in report["summary"].items():
        lines += [f"## {level}", "", "| method | PSNR | SSIM | seconds |", "|---|---|---|---|"]
        for m, v in sorted(methods.items(), key=lambda kv: -kv[1]["psnr"]):
            lines.append(f"| {m} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['seconds']:.1f} |")
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
    lines += [f"| {r['image']} | {r['level']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} |"
              for r in report["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate models on the test split against classical methods.")
    parser.add_argument("--models", default="", help="registered model names, comma-separated")
    parser.add_argument("--runs", default="", help="training run folders (config + checkpoint_best.pt), comma-separated")
    parser.add_argument("--task", choices=["denoise", "enhance"], default="denoise")
    parser.add_argument("--split", default="test")
    parser.add_argument("--modalities", default="", help="restrict to these modalities, comma-separated")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--no-bm3d", action="store_true")
    parser.add_argument("--slices", type=int, default=CROP_SLICES)
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
    images = load_test_images(args.split, slices=args.slices,
                              modalities=[m for m in args.modalities.split(",") if m] or None, volumes_only=volumes_only)
    bm3d = not args.no_bm3d
    if bm3d:
        try:
            import bm3d as _bm3d  # noqa: F401
        except ImportError:
            print("bm3d is not installed (pip install bm3d, for measurement only): skipping BM3D")
            bm3d = False
    ev = Evaluation(images, args.task, DENOISE_LEVELS if args.task == "denoise" else ENHANCE_LEVELS)
    ev.run(models, baselines=not args.no_baselines, bm3d=bm3d)
    table = summarise(ev.rows)
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
    report = {"command": "python train/evaluate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "task": args.task, "split": args.split, "slices": args.slices, "models": names,
              "images": [(i.id, i.modality) for i in images],
              "levels": ev.levels, "summary": table, "targets": tg, "ct_checks": ev.checks, "speed": speed, "runs": runs, "rows": ev.rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".md").write_text(render(report))
    print(render(report).split("## Per image")[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
