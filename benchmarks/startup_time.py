"""Wall time of whole `lowlightdenoise` processes on the shipped CT crop: start-up included.

    python benchmarks/startup_time.py [--repeats 5] [--out reports/startup.md]

Each command runs as a fresh process ``--repeats`` times (interleaved, so a busy moment of a shared
machine hits every command alike); the table gives the median and the best. The reference is what
any Python program that reads and filters an image pays: ``import numpy, scipy.ndimage, SimpleITK``.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CROP = REPO / "Testing" / "Data" / "ct_chest_crop.nrrd"


def commands(out_dir: Path) -> dict:
    lld = [sys.executable, "-m", "LowLightDenoiseLib"]
    return {
        "python -c 'import numpy, scipy.ndimage, SimpleITK' (reference)":
            [sys.executable, "-c", "import numpy, scipy.ndimage, SimpleITK"],
        "lowlightdenoise --help": lld + ["--help"],
        "lowlightdenoise denoise crop --method gaussian": lld + ["denoise", str(CROP), str(out_dir / "g.nrrd"),
                                                              "--method", "gaussian", "-q", "--overwrite"],
        "lowlightdenoise denoise crop --method tv": lld + ["denoise", str(CROP), str(out_dir / "t.nrrd"),
                                                         "--method", "tv", "-q", "--overwrite"],
        "lowlightdenoise denoise crop (default-2d)": lld + ["denoise", str(CROP), str(out_dir / "d.nrrd"),
                                                          "--device", "cpu", "-q", "--overwrite"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = parser.parse_args(argv)
    times: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(Path(tmp))
        for _ in range(args.repeats):
            for name, cmd in cmds.items():
                t0 = time.perf_counter()
                done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
                elapsed = time.perf_counter() - t0
                if done.returncode != 0:
                    raise SystemExit(f"{name} failed: {done.stderr.strip()}")
                times.setdefault(name, []).append(elapsed)
    base = statistics.median(next(iter(times.values())))
    lines = [
        "# Start-up: whole `lowlightdenoise` processes on the 96 x 96 x 12 CT crop",
        "",
        f"`python benchmarks/startup_time.py --repeats {args.repeats}` on {platform.node() or 'this machine'} "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d')}. Wall time of each process from start to exit, median and best of "
        f"{args.repeats} interleaved runs.",
        "",
        "| command | median (s) | best (s) | median / reference |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        med = statistics.median(values)
        lines.append(f"| {name} | {med:.2f} | {min(values):.2f} | {med / base:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
