"""Denoise every volume of a folder with LowLightDenoise: the batch path of ``lowlightdenoise batch``.

Works the same in plain Python and in headless Slicer (the extension's library, with Dask installed
into Slicer's Python: ``slicer.util.pip_install("dask[distributed]")``)::

    python examples/batch_denoise_folder.py IN_DIR OUT_DIR --method nlm
    Slicer --no-main-window --python-script examples/batch_denoise_folder.py IN_DIR OUT_DIR --method nlm

Each image file of ``IN_DIR`` (and each DICOM series folder in it) becomes ``OUT_DIR/<name>.<ext>``
with the same geometry, beside a JSON sidecar, and ``OUT_DIR/results.csv`` gets one row per volume
(with ``--reference-dir``: PSNR/SSIM/MSE against the file of the same name there). This is
``LowLightDenoiseLib.batch.run_cohort``, the code of ``lowlightdenoise batch IN_DIR OUT_DIR``: the
volumes run as Dask tasks (a local cluster of worker processes by default, ``--scheduler`` for
another), outputs are written atomically, a rerun skips the volumes already done, and a volume that
fails is recorded with its sentence while the others go on. Exit code: 0 when every volume was
processed, 1 when some failed, 2 for bad arguments, 130 when interrupted.

Inside the Slicer application, the worker processes run Slicer's own Python (``PythonSlicer``)
with the extension's library on their path (``sys.executable`` is the Slicer application there).
"""
import argparse
import os
import sys
from pathlib import Path

try:
    import LowLightDenoiseLib
except ImportError:  # a source checkout run without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import LowLightDenoiseLib
from LowLightDenoiseLib import batch, options
from LowLightDenoiseLib.errors import LowLightDenoiseError


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--method", default=LowLightDenoiseLib.DEFAULT_METHOD,
                        help="any method of 'lowlightdenoise methods' (default: %(default)s, the noise classified "
                             "and the matched method run)")
    parser.add_argument("--mode", default="auto", choices=options.MODES)
    parser.add_argument("--axis", type=int, default=0, choices=options.AXES, help="2D slice axis (k, j, i)")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    parser.add_argument("--strength", type=float, default=None,
                        help=f"0 input unchanged, 1 automatic (default), up to {options.MAX_STRENGTH:g} stronger")
    parser.add_argument("--flips", type=int, default=1, choices=options.FLIP_COUNTS,
                        help="test-time averaging over this many flips/rotations (any method; N times the time)")
    parser.add_argument("--reference-dir", type=Path, default=None, help="clean volumes with the same file names")
    parser.add_argument("--scheduler", default="local", help="local (default), processes or tcp://HOST:PORT")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    parser.add_argument("--force", action="store_true", help="redo the volumes already done")
    return parser.parse_args(argv)


def use_slicer_python():
    """Inside the Slicer application: worker processes start PythonSlicer with this library on their path."""
    slicer = sys.modules.get("slicer")
    app = getattr(slicer, "app", None) if slicer is not None else None
    if app is None:
        return
    import multiprocessing

    from LowLightDenoiseLib.jobs import find_python, job_environment

    multiprocessing.set_executable(find_python(app.slicerHome))
    os.environ.update(job_environment())


def main(argv):
    args = parse_args(argv)
    try:  # every choice is checked before any worker starts
        run = options.RunOptions(mode=args.mode, axis=args.axis, device=args.device, strength=args.strength,
                                 flips=args.flips).validated(resolve=False)
        scans = batch.folder_scans(args.input_dir, method=args.method, options=run, reference_dir=args.reference_dir,
                                   exclude=[args.output_dir])
        cluster = batch.ClusterSettings(scheduler=args.scheduler, workers=args.workers).checked()
        use_slicer_python()
        done = batch.run_cohort(scans, args.output_dir, cluster=cluster, force=args.force,
                                log=lambda message: print(message, file=sys.stderr))
    except LowLightDenoiseError as error:
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    for row in done.failed:
        print(f"{row['scan']}: {row['error']}", file=sys.stderr)
    print(f"Wrote {done.count('done')} volume(s) ({done.count('skipped')} already done, {len(done.failed)} failed) "
          f"and {done.tables[0]}")
    return 1 if done.failed else 0


if __name__ == "__main__":  # worker processes import this file again: only the main process runs it
    sys.exit(main(sys.argv[1:]))
