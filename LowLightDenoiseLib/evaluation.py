"""Run methods and measure them: the one path from volumes to result rows.

Two layers, both returning plain rows (dicts) for :mod:`.tables`:

* :func:`run_methods` - several methods on ONE input (optionally with a clean reference), as the
  command line's ``denoise`` and ``compare``, the Slicer jobs and batch runs do: one row per method
  (its run, then full-reference metrics when a reference exists, then no-reference figures), and a
  first row for the unprocessed input when there is a reference, the baseline to beat.
* :func:`evaluate` - methods over clean :class:`Scan` s degraded at :class:`Level` s, as the
  benchmark and training evaluation do: each scan is degraded with a fixed seed, every entry runs on
  it and is scored against the clean scan.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from .errors import InputError
from .methods import Method, get_method
from .options import RunOptions
from .pipeline import DenoiseResult, denoise_volume, run_options
from .progress import CancelToken, ProgressCallback, RunControl
from .volume import Volume

Row = Dict[str, Any]
INPUT_LABEL = "(input)"


# --------------------------------------------------------------------------------------------------
# one input, several methods


def check_reference(volume: Volume, reference: Volume, what: str = "input", *, force: bool = False) -> Optional[str]:
    """The reference must lie on the input's voxel grid: same size, spacing, origin and orientation.

    A different size is always refused (one sentence). Another spacing, origin or orientation is refused
    too, unless ``force``: then the returned sentence is a warning to show (the metrics compare voxel
    by voxel, which is only meaningful when the two images are the same scan).
    """
    from .volume import geometry_difference

    if reference.array.shape != volume.array.shape:
        raise InputError(f"The {what} (shape {volume.array.shape}) and the reference (shape "
                         f"{reference.array.shape}) differ in size.")
    difference = geometry_difference(volume, reference)
    if difference is None:
        return None
    sentence = (f"The reference does not lie on the {what}'s voxel grid ({difference}), so it is probably "
                "another scan")
    if not force:
        raise InputError(f"{sentence}; use --force-reference to measure against it anyway.")
    return f"{sentence}; measured voxel by voxel anyway."


def quality_row(input: Volume, output: Volume, reference: Optional[Volume] = None, *,
                data_range: Optional[float] = None, axis: int = 0) -> Row:
    """Full-reference metrics of ``output`` (when a reference exists), then its no-reference figures."""
    from .metrics import no_reference_metrics, reference_metrics

    row: Row = {}
    if reference is not None:
        row.update(reference_metrics(output, reference, data_range, axis=axis))
    row.update(no_reference_metrics(input, output, axis=axis))
    return row


def input_row(input: Volume, reference: Volume, *, data_range: Optional[float] = None, axis: int = 0,
              options: Optional[RunOptions] = None) -> Row:
    """The unprocessed input against the reference: the row every method must beat.

    It has the run columns of the method rows (empty), so a table keeps the runs' columns first.
    """
    from .metrics import reference_metrics

    row: Row = {"method": INPUT_LABEL, "mode": None, "axis": None, "device": None, "seconds": None}
    row.update({k: None for k in (options.columns() if options is not None else {})})
    row.update(reference_metrics(input, reference, data_range, axis=axis))
    return row


@dataclasses.dataclass
class MethodOutcome:
    """One method's run on the input: the engine's result and its table row."""

    result: DenoiseResult
    row: Row
    category: str = "denoise"

    @property
    def method(self) -> str:
        return self.result.method

    @property
    def volume(self) -> Volume:
        return self.result.volume

    @property
    def warnings(self) -> List[str]:
        return list(self.result.warnings)


@dataclasses.dataclass
class Comparison:
    """What :func:`run_methods` returns: the rows of the table and each method's outcome."""

    rows: List[Row]
    outcomes: List[MethodOutcome]
    #: sentences to show the user (e.g. a reference on another grid, measured anyway)
    warnings: List[str] = dataclasses.field(default_factory=list)


def result_row(input: Volume, result: DenoiseResult, reference: Optional[Volume] = None, *,
               data_range: Optional[float] = None) -> Row:
    """The engine's run (method, mode, axis, device, seconds, non-default options), then the quality
    figures (2D SSIM along the run's own slice axis), then its warnings as one text."""
    row: Row = result.summary()
    warnings = row.pop("warnings", None)
    row.update(quality_row(input, result.volume, reference, data_range=data_range, axis=result.axis))
    if warnings:
        row["warnings"] = " ".join(warnings)
    return row


def run_methods(volume: Volume, methods: Sequence[Union[str, Method]], options: Optional[RunOptions] = None, *,
                reference: Optional[Volume] = None, data_range: Optional[float] = None,
                progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                on_start: Optional[Callable[[int, str], ProgressCallback]] = None,
                force_reference: bool = False) -> Comparison:
    """Run every method on ``volume`` with the same options; one row each (plus the input's with a reference).

    Every method is found (and a learned one loaded) before any runs, so an unknown name fails first.
    Progress is one fraction over all methods; ``on_start(i, name)`` may instead return a progress
    callback per method (the command line draws one bar each). A reference on another voxel grid is
    refused unless ``force_reference`` (see :func:`check_reference`).
    """
    opts = run_options(options)
    warnings: List[str] = []
    if reference is not None:
        warning = check_reference(volume, reference, force=force_reference)
        warnings.extend([warning] if warning else [])
    if not methods:
        raise InputError("Give at least one method.")
    control = RunControl(progress, cancel)
    loaded = []
    for m in methods:  # every method found (and a model loaded) before any runs: an unknown name fails first
        if not isinstance(m, Method):
            control.step(0.0, f"{m}: loading")
        loaded.append(get_method(m, device=opts.device))
    rows: List[Row] = []
    if reference is not None:
        rows.append(input_row(volume, reference, data_range=data_range, axis=opts.axis, options=opts))
    outcomes: List[MethodOutcome] = []
    n = len(loaded)
    for i, method in enumerate(loaded):
        sub = control.sub(i / n, (i + 1) / n)
        step = on_start(i, method.name) if on_start is not None else sub.step
        result = denoise_volume(volume, method, opts, progress=step, cancel=control.cancel)
        outcomes.append(MethodOutcome(result, result_row(volume, result, reference, data_range=data_range),
                                      method.category))
        rows.append(outcomes[-1].row)
        sub.step(1.0, f"{method.name}: done in {result.seconds:.1f} s on {result.device}")
    return Comparison(rows, outcomes, warnings)


# --------------------------------------------------------------------------------------------------
# clean scans, degraded: the benchmark and training evaluation


@dataclasses.dataclass
class Scan:
    """A clean scan to degrade and restore: a name, its modality and the volume in physical units."""

    name: str
    modality: str
    clean: Volume
    #: columns every row of this scan carries (shape, resolution, split...)
    columns: Row = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Level:
    """One degradation of the clean scans: a label, the degradation (:mod:`.degrade`) and its seed."""

    label: str
    degradation: Any
    seed: int = 0
    columns: Row = dataclasses.field(default_factory=dict)


#: builds the method of an entry for one scan and level (e.g. BM3D with that level's true noise)
MethodFactory = Callable[[Scan, Level, Volume], Method]


@dataclasses.dataclass
class Entry:
    """A method as the evaluation runs it: a label in the table, the method, how it runs.

    ``method`` is a name, a :class:`Method`, a :data:`MethodFactory`, or a sequence of names and
    methods run one after another (a pipeline: each step a whole engine run on the previous step's
    output, with the same options; seconds add up). ``oracle_strengths``: run at
    each of these strengths and keep the best score against the clean scan (an upper bound no user
    can reach, marked by the ``strength`` column).
    """

    label: str
    method: Union[str, Method, MethodFactory, Sequence[Union[str, Method]]]
    options: RunOptions = dataclasses.field(default_factory=RunOptions)
    oracle_strengths: Sequence[float] = ()
    columns: Row = dataclasses.field(default_factory=dict)


def reference_scores(output: Volume, clean: Volume, noisy: Volume) -> Row:
    """PSNR, 2D SSIM (slices along k) and MSE against the clean scan, over the clean scan's range."""
    from .metrics import reference_metrics

    values = reference_metrics(output, clean)
    return {k: values[k] for k in ("psnr", "ssim", "mse")}


#: ``(output, clean, noisy) -> scores``; the first score is what oracle tuning maximises
Scorer = Callable[[Volume, Volume, Volume], Row]
#: called with every output and its row: ``(scan, level, row, noisy, output)``; ``row["method"]`` is the
#: entry's label (the noisy input's row comes first, with ``output`` the noisy scan)
Observer = Callable[[Scan, Level, Row, Volume, Volume], None]


def _loaded(method: Any, device: str) -> Any:
    """Names (also the steps of a pipeline) made methods, so that each model is loaded once."""
    if isinstance(method, str):
        return get_method(method, device=device)
    if isinstance(method, (list, tuple)):
        return tuple(_loaded(m, device) for m in method)
    return method


def _run_entry(entry: Entry, scan: Scan, level: Level, noisy: Volume, score: Scorer,
               options: RunOptions) -> "tuple[Volume, float, Row, DenoiseResult]":
    method = entry.method
    if callable(method) and not isinstance(method, Method):
        method = method(scan, level, noisy)
    steps = list(method) if isinstance(method, (list, tuple)) else [method]
    strengths = list(entry.oracle_strengths) or [None]
    best = None
    total = 0.0
    for strength in strengths:
        opts = options if strength is None else dataclasses.replace(options, strength=strength)
        volume = noisy
        for step in steps:
            result = denoise_volume(volume, step, opts)
            total += result.seconds
            volume = result.volume
        scores = score(result.volume, scan.clean, noisy)
        first = next(iter(scores.values()))
        if best is None or first > best[0]:
            best = (first, result, scores, strength)
    _, result, scores, strength = best
    extra: Row = {"strength": strength} if entry.oracle_strengths else {}
    return result.volume, total / len(strengths), dict(scores, **extra), result


def evaluate(scans: Iterable[Scan], levels: Sequence[Level], entries: Sequence[Entry], *,
             score: Scorer = reference_scores, observers: Sequence[Observer] = (),
             log: Optional[Callable[[str], None]] = None, on_error: Optional[Callable[[str], None]] = None,
             noisy_label: str = "noisy input") -> List[Row]:
    """Every entry on every scan at every level; one row per (scan, level, entry), the noisy input first.

    A row: ``scan, modality, level`` (+ the scan's and level's columns), ``method`` (the entry's label),
    ``mode, seconds`` (+ the entry's columns and the method's own, e.g. an adaptation), then the scores. An
    entry that cannot run on a scan (a :class:`~.errors.LowLightDenoiseError`) is skipped and reported
    through ``on_error`` when given, else raised.
    """
    from .degrade import simulate_volume
    from .errors import LowLightDenoiseError

    entries = [dataclasses.replace(e, method=_loaded(e.method, e.options.validated(resolve=False).device))
               for e in entries]  # each model loaded once
    rows: List[Row] = []
    for scan in scans:
        for level in levels:
            noisy = simulate_volume(scan.clean, level.degradation, seed=level.seed)
            base = dict({"scan": scan.name, "modality": scan.modality}, **scan.columns, level=level.label,
                        **level.columns)
            rows.append(dict(base, method=noisy_label, mode=None, seconds=None, **score(noisy, scan.clean, noisy)))
            for observe in observers:
                observe(scan, level, rows[-1], noisy, noisy)
            for entry in entries:
                t0 = time.perf_counter()
                try:
                    output, seconds, scores, result = _run_entry(entry, scan, level, noisy, score,
                                                                 entry.options.validated(resolve=False))
                except LowLightDenoiseError as error:
                    if on_error is None:
                        raise
                    on_error(f"{entry.label} on `{scan.name}` ({level.label}) was skipped: {error}")
                    continue
                row = dict(base, method=entry.label, mode=result.mode, seconds=round(seconds, 4), **entry.columns)
                row.update(result.columns)  # the method's own, e.g. an adaptation's budget and held-out losses
                row.update(scores)
                rows.append(row)
                for observe in observers:
                    observe(scan, level, row, noisy, output)
                if log is not None:
                    log(f"{scan.name} {level.label}: {entry.label} ({result.mode}) "
                        f"{next(iter(scores))} {next(iter(scores.values())):.2f} in "
                        f"{time.perf_counter() - t0:.1f} s")
    return rows


def mean_by(rows: Sequence[Row], keys: Sequence[str], values: Sequence[str] = ("psnr", "ssim", "seconds"),
            ) -> List[Row]:
    """Mean of ``values`` over the rows sharing ``keys`` (missing values ignored), with the count ``n``."""
    groups: Dict[tuple, List[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    out = []
    for key, members in groups.items():
        summary: Row = dict(zip(keys, key))
        for v in values:
            numbers = [float(r[v]) for r in members if r.get(v) is not None]
            summary[v] = float(np.mean(numbers)) if numbers else None
        summary["n"] = len(members)
        out.append(summary)
    return out
