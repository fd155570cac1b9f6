"""The ``lowlightdenoise`` command line (also ``python -m LowLightDenoiseLib``).

Subcommands: ``denoise``, ``simulate``, ``estimate-noise``, ``evaluate``, ``compare``,
``models list|download|verify|import`` and ``benchmark``. Every user error (a missing or unreadable
file, a 4D image, NaN values, a constant image, an image too small for the method, a model that is
not available, an output that exists or is the input) ends with one line
``lowlightdenoise: error: <sentence>`` on stderr and exit code 2, and nothing is written: outputs
are written only after the computation finished, atomically (``io.write_volume``).
Progress bars go to stderr, only on a terminal and not with ``--quiet``.
"""
from __future__ import annotations

import argparse
import csv
import io as _stdio
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import DEFAULT_METHOD, __version__
from .errors import InputError, LowLightDenoiseError

PROG = "lowlightdenoise"
NOISE_TYPES = ("lowlight", "gaussian", "salt_pepper", "speckle", "rician", "correlated_gaussian")
#: Command-line flag -> degradation parameter (only the flags a user gives are passed on).
DEGRADATION_FLAGS = {"brightness": "brightness", "gamma": "gamma", "peak": "peak", "read_noise": "read_noise",
                     "sigma": "sigma", "amount": "amount", "salt_fraction": "salt_fraction", "length": "length"}
METRIC_FORMATS = {"psnr": ".2f", "ssim": ".4f", "ssim_3d": ".4f", "edge_preservation": ".4f",
                  "noise_reduction": ".2f", "contrast_improvement": ".3f", "seconds": ".2f"}


class UsageError(LowLightDenoiseError):
    """A command-line syntax error (argparse), reported like every other user error."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line through :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help').")


class _Console:
    """Messages to stderr and a tqdm progress bar, both silent with ``--quiet``."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bars = not quiet and sys.stderr.isatty()

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)

    def progress(self, title: str) -> "_ProgressBar":
        return _ProgressBar(title, enabled=self.bars)


class _ProgressBar:
    """A ``progress(fraction, message)`` callable drawing a tqdm bar on stderr (0-100 %)."""

    def __init__(self, title: str, enabled: bool) -> None:
        self.title = title
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> "_ProgressBar":
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=self.title, file=sys.stderr, leave=False, unit="%",
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
        return self

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.bar is not None:
            self.bar.n = round(100.0 * min(max(fraction, 0.0), 1.0), 1)
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.refresh()

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------------
# tables: text, CSV, JSON


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
        return format(value, METRIC_FORMATS.get(key, ".4g"))
    return str(value)


def _columns(rows: Sequence[Dict[str, Any]]) -> List[str]:
    cols: List[str] = []
    for row in rows:
        cols.extend(k for k in row if k not in cols)
    return cols


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Rows as an aligned plain-text table (``-`` where a value is missing or undefined)."""
    cols = _columns(rows)
    cells = [[_cell(c, row.get(c)) for c in cols] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """JSON/CSV-safe value: infinite floats become the strings ``inf``/``-inf``, NaN becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def table_text(rows: Sequence[Dict[str, Any]], fmt: str) -> str:
    """Rows as ``csv`` (header + one line per row, empty cells for missing values) or ``json`` (a list)."""
    if fmt == "json":
        return json.dumps([_plain(dict(r)) for r in rows], indent=2) + "\n"
    buf = _stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else _plain(v)) for k, v in row.items()})
    return buf.getvalue()


def _table_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InputError(f"The table file {path} must end in .csv or .json.")
    return suffix[1:]


def _check_new_file(path: str, overwrite: bool, what: str = "The output file") -> None:
    """Refuse early (before any computation) an output that exists or whose folder is missing."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise InputError(f"{what} {path} already exists; use --overwrite to replace it.")
    if p.is_dir():
        raise InputError(f"{what} {path} is a folder.")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"The folder {parent} of {path} does not exist.")


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent or "."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _emit_table(rows: List[Dict[str, Any]], csv_path: Optional[str], json_path: Optional[str],
                overwrite: bool) -> None:
    """Print the table to stdout and write the requested CSV/JSON files (``-`` = stdout)."""
    print(format_table(rows))
    for path, fmt in ((csv_path, "csv"), (json_path, "json")):
        if path == "-":
            sys.stdout.write(table_text(rows, fmt))
        elif path:
            write_text_atomic(path, table_text(rows, fmt))


# --------------------------------------------------------------------------------------------------
# shared helpers


def _read(path: str):
    from .io import read_volume

    return read_volume(path)


def _check_output_volume_path(input_path: Optional[str], output_path: str, overwrite: bool) -> None:
    from .io import same_file, supported_extensions

    if input_path is not None and os.path.exists(output_path) and same_file(input_path, output_path):
        raise InputError(f"The output {output_path} is the input file; choose another output name.")
    name = Path(output_path).name.lower()
    exts = supported_extensions(write=True)
    if not any(name.endswith(e.lower()) for e in exts):
        raise InputError(f"Cannot write {output_path}: unsupported file type; use one of {', '.join(exts)}.")
    _check_new_file(output_path, overwrite)


def _same_size(a, b, what_a: str, what_b: str) -> None:
    if a.array.shape != b.array.shape:
        raise InputError(f"The {what_a} (shape {a.array.shape}) and the {what_b} (shape {b.array.shape}) "
                         "differ in size.")


def _metric_row(input_vol, output_vol, reference_vol, data_range: Optional[float], axis: int,
                lead: Dict[str, Any]) -> Dict[str, Any]:
    """``lead`` columns, then reference metrics (when a reference exists), then no-reference figures."""
    from .metrics import no_reference_metrics, reference_metrics

    row: Dict[str, Any] = dict(lead)
    if reference_vol is not None:
        row.update(reference_metrics(output_vol, reference_vol, data_range, axis=axis))
    row.update(no_reference_metrics(input_vol, output_vol, axis=axis))
    return row


def _input_row(input_vol, reference_vol, data_range: Optional[float], axis: int,
               lead: Dict[str, Any]) -> Dict[str, Any]:
    """The noisy input against the reference: the baseline every output row is compared with."""
    from .metrics import reference_metrics

    row: Dict[str, Any] = dict(lead)
    row.update(reference_metrics(input_vol, reference_vol, data_range, axis=axis))
    return row


# --------------------------------------------------------------------------------------------------
# subcommands


def _learned_with_ensemble(name: str, device: str, ensemble: int, refuse_classical: bool = False) -> Any:
    """The method ``name`` with test-time averaging over ``ensemble`` flips/rotations when it is a learned model;
    a classical method as it is, or refused when ``refuse_classical``."""
    from .methods import classical_method_names, get_method
    from .pipeline import resolve_device

    if name in classical_method_names():
        if refuse_classical:
            raise InputError(f"--ensemble applies to learned models only; {name!r} is a classical method.")
        return get_method(name)
    return get_method(name, device=resolve_device(device), ensemble=ensemble)


def _ensemble_column(method: Any) -> Dict[str, Any]:
    """``{"ensemble": N}`` for a learned model averaged over N flips/rotations, else nothing (tables stay as they were)."""
    n = int(getattr(getattr(method, "settings", None), "ensemble", 1) or 1)
    return {"ensemble": n} if n > 1 else {}


def cmd_denoise(args: argparse.Namespace, console: _Console) -> int:
    from .io import write_volume
    from .pipeline import denoise_volume

    _check_output_volume_path(args.input, args.output, args.overwrite)
    fmt = _table_format(args.metrics) if args.metrics else None
    if args.metrics:
        _check_new_file(args.metrics, args.overwrite, "The metrics file")
    volume = _read(args.input)
    reference = _read(args.reference) if args.reference else None
    if reference is not None:
        _same_size(volume, reference, "input", "reference")
    method = args.method or DEFAULT_METHOD
    if args.ensemble != 1:
        method = _learned_with_ensemble(method, args.device, args.ensemble, refuse_classical=True)
    with console.progress(f"denoise ({getattr(method, 'name', method)})") as bar:
        result = denoise_volume(volume, method, mode=args.mode, axis=args.axis, device=args.device,
                                strength=args.strength, progress=bar, seed=args.seed)
    rows: List[Dict[str, Any]] = []
    if reference is not None or args.metrics:
        if reference is not None:
            rows.append(_input_row(volume, reference, args.data_range, args.axis,
                                   {"image": "input", "method": "(none)", "mode": None, "device": None,
                                    "seconds": None}))
        rows.append(_metric_row(volume, result.volume, reference, args.data_range, args.axis,
                                dict({"image": "output", "method": result.method, "mode": result.mode,
                                      "device": result.device, "seconds": result.seconds}, **_ensemble_column(method))))
    write_volume(result.volume, args.output, overwrite=args.overwrite, dtype=args.dtype)
    if args.metrics:
        write_text_atomic(args.metrics, table_text(rows, fmt or "csv"))
    console.info(f"Wrote {args.output} ({result.method}, {result.mode}, {result.device}, "
                 f"{result.seconds:.2f} s).")
    if rows:
        print(format_table(rows))
    return 0


def _degradation_from_args(args: argparse.Namespace):
    from .degrade import make_degradation

    params = {p: getattr(args, flag) for flag, p in DEGRADATION_FLAGS.items() if getattr(args, flag) is not None}
    return make_degradation(args.noise, **params)


def cmd_simulate(args: argparse.Namespace, console: _Console) -> int:
    from .degrade import simulate_volume
    from .io import write_volume

    _check_output_volume_path(args.input, args.output, args.overwrite)
    degradation = _degradation_from_args(args)
    volume = _read(args.input)
    degraded = simulate_volume(volume, degradation, seed=args.seed)
    write_volume(degraded, args.output, overwrite=args.overwrite, dtype=args.dtype)
    console.info(f"Wrote {args.output} ({degradation.describe()}, seed {args.seed}).")
    return 0


def noise_report(volume) -> List[Dict[str, Any]]:
    """Per channel: sigma and Poisson-Gaussian (a, b) in normalised and physical units, and the noise type.

    Physical units follow from the engine's normalisation ``x = (X - low) / scale``: ``sigma_X =
    scale * sigma_x`` and ``var_X(X) = a * scale * X + (b * scale**2 - a * scale * low)``.
    """
    from . import noise as noise_mod
    from .normalize import Normalizer
    from .volume import validate_values

    validate_values(volume.array)
    rows = []
    for c in range(volume.channels):
        chan = volume.array[..., c] if volume.is_color else volume.array
        norm = Normalizer.fit(chan)
        x = norm.forward(chan)
        prof = noise_mod.estimate_noise(x)
        cls = noise_mod.classify_noise(x)
        s, lo = norm.scale, norm.low
        rows.append({
            "channel": c,
            "sigma": prof.sigma * s,
            "a": prof.a * s,
            "b": prof.b * s * s - prof.a * s * lo,
            "sigma_normalized": prof.sigma,
            "a_normalized": prof.a,
            "b_normalized": prof.b,
            "normalization_low": lo,
            "normalization_high": norm.high,
            "noise_type": cls.label,
            "probabilities": {k: float(v) for k, v in dict(cls.probabilities).items()},
        })
    return rows


def cmd_estimate_noise(args: argparse.Namespace, console: _Console) -> int:
    volume = _read(args.input)
    rows = noise_report(volume)
    if args.json:
        print(json.dumps(_plain({"file": args.input, "units": volume.metadata.get("units"), "channels": rows}),
                         indent=2))
        return 0
    units = volume.metadata.get("units") or "image units"
    print(f"{args.input}: {'x'.join(map(str, volume.array.shape))}")
    for r in rows:
        head = f"channel {r['channel']}: " if volume.channels > 1 else ""
        probs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["probabilities"].items(), key=lambda kv: -kv[1]))
        print(f"{head}noise sigma {r['sigma']:.4g} {units} ({r['sigma_normalized']:.4g} normalised)")
        print(f"{head}Poisson-Gaussian variance = a*x + b: a = {r['a']:.4g}, b = {r['b']:.4g} ({units}); "
              f"normalised a = {r['a_normalized']:.4g}, b = {r['b_normalized']:.4g}")
        print(f"{head}noise type: {r['noise_type']} ({probs})")
    return 0


def cmd_evaluate(args: argparse.Namespace, console: _Console) -> int:
    from .metrics import no_reference_metrics, noise_sigma, reference_metrics

    for path in (args.csv, args.json):
        if path and path != "-":
            _check_new_file(path, args.overwrite, "The table file")
    reference = _read(args.reference)
    source = _read(args.input) if args.input else None
    if source is not None:
        _same_size(source, reference, "input", "reference")
    rows = []
    for path in args.outputs:
        out = _read(path)
        _same_size(out, reference, f"image {path}", "reference")
        row: Dict[str, Any] = {"image": path}
        row.update(reference_metrics(out, reference, args.data_range, axis=args.axis))
        if source is not None:
            row.update(no_reference_metrics(source, out, axis=args.axis))
        else:
            row["noise_sigma"] = noise_sigma(out.array, channel_axis=-1 if out.is_color else None)
        rows.append(row)
    _emit_table(rows, args.csv, args.json, args.overwrite)
    return 0


def _output_name(input_path: str, method: str, out_dir: str, ext: Optional[str]) -> str:
    """``OUT_DIR/<input stem>_<method><ext>``: the input's file type, NRRD for DICOM input, or ``ext``."""
    from .io import file_format, supported_extensions

    name = Path(input_path.rstrip("/\\")).name
    lower = name.lower()
    suffix = next((e for e in sorted(supported_extensions(), key=len, reverse=True) if lower.endswith(e.lower())), "")
    stem = name[: len(name) - len(suffix)] if suffix else name
    if ext:
        suffix = ext if ext.startswith(".") else "." + ext
    elif not suffix or file_format(name) == "dicom":
        suffix = ".nrrd"
    return str(Path(out_dir) / f"{stem}_{method}{suffix}")


def cmd_compare(args: argparse.Namespace, console: _Console) -> int:
    from .io import write_volume
    from .methods import get_method, list_methods
    from .pipeline import denoise_volume, resolve_device

    if args.methods:
        names = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:
        names = [d["name"] for d in list_methods() if d.get("kind") == "classical" and d.get("category") == "denoise"]
    if not names:
        raise InputError("Give at least one method with --methods.")
    for path in (args.csv, args.json):
        if path and path != "-":
            _check_new_file(path, args.overwrite, "The table file")
    outputs: Dict[str, str] = {}
    if args.output_dir:
        if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
            raise InputError(f"The output folder {args.output_dir} is a file.")
        for name in names:
            outputs[name] = _output_name(args.input, name, args.output_dir, args.format)
            if os.path.isdir(args.output_dir):
                _check_output_volume_path(args.input, outputs[name], args.overwrite)
    volume = _read(args.input)
    reference = _read(args.reference) if args.reference else None
    if reference is not None:
        _same_size(volume, reference, "input", "reference")
    device = resolve_device(args.device)
    # unknown or unavailable methods fail before any work; --ensemble applies to the learned ones
    methods = [_learned_with_ensemble(n, device, args.ensemble) if args.ensemble != 1 else get_method(n, device=device)
               for n in names]
    rows: List[Dict[str, Any]] = []
    if reference is not None:
        rows.append(_input_row(volume, reference, args.data_range, args.axis, {"method": "(input)", "mode": None, "seconds": None}))
    results = []
    for i, method in enumerate(methods):
        with console.progress(f"[{i + 1}/{len(methods)}] {method.name}") as bar:
            result = denoise_volume(volume, method, mode=args.mode, axis=args.axis, device=device,
                                    strength=args.strength, progress=bar)
        rows.append(_metric_row(volume, result.volume, reference, args.data_range, args.axis,
                                dict({"method": result.method, "mode": result.mode, "seconds": result.seconds},
                                     **_ensemble_column(method))))
        results.append((method.name, result))
    if outputs:
        os.makedirs(args.output_dir, exist_ok=True)
        for name, result in results:
            write_volume(result.volume, outputs[name], overwrite=args.overwrite, dtype=args.dtype)
            console.info(f"Wrote {outputs[name]}")
    _emit_table(rows, args.csv, args.json, args.overwrite)
    return 0


def cmd_models(args: argparse.Namespace, console: _Console) -> int:
    from . import registry

    if args.models_command == "list":
        models = registry.describe_models()
        if args.json:
            print(json.dumps(_plain(models), indent=2, default=str))
            return 0
        if not models:
            print(f"No models are registered in {registry.registry_path()}.")
            return 0
        rows = [{"name": d["name"], "version": d.get("version"),
                 "dims": ",".join(f"{n}D" for n in d.get("spatial_dims", [])),
                 "category": d.get("category"), "modalities": ",".join(d.get("modalities") or []) or None,
                 "size_mb": (d["size"] / 1e6) if d.get("size") else None,
                 "installed": "yes" if d.get("installed") else "no", "title": d.get("title")} for d in models]
        print(format_table(rows))
        return 0
    if args.models_command == "download":
        names = registry.registered_names() if args.all else args.names
        if not names:
            raise InputError("Name the models to download, or use --all.")
        for name in names:
            with console.progress(f"download {name}") as bar:
                path = registry.download_model(name, progress=bar)
            console.info(f"{name}: {path}")
        return 0
    if args.models_command == "verify":
        names = args.names or registry.registered_names()
        bad = []
        for name in names:
            status = registry.verify_model(name)
            print(status.message)
            entry = registry.get_entry(name)
            has_copy = any((folder / entry.file).is_file() for _, folder in registry.search_dirs())
            if not status.installed and (args.names or has_copy):
                bad.append(name)
        if bad:
            raise InputError(f"{len(bad)} of {len(names)} model(s) are not installed or do not match their "
                             f"sha256: {', '.join(bad)}.")
        return 0
    path = registry.import_model(args.name, args.file)
    console.info(f"Imported {args.name} into {path}.")
    return 0


def cmd_benchmark(argv: Sequence[str]) -> int:
    """Hand the arguments to :mod:`.benchmark` (imported only when this subcommand runs)."""
    from . import benchmark

    parser = _Parser(prog=f"{PROG} benchmark", description="Quality, speed and memory of every method.")
    benchmark.add_arguments(parser)
    return int(benchmark.run(parser.parse_args(list(argv))) or 0)


# --------------------------------------------------------------------------------------------------
# parser


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages (results still print)")


def _add_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("auto", "2d", "3d"), default="auto",
                   help="2d: slice by slice along --axis; 3d: whole volume; auto: the method's choice (default)")
    p.add_argument("--axis", type=int, choices=(0, 1, 2), default=0,
                   help="slice axis for 2D mode, in array order (0 = axial k, 1 = j, 2 = i; default 0)")
    p.add_argument("--device", default="auto", help="auto (GPU when available), cuda, cuda:N or cpu")
    p.add_argument("--strength", type=float, default=None,
                   help="override the automatic strength (method-specific, see the docs)")
    p.add_argument("--ensemble", type=int, choices=(1, 2, 4, 8), default=1,
                   help="learned models: average the outputs for this many in-plane flips/rotations of the input "
                        "(each one a full pass: 8 takes 8 times as long; default 1)")


def _add_metric_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-range", type=float, default=None,
                   help="data range L for PSNR/SSIM in physical units (default: reference max - min)")


def _add_dtype(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", default=None,
                   help="pixel type of the written file (e.g. float32); default: the input's type when values fit")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Denoise and restore low-light medical images, and measure the result.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("denoise", help="denoise one image or volume", description="Denoise INPUT into OUTPUT.")
    p.add_argument("input", metavar="INPUT", help="image file or DICOM folder")
    p.add_argument("output", metavar="OUTPUT", help="output file (format from the extension)")
    p.add_argument("--method", default=None,
                   help=f"method name (see 'models list'); default: {DEFAULT_METHOD}, the best-scoring "
                        "shipped method on the test split (see the README)")
    _add_engine(p)
    p.add_argument("--seed", type=int, default=0, help="seed for methods with randomness (default 0)")
    p.add_argument("--reference", metavar="REF", help="clean image of the same size: adds PSNR/SSIM/MSE")
    p.add_argument("--metrics", metavar="FILE", help="write the metrics table to FILE.csv or FILE.json")
    _add_metric_options(p)
    _add_dtype(p)
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT (and the metrics file) if they exist")
    _add_common(p)

    p = sub.add_parser("simulate", help="degrade a clean image (low light, noise)",
                       description="Degrade INPUT into OUTPUT with a seeded noise model (see docs/cli.md).")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("output", metavar="OUTPUT")
    p.add_argument("--noise", choices=NOISE_TYPES, default="lowlight", type=lambda s: s.replace("-", "_"),
                   help="degradation model (default lowlight)")
    p.add_argument("--brightness", type=float, help="lowlight: brightness factor (0, 1]")
    p.add_argument("--gamma", type=float, help="lowlight: gamma of the darkening curve")
    p.add_argument("--peak", type=float, help="lowlight: photons at full scale (lower = noisier)")
    p.add_argument("--read-noise", type=float, help="lowlight: Gaussian read noise, in photons")
    p.add_argument("--sigma", type=float, help="gaussian/speckle/rician/correlated_gaussian: noise level")
    p.add_argument("--amount", type=float, help="salt_pepper: fraction of pixels hit")
    p.add_argument("--salt-fraction", type=float, help="salt_pepper: fraction of hits that are white")
    p.add_argument("--length", type=float, help="correlated_gaussian: correlation length in voxels")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_dtype(p)
    p.add_argument("--overwrite", action="store_true")
    _add_common(p)

    p = sub.add_parser("estimate-noise", help="noise level, Poisson-Gaussian parameters and noise type")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_common(p)

    p = sub.add_parser("evaluate", help="metrics of outputs against a clean reference",
                       description="Full-reference metrics of each OUT against REF (and no-reference figures "
                                   "against --input).")
    p.add_argument("reference", metavar="REF")
    p.add_argument("outputs", metavar="OUT", nargs="+")
    p.add_argument("--input", help="the noisy input the outputs came from: adds noise reduction, contrast, edges")
    _add_metric_options(p)
    p.add_argument("--axis", type=int, choices=(0, 1, 2), default=0, help="slice axis of the 2D SSIM (default 0)")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV (- for stdout)")
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON (- for stdout)")
    p.add_argument("--overwrite", action="store_true")
    _add_common(p)

    p = sub.add_parser("compare", help="several methods on one input, one table")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--methods", help="comma-separated method names (default: every classical denoiser)")
    _add_engine(p)
    p.add_argument("--reference", metavar="REF", help="clean image: adds PSNR/SSIM/MSE")
    _add_metric_options(p)
    p.add_argument("--output-dir", metavar="DIR", help="write each result as DIR/<input>_<method>.<ext>")
    p.add_argument("--format", metavar="EXT", help="file type of the results in --output-dir (default: the input's)")
    _add_dtype(p)
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV (- for stdout)")
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON (- for stdout)")
    p.add_argument("--overwrite", action="store_true")
    _add_common(p)

    p = sub.add_parser("models", help="list, download, verify or import learned models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", parser_class=_Parser)
    q = msub.add_parser("list", help="registered models and whether they are installed")
    q.add_argument("--json", action="store_true")
    _add_common(q)
    q = msub.add_parser("download", help="download and verify weights")
    q.add_argument("names", nargs="*", metavar="NAME")
    q.add_argument("--all", action="store_true", help="every registered model")
    _add_common(q)
    q = msub.add_parser("verify", help="check installed weights against their sha256")
    q.add_argument("names", nargs="*", metavar="NAME")
    _add_common(q)
    q = msub.add_parser("import", help="install weights from a local file (offline)")
    q.add_argument("name", metavar="NAME")
    q.add_argument("file", metavar="FILE")
    _add_common(q)

    sub.add_parser("benchmark", help="quality, speed and memory of every method (see 'benchmark --help')",
                   add_help=False)
    return parser


COMMANDS: Dict[str, Callable[[argparse.Namespace, _Console], int]] = {
    "denoise": cmd_denoise, "simulate": cmd_simulate, "estimate-noise": cmd_estimate_noise,
    "evaluate": cmd_evaluate, "compare": cmd_compare, "models": cmd_models,
}


def _fail(message: str, code: int = 2) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "benchmark":
            return cmd_benchmark(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "models" and args.models_command is None:
            raise UsageError("choose a models action: list, download, verify or import (see 'lowlightdenoise "
                             "models --help').")
        return COMMANDS[args.command](args, _Console(getattr(args, "quiet", False)))
    except LowLightDenoiseError as error:
        return _fail(str(error))
    except OSError as error:
        where = f": {error.filename}" if getattr(error, "filename", None) else ""
        return _fail(f"{error.strerror or error}{where}.")
    except KeyboardInterrupt:
        return _fail("interrupted.", 130)
