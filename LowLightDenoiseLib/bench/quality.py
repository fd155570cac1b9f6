"""The benchmark's quality loop: every method on every clean scan at every degradation, through
:func:`LowLightDenoiseLib.evaluation.evaluate`.

The benchmark's own choices live here: which methods (:func:`resolve_methods`), which degradations
(:func:`benchmark_levels`, seeded ``seed + 1000 * index``), one :class:`~..evaluation.Entry` per method
and mode it supports on a scan, only the middle low-light level for resized variants, and an observer
(:class:`Examples`) that keeps the middle slices of one scan per modality for the figures.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..errors import InputError
from ..evaluation import Entry, Level, Row, Scan, evaluate
from ..methods import Method, classical_method_names, get_method
from ..methods.peers import BM3D_NAME, BM3DVST, bm3d_available
from ..options import RunOptions
from ..volume import Volume
from .config import EXTRA_NOISE, BenchmarkConfig, csv_list

NOISY = "noisy input"
SCORES = ("psnr", "ssim", "mse")


# ----------------------------------------------------------------------------------------------
# methods


def installed_models() -> List[Dict[str, Any]]:
    """Registry descriptions of the registered models whose weights are installed."""
    from .. import registry

    return [entry for entry in registry.describe_models() if entry.get("name") and registry.installed(entry["name"])]


def method_category(name: str) -> str:
    from ..methods.classical import CLASSICAL_METHODS

    cls = CLASSICAL_METHODS.get(name)
    return getattr(cls, "category", "denoise") if cls is not None else "denoise"


def resolve_methods(spec: str) -> List[str]:
    """Method names from ``all | classical | learned | denoisers`` or a comma-separated list.

    A model's former name becomes its registered one; an unknown name raises the library's one
    sentence before any work.
    """
    from .. import registry

    from .. import DEFAULT_MODEL
    from ..methods.auto import AUTO_NAME
    from ..methods.loading import list_methods

    classical = classical_method_names()
    learned = [m["name"] for m in installed_models()]
    # averages of installed models (ensemble-2d), and auto when the model it runs is installed
    learned += [r["name"] for r in list_methods() if r.get("members") and r.get("installed")]
    automatic = [AUTO_NAME] if DEFAULT_MODEL in learned else []
    groups = {"classical": classical, "learned": learned, "all": automatic + classical + learned,
              "denoisers": automatic + [n for n in classical if method_category(n) == "denoise"] + learned}
    names: List[str] = []
    for item in csv_list(spec):
        if item in groups:
            names.extend(groups[item])
            if item in ("all", "denoisers") and bm3d_available():
                names.append(BM3D_NAME)
        else:
            names.append(registry.canonical_name(item) or item)
    if not names:
        raise InputError("--methods selects no method.")
    known = set(classical) | set(learned) | set(automatic) | {BM3D_NAME}
    for n in names:
        if n == BM3D_NAME and not bm3d_available():
            raise InputError("bm3d-vst needs the bm3d package (pip install bm3d; used for comparison only).")
        if n not in known:
            get_method(n, device="cpu")  # raises the library's one-sentence error for unknown or missing models
    return list(dict.fromkeys(names))


def make_method(name: str, device: str) -> Method:
    """The method called ``name`` on ``device``: any method of the library, or ``bm3d-vst`` (comparison only)."""
    if name == BM3D_NAME:
        return BM3DVST()
    return get_method(name, device=device)


def method_modes(method: Method, volume: Volume, modes: Sequence[str]) -> List[str]:
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
# degradations


def benchmark_levels(config: BenchmarkConfig) -> List[Level]:
    """The photon-limited low-light levels, then each extra noise type; level ``i`` is seeded ``seed + 1000 i``.

    A level's columns: ``noise`` (its type) and its parameters.
    """
    from ..degrade import make_degradation

    specs = [(f"peak {p:g}", "lowlight", {"peak": p, "read_noise": config.read_noise}) for p in config.levels]
    for kind in config.noise:
        params = EXTRA_NOISE[kind]
        specs.append((f"{kind} " + " ".join(f"{k}={v:g}" for k, v in params.items()), kind, dict(params)))
    return [Level(label, make_degradation("lowlight" if kind == "dark" else kind, **params),
                  seed=config.seed + 1000 * i, columns=dict({"noise": kind}, **params))
            for i, (label, kind, params) in enumerate(specs)]


def level_parameters(level: Level) -> Dict[str, Any]:
    """A level's parameters (its columns without ``noise``)."""
    return {k: v for k, v in level.columns.items() if k != "noise"}


def is_middle_level(level: Level, config: BenchmarkConfig) -> bool:
    """The middle photon-limited level: the only one resized variants and figure examples use."""
    levels = sorted(config.levels)
    return level.columns["noise"] == "lowlight" and level.columns["peak"] == levels[len(levels) // 2]


# ----------------------------------------------------------------------------------------------
# the loop


def middle_slice(volume: Volume) -> np.ndarray:
    a = volume.array
    return np.array(a[a.shape[0] // 2], dtype=np.float32)


@dataclasses.dataclass
class Examples:
    """Observer of the evaluation: middle slices of the first native scan of each modality at the
    middle low-light level (clean, degraded, and every result as ``"method (mode)"``), for the figures."""

    config: BenchmarkConfig
    by_modality: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __call__(self, scan: Scan, level: Level, row: Row, noisy: Volume, output: Volume) -> None:
        if scan.columns.get("resized") or not is_middle_level(level, self.config):
            return
        if row["method"] == NOISY:
            if scan.modality not in self.by_modality:
                self.by_modality[scan.modality] = {"scan": scan.name, "degradation": level.label,
                                                   "clean": middle_slice(scan.clean),
                                                   "degraded": middle_slice(noisy), "results": {}}
            return
        example = self.by_modality.get(scan.modality)
        if example is not None and example["scan"] == scan.name and example["degradation"] == level.label:
            example["results"][f"{row['method']} ({row['mode']})"] = middle_slice(output)


def benchmark_row(row: Row) -> Row:
    """An evaluation row in the benchmark's columns: the scan's, ``degradation`` (the level) and its
    parameters, then ``method, kind, category, mode``, the scores, ``seconds`` and ``mvoxels_per_s``."""
    out: Row = {}
    for key, value in row.items():
        if key == "level":
            out["degradation"] = value
        elif key == "method":
            noisy = value == NOISY
            out.update(method=value, kind="input" if noisy else row.get("kind", ""),
                       category="-" if noisy else row.get("category", ""), mode=row.get("mode") or "-")
        elif key not in ("mode", "kind", "category", "seconds") and key not in SCORES:
            out[key] = value
    out.update({k: row.get(k) for k in SCORES})
    seconds = row.get("seconds")
    out["seconds"] = seconds
    out["mvoxels_per_s"] = round(row["voxels"] / seconds / 1e6, 4) if seconds else None
    return out


def run_quality(scans: Iterable[Scan], methods: Dict[str, Method], config: BenchmarkConfig, device: str, *,
                observers: Sequence[Callable[..., None]] = (), log: Optional[Callable[[str], None]] = None,
                on_error: Optional[Callable[[str], None]] = None) -> List[Row]:
    """Every method in each mode it supports on each scan, at every level (resized scans: the middle
    level only); one benchmark row per (scan, level, method, mode), the noisy input first."""
    levels = benchmark_levels(config)
    rows: List[Row] = []
    for scan in scans:
        scan_levels = [lv for lv in levels if not scan.columns.get("resized") or is_middle_level(lv, config)]
        entries = [Entry(name, method, RunOptions(mode=mode, device=device, seed=config.seed),
                         columns={"kind": getattr(method, "kind", ""), "category": getattr(method, "category", "")})
                   for name, method in methods.items() for mode in method_modes(method, scan.clean, config.modes)]
        found = evaluate([scan], scan_levels, entries, observers=observers, log=log, on_error=on_error,
                         noisy_label=NOISY)
        rows.extend(benchmark_row(r) for r in found)
    return rows
