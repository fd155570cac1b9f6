"""The subcommands: each reads its arguments, checks every output location first, runs the library, prints.

Every user error (a missing or unreadable file, a 4D image, NaN values, a constant image, an image too
small for the method, a model that is not available, an output that exists or is a file the command
reads) raises a :class:`~..errors.LowLightDenoiseError` whose sentence :func:`..cli.main` prints. Every
output is checked before the computation (:class:`.outputs.Outputs`) and all of them are published
together after it, or none (``io.stage_volume``, ``tables.stage_text``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import DEFAULT_METHOD, DEFAULT_MODEL
from ..errors import InputError
from ..options import RunOptions
from ..tables import format_table, plain, stage_text, table_format, table_text
from .console import Console, Parser
from .outputs import Outputs
from .parser import PROG

#: Command-line flag -> degradation parameter (only the flags a user gives are passed on).
DEGRADATION_FLAGS = {"brightness": "brightness", "gamma": "gamma", "peak": "peak", "read_noise": "read_noise",
                     "sigma": "sigma", "amount": "amount", "salt_fraction": "salt_fraction", "length": "length"}


# --------------------------------------------------------------------------------------------------
# inputs and outputs


def _read(path: str, what: str = "The input"):
    from ..io import check_input_path, read_volume

    check_input_path(path, what)
    return read_volume(path)


def _fits_output(volume: Any, path: str, args: argparse.Namespace) -> None:
    """The output will have the input's shape, channels and about its values: can its format hold them?"""
    from ..io import check_output

    check_output(path, overwrite=True, dtype=getattr(args, "dtype", None), volume=volume,
                 folder_must_exist=False)


def _stage_tables(rows: List[Dict[str, Any]], csv_path: Optional[str], json_path: Optional[str],
                  outputs: Outputs) -> None:
    for path, fmt in ((csv_path, "csv"), (json_path, "json")):
        if path and path != "-":
            stage_text(path, table_text(rows, fmt), outputs.staging, replace=outputs.overwrite)


def _print_table(rows: List[Dict[str, Any]], csv_path: Optional[str], json_path: Optional[str]) -> None:
    """Print the table to stdout, and as CSV/JSON where ``-`` asks for stdout."""
    print(format_table(rows))
    for path, fmt in ((csv_path, "csv"), (json_path, "json")):
        if path == "-":
            sys.stdout.write(table_text(rows, fmt))


def _options(args: argparse.Namespace) -> RunOptions:
    """The run options of the engine flags, validated once (one sentence per bad value). The device is checked,
    not resolved: the engine resolves it for a method that runs on one, so a classical method imports no torch."""
    return RunOptions(mode=args.mode, axis=args.axis, device=args.device, strength=args.strength,
                      seed=getattr(args, "seed", 0), flips=args.flips).validated(resolve=False)


def _methods(names: Sequence[str], args: argparse.Namespace) -> List[Any]:
    """The methods to run: names, or with ``--calibrate`` self-calibrating classical denoisers (one sentence
    for a method that cannot calibrate, or for --calibrate with --strength)."""
    if not getattr(args, "calibrate", False):
        return list(names)
    import inspect

    from ..methods import get_method
    from ..methods.classical import CLASSICAL_METHODS

    if args.strength is not None:
        raise InputError("--calibrate chooses the strength itself; give either --calibrate or --strength.")
    methods = []
    for name in names:
        cls = CLASSICAL_METHODS.get(name.strip().lower())
        if cls is None or "calibrate" not in inspect.signature(cls.__init__).parameters:
            kind = "an enhancement method" if cls is not None else "not a classical denoiser (a learned model " \
                "finds its strength from the estimated noise; use --strength to change it)"
            raise InputError(f"--calibrate tunes the strength of the classical denoisers only, and {name} is {kind}.")
        methods.append(get_method(name, calibrate=True))
    return methods


# --------------------------------------------------------------------------------------------------
# subcommands


def cmd_denoise(args: argparse.Namespace, console: Console) -> int:
    from ..evaluation import run_methods
    from ..io import stage_volume

    with Outputs(args.overwrite) as outputs:
        outputs.volume(args.output, args.dtype)
        if args.metrics:
            table_format(args.metrics)
        outputs.table(args.metrics, "The metrics file")
        outputs.reading(args.input)
        outputs.reading(args.reference, "reference")
        _weights_outputs(args.save_weights, outputs, args.adapt is not None)
        outputs.check()
        options = _options(args)
        method = args.method or (DEFAULT_MODEL if args.adapt is not None else DEFAULT_METHOD)
        methods = _methods([method], args)
        volume = _read(args.input)
        reference = _read(args.reference, "The reference") if args.reference else None
        _fits_output(volume, args.output, args)
        if args.adapt is not None:
            methods = [_adapt(volume, methods[0], args.adapt, options, console)]
        with console.progress(f"denoise ({method})") as bar:
            done = run_methods(volume, methods, options, reference=reference, data_range=args.data_range,
                               progress=bar, force_reference=args.force_reference)
        result = done.outcomes[0].result
        rows = done.rows
        stage_volume(result.volume, args.output, outputs.staging, overwrite=args.overwrite, dtype=args.dtype)
        if args.metrics:
            stage_text(args.metrics, table_text(rows, table_format(args.metrics)), outputs.staging,
                       replace=args.overwrite)
        if args.save_weights:
            from ..methods.adapted import stage_adapted

            stage_adapted(methods[0], args.save_weights, outputs.staging, replace=args.overwrite)
        outputs.commit()
    ran = result.method + (f" -> {result.columns['route']}" if result.columns.get("route") else "")
    console.info(f"Wrote {args.output} ({ran}, {result.mode}, {result.device}, {result.seconds:.2f} s).")
    for warning in done.warnings + result.warnings:
        console.info(f"Note: {warning}")
    if reference is not None or args.metrics:
        print(format_table(rows))
    return 0


def _weights_outputs(path: Optional[str], outputs: Outputs, adapting: bool = True) -> None:
    """Adapted weights and their card as outputs of the command (checked now, published with the rest)."""
    if not path:
        return
    from ..methods.adapted import card_path, check_weights_path

    if not adapting:
        raise InputError("--save-weights keeps the weights that --adapt makes; give --adapt SECONDS too.")
    check_weights_path(path)
    outputs.table(path, "The weights file")
    outputs.table(str(card_path(path)), "The card file")


def _adapt(volume: Any, method: Any, budget: float, options: RunOptions, console: Console,
           steps: Optional[int] = None) -> Any:
    """``method`` adapted to ``volume`` (:func:`..methods.adaptation.adapt`); says what happened."""
    from ..methods.adaptation import AdaptSettings, adapt

    with console.progress(f"adapt ({method})") as bar:
        adapted = adapt(volume, method, budget, options, settings=AdaptSettings(max_steps=steps), progress=bar)
    console.info(adapted.record.sentence())
    return adapted


def cmd_adapt(args: argparse.Namespace, console: Console) -> int:
    from ..methods.adapted import card_path, stage_adapted

    with Outputs(args.overwrite) as outputs:
        _weights_outputs(args.weights, outputs)
        outputs.reading(args.input)
        outputs.check()
        options = RunOptions(axis=args.axis, device=args.device, seed=args.seed).validated()
        volume = _read(args.input)
        adapted = _adapt(volume, args.method or DEFAULT_MODEL, args.budget, options, console, args.steps)
        stage_adapted(adapted, args.weights, outputs.staging, replace=args.overwrite)
        outputs.commit()
    console.info(f"Wrote {args.weights} and its card {card_path(args.weights)}.")
    return 0


def _degradation_from_args(args: argparse.Namespace):
    from ..degrade import make_degradation

    params = {p: getattr(args, flag) for flag, p in DEGRADATION_FLAGS.items() if getattr(args, flag) is not None}
    return make_degradation(args.noise, **params)


def cmd_simulate(args: argparse.Namespace, console: Console) -> int:
    from ..degrade import simulate_volume
    from ..io import stage_volume

    with Outputs(args.overwrite) as outputs:
        outputs.volume(args.output, args.dtype)
        outputs.reading(args.input)
        outputs.check()
        degradation = _degradation_from_args(args)
        volume = _read(args.input)
        _fits_output(volume, args.output, args)
        degraded = simulate_volume(volume, degradation, seed=args.seed)
        stage_volume(degraded, args.output, outputs.staging, overwrite=args.overwrite, dtype=args.dtype)
        outputs.commit()
    console.info(f"Wrote {args.output} ({degradation.describe()}, seed {args.seed}).")
    return 0


def cmd_estimate_noise(args: argparse.Namespace, console: Console) -> int:
    from ..noise import noise_report

    volume = _read(args.input)
    rows = noise_report(volume)
    if args.json:
        print(json.dumps(plain({"file": args.input, "units": volume.metadata.get("units"), "channels": rows}),
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


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    from ..evaluation import check_reference
    from ..metrics import no_reference_metrics, noise_sigma, reference_metrics

    with Outputs(args.overwrite) as outputs:
        outputs.table(args.csv)
        outputs.table(args.json)
        outputs.reading(args.reference, "reference")
        outputs.reading(args.input)
        for path in args.outputs:
            outputs.reading(path, "image")
        outputs.check()
        reference = _read(args.reference, "The reference")
        source = _read(args.input) if args.input else None
        notes = [check_reference(source, reference, force=args.force_reference)] if source is not None else []
        rows = []
        for path in args.outputs:
            out = _read(path, "The image")
            notes.append(check_reference(out, reference, f"image {path}", force=args.force_reference))
            row: Dict[str, Any] = {"image": path}
            row.update(reference_metrics(out, reference, args.data_range, axis=args.axis))
            if source is not None:
                row.update(no_reference_metrics(source, out, axis=args.axis))
            else:
                row["noise_sigma"] = noise_sigma(out.array, channel_axis=-1 if out.is_color else None)
            rows.append(row)
        _stage_tables(rows, args.csv, args.json, outputs)
        outputs.commit()
    for note in dict.fromkeys(n for n in notes if n):
        console.info(f"Note: {note}")
    _print_table(rows, args.csv, args.json)
    return 0


def _output_name(input_path: str, method: str, out_dir: str, ext: Optional[str]) -> str:
    """``OUT_DIR/<input stem>_<method><ext>``: the input's file type, NRRD for DICOM input, or ``ext``."""
    from ..io import file_format, supported_extensions

    name = Path(input_path.rstrip("/\\")).name
    lower = name.lower()
    suffix = next((e for e in sorted(supported_extensions(), key=len, reverse=True) if lower.endswith(e.lower())), "")
    stem = name[: len(name) - len(suffix)] if suffix else name
    if ext:
        suffix = ext if ext.startswith(".") else "." + ext
    elif not suffix or file_format(name) == "dicom":
        suffix = ".nrrd"
    return str(Path(out_dir) / f"{stem}_{method}{suffix}")


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from ..evaluation import run_methods
    from ..io import stage_volume
    from ..methods import list_methods

    if args.methods:
        names = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:
        names = [d["name"] for d in list_methods() if d.get("kind") == "classical" and d.get("category") == "denoise"]
    if not names:
        raise InputError("Give at least one method with --methods.")
    with Outputs(args.overwrite) as outputs:
        targets: Dict[str, str] = {}
        if args.output_dir:
            if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
                raise InputError(f"The output folder {args.output_dir} is a file.")
            for name in names:
                targets[name] = _output_name(args.input, name, args.output_dir, args.format)
                outputs.volume(targets[name], args.dtype, creates_folder=True)
        outputs.table(args.csv)
        outputs.table(args.json)
        outputs.reading(args.input)
        outputs.reading(args.reference, "reference")
        outputs.check()
        options = _options(args)
        methods = _methods(names, args)
        volume = _read(args.input)
        reference = _read(args.reference, "The reference") if args.reference else None
        for target in targets.values():
            _fits_output(volume, target, args)
        bars: List[Any] = []

        def bar_for(i: int, name: str) -> Callable[[float, str], None]:
            if bars:
                bars[-1].__exit__(None, None, None)
            bars.append(console.progress(f"[{i + 1}/{len(names)}] {name}").__enter__())
            return bars[-1]

        try:
            done = run_methods(volume, methods, options, reference=reference, data_range=args.data_range,
                               on_start=bar_for, force_reference=args.force_reference)
        finally:
            if bars:
                bars[-1].__exit__(None, None, None)
        rows = done.rows
        if targets:
            outputs.make_folder(args.output_dir)
            for name, outcome in zip(names, done.outcomes):
                stage_volume(outcome.volume, targets[name], outputs.staging, overwrite=args.overwrite,
                             dtype=args.dtype)
        _stage_tables(rows, args.csv, args.json, outputs)
        outputs.commit()
    for name in targets:
        console.info(f"Wrote {targets[name]}")
    for warning in done.warnings:
        console.info(f"Note: {warning}")
    _print_table(rows, args.csv, args.json)
    return 0


def cmd_methods(args: argparse.Namespace, console: Console) -> int:
    from ..methods import list_methods

    rows = [{"name": d["name"], "kind": d.get("kind"), "category": d.get("category"),
             "dims": ",".join(f"{n}D" for n in d.get("spatial_dims", [])),
             "installed": ("yes" if d.get("installed") else "no") if d.get("kind") == "learned" else "-",
             "title": d.get("title")} for d in list_methods()]
    if args.json:
        print(json.dumps(plain(rows), indent=2))
    else:
        print(format_table(rows))
    return 0


def cmd_models(args: argparse.Namespace, console: Console) -> int:
    from .. import registry

    if args.models_command == "list":
        models = registry.describe_models()
        if args.json:
            print(json.dumps(plain(models), indent=2, default=str))
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
    """Hand the arguments to :mod:`..bench` (imported only when this subcommand runs)."""
    from .. import bench

    parser = Parser(prog=f"{PROG} benchmark", description="Quality, speed and memory of every method.")
    bench.add_arguments(parser)
    return int(bench.run(parser.parse_args(list(argv))) or 0)




COMMANDS: Dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "denoise": cmd_denoise, "adapt": cmd_adapt, "simulate": cmd_simulate, "estimate-noise": cmd_estimate_noise,
    "evaluate": cmd_evaluate, "compare": cmd_compare, "methods": cmd_methods, "models": cmd_models,
}
