"""The benchmark's speed and memory part: each method file -> denoise -> file in its own child process.

A CT-sized volume is built from a real CT (``--speed-source``: cropped or padded in-plane, extended
along z by mirror reflection) and written to a file; each method then runs in a fresh Python process
(``python -m LowLightDenoiseLib.bench.speed SPEC``), so that the child's peak resident memory
(``VmHWM``, or ``ru_maxrss`` off Linux) belongs to that method alone. On a GPU the run is timed with
``torch.cuda.synchronize`` and the peak memory is ``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..volume import Volume
from .config import csv_list

CHILD_MODULE = "LowLightDenoiseLib.bench.speed"


def speed_devices(spec: str) -> List[str]:
    """``auto`` -> cpu, plus cuda when present; otherwise the listed devices, checked."""
    import torch

    if spec == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    devices = csv_list(spec)
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
    from .. import io
    from .scans import load_scan

    vol = load_scan(source)
    a = vol.array
    z, y, x = shape
    ys = max(0, (a.shape[1] - y) // 2)
    xs = max(0, (a.shape[2] - x) // 2)
    a = a[:, ys:ys + y, xs:xs + x]
    how = f"`{Path(source).name}` ({' x '.join(map(str, vol.array.shape[::-1]))} x,y,z)"
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


def child_environment(threads: int) -> Dict[str, str]:
    """The child's environment: this interpreter's import path (so that it runs this very library,
    installed or not, as :mod:`multiprocessing` does) and, with ``threads``, ``OMP_NUM_THREADS``."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_speed_child(method: str, input_path: Path, output_path: Path, device: str, threads: int,
                    timeout: float) -> Dict[str, Any]:
    """Run one method file -> file in a fresh Python process and return its timings and peak memory."""
    spec = {"method": method, "input": str(Path(input_path).resolve()),
            "output": str(Path(output_path).resolve()), "device": device, "threads": threads}
    base = {"method": method, "device": device}
    try:
        proc = subprocess.run([sys.executable, "-m", CHILD_MODULE, json.dumps(spec)], capture_output=True,
                              text=True, timeout=timeout, env=child_environment(threads))
    except subprocess.TimeoutExpired:
        return dict(base, error=f"stopped after {timeout:g} s")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(base, error=f"exit code {proc.returncode}: {tail}")
    return dict(base, **json.loads(lines[-1]))


def run_speed(source: Path, shape: Tuple[int, int, int], names: Sequence[str], devices: Sequence[str],
              work: Path, threads: int, timeout: float,
              log: Optional[Callable[[str], None]] = None) -> Tuple[List[Dict[str, Any]], str]:
    """Build the speed volume in ``work`` (removed afterwards) and time every method on every device.

    Returns one row per (device, method), in that order, and how the volume was made.
    """
    say = log or (lambda _m: None)
    rows: List[Dict[str, Any]] = []
    work.mkdir(parents=True, exist_ok=True)
    try:
        path, how = build_speed_volume(source, shape, work / "speed_input.nrrd")
        say(f"speed volume: {how}")
        for device in devices:
            for name in names:
                row = run_speed_child(name, path, work / f"out_{device}.nrrd", device, threads, timeout)
                row["shape"] = " x ".join(str(s) for s in shape)
                rows.append(row)
                if row.get("error"):
                    say(f"speed {name} on {device}: {row['error']}")
                else:
                    say(f"speed {name} on {device}: {row['mvoxels_per_s']:.3f} Mvoxel/s, "
                        f"end to end {row['end_to_end_s']:.1f} s, peak RAM {row['peak_rss_mb']:.0f} MB")
    finally:
        for p in sorted(work.glob("*")):
            p.unlink()
        work.rmdir()
    return rows, how


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

    from .. import io
    from ..pipeline import denoise_volume
    from .quality import make_method

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = spec["device"]
    cuda = device.startswith("cuda")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    method = make_method(spec["method"], device)
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


def child_main(argv: Sequence[str]) -> int:
    """``python -m LowLightDenoiseLib.bench.speed SPEC``: print the child's measurements as one JSON line."""
    if len(argv) != 1:
        print(f"usage: python -m {CHILD_MODULE} '{{\"method\": ..., \"input\": ..., \"output\": ..., "
              "\"device\": ..., \"threads\": ...}'", file=sys.stderr)
        return 2
    print(json.dumps(speed_child(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
