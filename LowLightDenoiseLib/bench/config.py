"""The benchmark's settings: the command line (:func:`add_arguments`) and the validated :class:`BenchmarkConfig`.

Every location the benchmark reads is given explicitly (``--data``, ``--speed-source``,
``--training-runs``): the library never guesses a folder of a repository or of a developer's machine,
so the command behaves the same from a source checkout and from an installed wheel.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import InputError

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
QUICK_LEVEL = 100.0
SPEED_SHAPE = (300, 512, 512)
QUICK_SPEED_SHAPE = (24, 96, 96)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``lowlightdenoise benchmark``."""
    parser.add_argument("--data", default=None,
                        help="folder of evaluation scans (any format io.read_volume reads, or prepared NAME.npy + "
                             "NAME.json scans); a splits.json in it or beside it selects its test split. Required.")
    parser.add_argument("--methods", default="all",
                        help="comma-separated method names, or all | classical | learned | denoisers "
                             "(default: all; bm3d-vst is added to 'all' when the bm3d package is importable)")
    parser.add_argument("--levels", default=default_levels_text(),
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
                        help="CI smoke run: small crops, a few fast methods, one level, the first two scans, "
                             "small speed volume")
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
                        help="run the speed and memory part (default; needs --speed-source)")
    parser.add_argument("--no-speed", dest="speed", action="store_false", help="skip the speed and memory part")
    parser.add_argument("--speed-methods", default="",
                        help="methods for the speed part (default: the quality methods)")
    parser.add_argument("--speed-shape", default="",
                        help="z,y,x of the speed volume (default 300,512,512; quick: 24,96,96)")
    parser.add_argument("--speed-source", default="",
                        help="CT volume the speed volume is built from (cropped or padded in-plane, extended "
                             "along z by mirror reflection); required unless --no-speed")
    parser.add_argument("--speed-devices", default="auto",
                        help="devices for the speed part: auto (cpu, plus cuda when present) or a list")
    parser.add_argument("--speed-timeout", type=float, default=1800.0,
                        help="seconds one method may take in the speed part before it is stopped (default 1800)")
    parser.add_argument("--training-runs", default="",
                        help="folders searched for the shipped models' training curves, comma-separated: CSV "
                             "files with a loss column named <model>-<version>.csv, as the training code's "
                             "export keeps them (default: none)")
    parser.add_argument("--no-figures", dest="figures", action="store_false", default=True, help="skip the figures")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def default_levels_text() -> str:
    return ",".join(f"{v:g}" for v in DEFAULT_LEVELS)


def csv_list(text: str) -> List[str]:
    return [t.strip() for t in str(text or "").split(",") if t.strip()]


def parse_shape(text: str) -> Tuple[int, int, int]:
    parts = csv_list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"A volume shape must be three integers z,y,x, not {text!r}.") from None
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"A volume shape must be three positive integers z,y,x, not {text!r}.")
    return shape  # type: ignore[return-value]


@dataclasses.dataclass
class BenchmarkConfig:
    """Validated benchmark settings (built from the command line or by a script; see :meth:`check`)."""

    out: Path
    data: Path
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
    training_runs: Tuple[Path, ...] = ()
    figures: bool = True
    quiet: bool = False
    command: str = ""

    def check(self) -> "BenchmarkConfig":
        """Refuse missing locations before any work, one sentence each; returns ``self``."""
        if self.data is None or not str(self.data):
            raise InputError("Give the folder of evaluation scans with --data DIR (the benchmark has no default data).")
        if not Path(self.data).exists():
            raise InputError(f"The data folder {self.data} does not exist.")
        if self.speed:
            if self.speed_source is None or not str(self.speed_source):
                raise InputError("Give the CT volume the speed volume is built from with --speed-source FILE, "
                                 "or skip the speed part with --no-speed.")
            if not Path(self.speed_source).is_file():
                raise InputError(f"The speed source {self.speed_source} does not exist.")
        for folder in self.training_runs:
            if not Path(folder).is_dir():
                raise InputError(f"The training-run folder {folder} does not exist.")
        return self

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "BenchmarkConfig":
        try:
            levels = tuple(float(v) for v in csv_list(args.levels))
        except ValueError:
            raise InputError(f"--levels must be numbers (peak photon counts), not {args.levels!r}.") from None
        if not levels or min(levels) <= 0:
            raise InputError("--levels needs at least one positive peak photon count.")
        noise = tuple(csv_list(args.noise))
        unknown = [n for n in noise if n not in EXTRA_NOISE]
        if unknown:
            raise InputError(f"Unknown noise type {unknown[0]!r}; choose from {', '.join(sorted(EXTRA_NOISE))}.")
        modes = tuple(m.lower() for m in csv_list(args.modes))
        if not modes or any(m not in ("2d", "3d") for m in modes):
            raise InputError(f"--modes takes 2d and/or 3d, not {args.modes!r}.")
        try:
            resolutions = tuple(int(v) for v in csv_list(args.resolutions))
        except ValueError:
            raise InputError(f"--resolutions must be integers, not {args.resolutions!r}.") from None
        if any(r < 16 for r in resolutions):
            raise InputError("--resolutions must be at least 16 pixels.")
        quick = bool(args.quick)
        methods = args.methods
        if quick and methods == "all":
            methods = ",".join(QUICK_METHODS)
        speed_shape = parse_shape(args.speed_shape) if args.speed_shape else (
            QUICK_SPEED_SHAPE if quick else SPEED_SHAPE)
        if args.read_noise < 0:
            raise InputError("--read-noise must not be negative.")
        config = cls(
            out=Path(args.out), data=Path(args.data) if args.data else None, methods=methods,  # type: ignore[arg-type]
            levels=(QUICK_LEVEL,) if quick and args.levels == default_levels_text() else levels,
            read_noise=float(args.read_noise), noise=noise, modes=modes, device=args.device, quick=quick,
            max_slices=8 if quick else max(0, int(args.max_slices)),
            crop=128 if quick else max(0, int(args.crop)), resolutions=resolutions, seed=int(args.seed),
            threads=max(0, int(args.threads)), speed=bool(args.speed), speed_methods=args.speed_methods,
            speed_shape=speed_shape, speed_source=Path(args.speed_source) if args.speed_source else None,
            speed_devices=args.speed_devices, speed_timeout=float(args.speed_timeout),
            training_runs=tuple(Path(p) for p in csv_list(args.training_runs)),
            figures=bool(args.figures), quiet=bool(args.quiet), command=command_line(),
        )
        return config.check()


def command_line() -> str:
    """The command as typed (for the report's first line)."""
    path = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("lowlightdenoise")
    prog = path.name
    if prog == "__main__.py":  # python -m LowLightDenoiseLib benchmark, or python -m LowLightDenoiseLib.bench
        prog = "python -m LowLightDenoiseLib" + ("" if path.parent.name == "LowLightDenoiseLib" else ".bench")
    return " ".join([prog] + [shlex.quote(a) for a in sys.argv[1:]])
