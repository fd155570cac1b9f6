"""The work of a job, the same in the child process and in-process: denoise/compare, simulate, download.

Both paths call these functions with the same volume and choices, so the child's output is
bit-for-bit the in-process engine's (the tests compare them).
"""
from __future__ import annotations

import inspect
from typing import Any, List, Optional, Sequence, Tuple

from ..options import RunOptions
from ..progress import CancelToken, ProgressCallback, RunControl
from ..volume import Volume
from .spec import SimulationSettings


def methods_for(names: Sequence[str], options: RunOptions, calibrate: bool = False) -> Tuple[List[Any], List[str]]:
    """The methods to run (names, or classical denoisers built with ``calibrate=True``) and the warnings.

    Self-calibration (:func:`skimage.restoration.calibrate_denoiser` on a central crop) replaces the
    automatic strength of a classical denoiser; a method without it, or a fixed strength, runs as usual.
    """
    if not calibrate:
        return list(names), []
    from ..methods import get_method
    from ..methods.classical import CLASSICAL_METHODS

    if options.strength is not None:
        return list(names), [f"Self-calibration applies to the automatic strength only; strength "
                             f"{options.strength:g} was used as chosen."]
    methods: List[Any] = []
    warnings: List[str] = []
    for name in names:
        cls = CLASSICAL_METHODS.get(str(name).strip().lower())
        if cls is not None and "calibrate" in inspect.signature(cls.__init__).parameters:
            methods.append(get_method(name, calibrate=True))
        else:
            methods.append(name)
            warnings.append(f"{name} has no self-calibration; it ran with its automatic strength.")
    return methods, warnings


def adapted_methods(volume: Volume, methods: Sequence[Any], options: RunOptions, seconds: float,
                    control: RunControl) -> Tuple[List[Any], List[str]]:
    """Each learned denoiser of ``methods`` adapted to ``volume`` for ``seconds`` (the others as they are), and
    what happened, one sentence each (:func:`~LowLightDenoiseLib.methods.adaptation.adapt`)."""
    from ..methods import get_method
    from ..methods.adaptation import adapt
    from ..methods.learned import LearnedMethod
    from ..methods.wrappers import unwrap

    out: List[Any] = []
    notes: List[str] = []
    for i, name in enumerate(methods):
        method = get_method(name, device=options.device)
        if isinstance(unwrap(method), LearnedMethod) and method.category == "denoise":
            sub = control.sub(i / len(methods), (i + 1) / len(methods))
            method = adapt(volume, method, seconds, options, progress=sub.step, cancel=control.cancel)
            notes.append(method.record.sentence())
        else:
            notes.append(f"{method.name} is not a learned denoiser, so it ran without adaptation.")
        out.append(method)
    return out, notes


def run_denoise(volume: Volume, names: Sequence[str], options: RunOptions, *, calibrate: bool = False,
                reference: Optional[Volume] = None, progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelToken] = None, adapt_seconds: float = 0.0) -> Any:
    """Every method on ``volume`` through :func:`~LowLightDenoiseLib.evaluation.run_methods`: its Comparison.

    ``adapt_seconds`` above 0: each learned denoiser is adapted to ``volume`` first (:func:`adapted_methods`;
    the first 90 % of the progress), and the sentences saying what happened join the warnings."""
    from ..evaluation import run_methods

    methods, warnings = methods_for(names, options, calibrate)
    if adapt_seconds:
        methods, notes = adapted_methods(volume, methods, options, adapt_seconds,
                                         RunControl(progress, cancel, 0.0, 0.9))
        warnings.extend(notes)
        progress = RunControl(progress, cancel, 0.9, 1.0).step
    comparison = run_methods(volume, methods, options, reference=reference, progress=progress, cancel=cancel)
    comparison.warnings.extend(warnings)
    return comparison


def run_simulation(volume: Volume, settings: SimulationSettings,
                   progress: Optional[ProgressCallback] = None) -> Volume:
    """The simulated acquisition of ``volume`` (seeded: the same settings give the same noise)."""
    from ..degrade import simulate_volume

    degradation = settings.degradation()
    if progress is not None:
        progress(0.1, f"Simulating {degradation.describe()}")
    return simulate_volume(volume, degradation, seed=int(settings.seed))


def run_download(model: str, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> str:
    """Download (and verify) a registered model's weights; the installed file's path."""
    from .. import registry

    return str(registry.download_model(model, progress, cancel=cancel))
