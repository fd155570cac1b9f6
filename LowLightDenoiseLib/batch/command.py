"""``lowlightdenoise batch MANIFEST OUT_DIR``: its arguments (:func:`add_arguments`) and :func:`run`.

Exit codes: 0 every scan done (or already done), 1 some scans failed (the table says why), 2 a user
error before anything ran (one sentence), 130 interrupted (the table so far is written).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, List

from .. import DEFAULT_METHOD
from ..errors import InputError
from ..options import AXES, FLIP_COUNTS, MAX_STRENGTH, MODES, RunOptions
from .cluster import ClusterSettings
from .manifest import DEFAULT_REFERENCE_COLUMN

DESCRIPTION = ("Denoise every scan of a manifest (CSV) or folder into OUT_DIR on a Dask cluster: one output and "
               "one JSON sidecar per scan, one results table; a rerun skips the scans already done.")
MANIFEST_NAME = "manifest.csv"
#: failures listed on stderr at the end (all of them are in the table)
SHOWN_FAILURES = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", metavar="MANIFEST",
                   help="CSV with an 'input' column (files or DICOM folders), optional 'reference', 'name' and "
                        "per-row option columns (method, mode, axis, strength, flips, seed); or a folder, whose "
                        f"image files and DICOM series folders make the manifest (written to OUT_DIR/{MANIFEST_NAME})")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder of the outputs, their sidecars and the results table")
    p.add_argument("--method", default=DEFAULT_METHOD,
                   help=f"method for every row without its own (see 'lowlightdenoise methods'; default {DEFAULT_METHOD})")
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="2d: slice by slice along --axis; 3d: whole volume; auto: the method's choice (default)")
    p.add_argument("--axis", type=int, choices=AXES, default=0, help="slice axis for 2D mode, in array order (default 0)")
    p.add_argument("--device", default="auto", help="auto (GPU when the worker has one), cuda, cuda:N or cpu")
    p.add_argument("--strength", type=float, default=None,
                   help=f"1 the automatic strength (default), 0 the input unchanged, up to {MAX_STRENGTH:g} stronger")
    p.add_argument("--flips", type=int, choices=FLIP_COUNTS, default=1,
                   help="test-time averaging over this many in-plane flips/rotations (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed for methods with randomness (default 0)")
    p.add_argument("--calibrate", action="store_true",
                   help="classical denoisers choose their strength by self-calibration (J-invariance)")
    p.add_argument("--reference-column", default=None, metavar="COLUMN",
                   help=f"the manifest column of clean references (default '{DEFAULT_REFERENCE_COLUMN}' when present): "
                        "adds PSNR/SSIM/MSE")
    p.add_argument("--data-range", type=float, default=None,
                   help="data range L for PSNR/SSIM (default: each reference's max - min)")
    p.add_argument("--force-reference", action="store_true",
                   help="measure against a reference on another voxel grid (a warning instead of a failure)")
    p.add_argument("--format", default=None, metavar="EXT",
                   help="file type of every output (e.g. nrrd, nii.gz, mha); default: the input's (NRRD for DICOM)")
    p.add_argument("--dtype", default=None, help="pixel type of the outputs (default: the input's when values fit)")
    p.add_argument("--scheduler", default="local",
                   help="local: a Dask cluster of worker processes on this machine (default); processes: Dask's "
                        "local process pool; tcp://HOST:PORT: a running Dask scheduler (e.g. on SLURM/PBS)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes of the local cluster (default: one per core / --threads-per-worker)")
    p.add_argument("--threads-per-worker", type=int, default=None,
                   help="scans one local worker runs at once (default 1)")
    p.add_argument("--memory-limit", default=None, metavar="SIZE",
                   help="memory limit of each local worker, e.g. 4GB (default: the machine's memory shared out); "
                        "a worker past it is restarted and its scan retried elsewhere")
    p.add_argument("--retries", type=int, default=None, metavar="N",
                   help="local cluster: how often a scan whose worker died (out of memory, killed) runs again on "
                        "another worker before it counts as failed (default 3)")
    p.add_argument("--gpus", type=int, default=0, metavar="N",
                   help="run on GPUs, one scan per GPU at a time: local: N workers, one per GPU; tcp://: every task "
                        "asks for the Dask resource GPU=1 (start GPU workers with --resources GPU=1)")
    p.add_argument("--force", action="store_true", help="run every scan again, even those already done")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or messages (the summary still prints)")


def _info(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


def scans_of(args: argparse.Namespace, options: RunOptions) -> List[Any]:
    """The manifest's scans, or a folder's (then also written to OUT_DIR/manifest.csv)."""
    from .manifest import folder_scans, read_manifest, write_manifest

    source = Path(args.manifest)
    method = args.method
    if isinstance(method, str) and method.strip().lower().endswith(".safetensors"):
        method = str(Path(method.strip()).resolve())  # a weights file: the workers may start in another folder
    if not source.exists():
        raise InputError(f"The manifest {source} does not exist.")
    if not source.is_dir():
        return read_manifest(source, method=method, options=options, reference_column=args.reference_column)
    if args.reference_column is not None:
        raise InputError("--reference-column needs a manifest CSV; a folder has no references.")
    out = Path(args.out_dir)
    scans = folder_scans(source, method=method, options=options, exclude=[out])
    out.mkdir(parents=True, exist_ok=True)
    written = write_manifest(out / MANIFEST_NAME, scans)
    _info(args, f"{len(scans)} scan(s) found in {source}; manifest written to {written}.")
    return scans


def run(args: argparse.Namespace) -> int:
    """Run the batch command; the exit code (see the module text)."""
    from .runner import run_cohort

    options = RunOptions(mode=args.mode, axis=args.axis, device=args.device, strength=args.strength, seed=args.seed,
                         flips=args.flips).validated(resolve=False)
    cluster = ClusterSettings(scheduler=args.scheduler, workers=args.workers, threads_per_worker=args.threads_per_worker,
                              memory_limit=args.memory_limit, gpus=args.gpus, retries=args.retries,
                              quiet=args.quiet).checked()
    if args.gpus and options.device == "cpu":
        raise InputError("--gpus runs the scans on GPUs; drop --device cpu (or --gpus).")
    scans = scans_of(args, options)
    done = run_cohort(scans, args.out_dir, cluster=cluster, fmt=args.format, dtype=args.dtype,
                      data_range=args.data_range, force_reference=args.force_reference, calibrate=args.calibrate,
                      force=args.force, log=lambda m: _info(args, m), progress=not args.quiet and sys.stderr.isatty())
    failed = done.failed
    for row in failed[:SHOWN_FAILURES]:
        print(f"{row['scan']}: {row.get('error')}", file=sys.stderr)
    if len(failed) > SHOWN_FAILURES:
        print(f"... and {len(failed) - SHOWN_FAILURES} more failed scan(s) in {done.tables[0]}", file=sys.stderr)
    print(f"{done.count('done')} done, {done.count('skipped')} already done, {len(failed)} failed, "
          f"of {len(done.rows)} scan(s); results: {', '.join(str(t) for t in done.tables)}")
    return 1 if failed else 0
