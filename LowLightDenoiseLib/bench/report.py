"""The benchmark's report: the machine, the table files, the grouped means and ``report.md``.

Tables go through :mod:`..tables` (atomic CSV/JSON, Markdown cells); the figures are drawn by
:mod:`.plots`. The report states measurements only: judging them against a project's targets is
left to whoever sets the targets, from ``speed.json`` and ``summary.json``.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..tables import markdown_table, number, write_table, write_text_atomic
from .quality import NOISY
#: a :class:`.command.Benchmark` after its quality and speed runs (not imported: the command imports this module)
Bench = Any

Row = Dict[str, Any]
_CATEGORY_ORDER = {"-": 0, "denoise": 1, "enhance": 2}


def library_commit() -> Optional[str]:
    """The git commit of this library when it runs from a git checkout that tracks it, else ``None``
    (an installed wheel has no commit; its version is in the report)."""
    here = Path(__file__).resolve().parent
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", Path(__file__).name], cwd=str(here),
                                 capture_output=True, text=True, timeout=10)
        if tracked.returncode != 0:
            return None
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(here), capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(threads: Optional[int] = None) -> Dict[str, Any]:
    """CPU model, cores, torch threads, library versions, GPU name (or ``None``), date and commit."""
    import torch

    from .. import __version__

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
        "lowlightdenoise": __version__,
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:
        info["monai"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    info["git_commit"] = library_commit()
    return info


# ----------------------------------------------------------------------------------------------
# grouped means and table files


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def group_means(rows: List[Row], keys: Sequence[str]) -> List[Row]:
    """Mean PSNR, SSIM, MSE and throughput of benchmark ``rows`` grouped by ``keys``, in first-seen order."""
    groups: Dict[Tuple[Any, ...], List[Row]] = {}
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


def training_time(entry: Dict[str, Any]) -> Optional[str]:
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


def architecture_rows(bench: Bench) -> List[Row]:
    """Per learned model: architecture, parameters, training time, quality and inference speed."""
    from ..errors import LowLightDenoiseError
    from .quality import make_method, network_of

    rows = []
    for name, entry in bench.models.items():
        params = entry.get("parameters")
        arch = entry.get("architecture") or entry.get("arch")
        if params is None:
            try:
                from ..models.networks import count_parameters

                net = network_of(make_method(name, "cpu"))
                params = count_parameters(net) if net is not None else None
            except LowLightDenoiseError:
                params = None
        mine = [r for r in bench.quality if r["method"] == name]
        speed = [r for r in bench.speed if r["method"] == name and not r.get("error")]
        rows.append({
            "model": name, "architecture": arch,
            "spatial_dims": "/".join(f"{d}D" for d in np.atleast_1d(entry.get("spatial_dims") or [])) or None,
            "parameters": params, "training_time": training_time(entry),
            "psnr": _mean(r["psnr"] for r in mine), "ssim": _mean(r["ssim"] for r in mine),
            "quality_mvoxels_per_s": _mean(r["mvoxels_per_s"] for r in mine),
            "speed_mvoxels_per_s": {r["device"]: r["mvoxels_per_s"] for r in speed},
        })
    return rows


def write_tables(bench: Bench) -> Dict[str, Any]:
    """``quality.csv/json``, ``speed.csv/json`` and ``summary.json`` (returned) in the report folder."""
    from .quality import level_parameters

    cfg = bench.config
    out = cfg.out
    for name, rows in (("quality", bench.quality), ("speed", bench.speed)):
        write_table(out / f"{name}.csv", rows)
        write_text_atomic(out / f"{name}.json", json.dumps(rows, indent=1))
    native = [r for r in bench.quality if not r["resized"]]
    low_light = [r for r in native if r["noise"] == "lowlight"]
    levels = sorted(cfg.levels)
    middle = [r for r in bench.quality if r["noise"] == "lowlight" and r["peak"] == levels[len(levels) // 2]]
    summary = {"command": cfg.command, "machine": bench.machine, "data": bench.data_note,
               "scans": [{"name": s.name, "path": str(s.path), "modality": s.modality} for s in bench.scans],
               "methods": bench.methods,
               "degradations": [{"label": lv.label, "kind": lv.columns["noise"], "params": level_parameters(lv)}
                                for lv in bench.levels],
               "by_method_level": group_means(native, ("data", "method", "category", "mode", "degradation")),
               "by_modality": group_means(low_light, ("modality", "method", "category", "mode")),
               "by_resolution": group_means(middle, ("data", "resolution", "method", "category", "mode")),
               "architectures": architecture_rows(bench), "notes": bench.notes}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


# ----------------------------------------------------------------------------------------------
# report.md


def pivot(rows: List[Row], row_keys: Sequence[str], col_key: str, metric: str,
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
            text = number(vals.get(c), digits)
            bold = key[0] != NOISY and vals.get(c) is not None and vals.get(c) == best.get(c)
            cells.append(f"**{text}**" if bold else text)
        body.append([*map(str, key)] + cells)
    return [*row_keys] + [str(c) for c in cols], body


def render_report(bench: Bench) -> str:
    cfg = bench.config
    m = bench.machine
    gpu = m["gpu"] or "none"
    lines = [
        "# LowLightDenoise benchmark report", "",
        f"Command: `{cfg.command}`", "",
        f"Date: {m['date']}; LowLightDenoise {m.get('lowlightdenoise')}, commit {m.get('git_commit') or 'unknown'}.",
        "",
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
        f"gamma 1. Levels: {', '.join(lv.label for lv in bench.levels)}; seed {cfg.seed}.", "",
        "Metrics: `metrics.reference_metrics` against the clean scan, data range = the clean scan's max - min in "
        "physical units; SSIM and PSNR averaged over scans. Methods choose their parameters blind (from the "
        f"engine's noise estimate), as in clinical use. Quality runs on device `{bench.quality_device}`, "
        f"{bench.quality_seconds:.0f} s in all.", "",
    ]
    from ..methods.peers import BM3D_NAME

    if BM3D_NAME in bench.methods:
        lines += [f"`{BM3D_NAME}` is BM3D (`bm3d` package) after the generalised Anscombe transform with the "
                  "engine's estimated noise parameters: a comparison only; its licence forbids shipping it, and "
                  "it is never a dependency.", ""]
    q = bench.summary
    by_level = q["by_method_level"]
    lines += ["## Quality per method and degradation (mean over scans)", "",
              "Volumes and 2D images are averaged apart, so that a method's 2D and 3D modes are compared on the "
              "same scans.", ""]
    for metric, digits in (("psnr", 2), ("ssim", 4), ("mse", 4)):
        for data in dict.fromkeys(r["data"] for r in by_level):
            subset = [r for r in by_level if r["data"] == data]
            scans = ", ".join(s.name for s in bench.scans if any(
                r["scan"] == s.name and r["data"] == data for r in bench.quality))
            header, body = pivot(subset, ("method", "category", "mode"), "degradation", metric, digits)
            lines += [f"### {metric.upper()}" + (" (dB)" if metric == "psnr" else "") + f", {data} ({scans})"
                      + (" (physical units squared: compare within a column only)" if metric == "mse" else ""),
                      "", markdown_table(header, body), ""]
    header, body = pivot(q["by_modality"], ("method", "category", "mode"), "modality", "psnr", 2)
    lines += ["## PSNR (dB) per modality (mean over scans and the photon-limited low-light levels)", "",
              markdown_table(header, body), ""]
    header, body = pivot(q["by_modality"], ("method", "category", "mode"), "modality", "ssim", 4)
    lines += ["## SSIM per modality", "", markdown_table(header, body), ""]
    lines += [f"## PSNR (dB) per image resolution (peak {sorted(cfg.levels)[len(cfg.levels) // 2]:g}, mean over "
              "the scans evaluated at that size; volumes and 2D images apart, as above)", ""]
    for data in dict.fromkeys(r["data"] for r in q["by_resolution"]):
        header, body = pivot([r for r in q["by_resolution"] if r["data"] == data], ("method", "category", "mode"),
                             "resolution", "psnr", 2)
        lines += [f"### {data}", "", markdown_table(header, body), ""]
    arch = q["architectures"]
    lines += ["## Per architecture (learned models)", ""]
    if arch:
        lines.append(markdown_table(
            ["model", "architecture", "dims", "parameters", "training time", "PSNR (dB)", "SSIM",
             "Mvoxel/s (quality runs)", "Mvoxel/s (speed volume)"],
            [[a["model"], a["architecture"] or "-", a["spatial_dims"] or "-", number(a["parameters"]),
              a["training_time"] or "-", number(a["psnr"]), number(a["ssim"], 4),
              number(a["quality_mvoxels_per_s"], 3),
              ", ".join(f"{d}: {number(v, 3)}" for d, v in a["speed_mvoxels_per_s"].items()) or "-"] for a in arch]))
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


def render_speed(bench: Bench) -> List[str]:
    lines = ["## Speed and memory (file to file, one child process per method)", ""]
    if not bench.speed:
        return lines + ["Not measured in this run (see notes).", ""]
    lines += [f"Volume: {' x '.join(map(str, bench.config.speed_shape[::-1]))} voxels (x, y, z) from "
              f"{bench.speed_note}. End to end = load the method + read the file + denoise + "
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
        rows.append([r["method"], r["device"], r["mode"], r["threads"], number(r.get("load_average_1min")),
                     number(r["mvoxels_per_s"], 3), number(r["denoise_s"], 1), number(r["end_to_end_s"], 1),
                     f"{number(r['peak_rss_mb'], 0)} ({number(r['baseline_rss_mb'], 0)})",
                     number(r["peak_gpu_mb"], 0) if r.get("peak_gpu_mb") is not None else "not measured: no GPU"
                     if not r["device"].startswith("cuda") else "-"])
    lines += [markdown_table(["method", "device", "mode", "threads", "load (1 min)", "Mvoxel/s", "denoise s",
                              "end-to-end s", "peak RAM MB (baseline)", "peak GPU MB"], rows), ""]
    if not any(r["device"].startswith("cuda") for r in bench.speed):
        lines += ["GPU: not measured: no GPU on this machine.", ""]
    return lines
