"""How a method is run: one value, validated once by the engine, shared by every front end.

:class:`RunOptions` holds the choices that are not the method itself: 2D slice-wise or 3D, the slice
axis, the device, the strength, the seed and test-time flip averaging. The command line, the Slicer
jobs, the benchmark, training evaluation and batch runs all build one and hand it to
:func:`~LowLightDenoiseLib.pipeline.denoise_volume`; none of them needs to know whether a method is
classical or learned.

``strength`` has one meaning for every method: how strongly it denoises relative to its automatic
choice. ``1`` (the default) is the automatic result, ``0`` returns the input unchanged, values in
between are gentler and values up to :data:`MAX_STRENGTH` stronger. A classical method multiplies
its automatic parameter by it; a learned model blends its output with the input below 1 and is
told a proportionally higher noise level above 1 (see :mod:`.methods.learned`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from .errors import InputError

MODES = ("auto", "2d", "3d")
AXES = (0, 1, 2)
DEVICES = ("auto", "cuda", "cpu")  # and cuda:N
#: allowed numbers of test-time flips/rotations (1 = no averaging)
FLIP_COUNTS = (1, 2, 4, 8)
MAX_STRENGTH = 3.0
DEFAULT_SLICE_BATCH = 16


def check_device(device: str) -> str:
    """The device choice normalised (``auto``, ``cpu``, ``cuda``, ``cuda:N``) or one sentence; imports nothing."""
    device = str(device).strip().lower()
    if device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise InputError(f"Unknown device {device!r}; use auto, cuda, cuda:N or cpu.")
    return device


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; validates explicit choices."""
    device = check_device(device)
    if device == "cpu":
        return "cpu"
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # classical methods work without torch
        has_cuda = False
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if not has_cuda:
        raise InputError("A CUDA GPU was requested but none is available; use --device cpu or auto.")
    return device


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise InputError(f"The {what} must be a whole number, not {value!r}.")
    return int(value)


def check_strength(value: Any) -> Optional[float]:
    """``None`` (automatic) or a number in [0, MAX_STRENGTH]; anything else raises one sentence."""
    if value is None:
        return None
    try:
        strength = float(value)
    except (TypeError, ValueError):
        raise InputError(f"The strength must be a number from 0 to {MAX_STRENGTH:g}, not {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(strength) or not 0.0 <= strength <= MAX_STRENGTH:
        raise InputError(f"The strength must be a number from 0 (input unchanged) to {MAX_STRENGTH:g} "
                         f"({MAX_STRENGTH:g} times the automatic strength), not {value!r}.")
    return strength


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Everything about a run except the method and the volume."""

    mode: str = "auto"  #: ``2d`` slice by slice along ``axis``, ``3d`` whole volume, ``auto`` the method's choice
    axis: int = 0  #: slice axis of 2D mode, in array order (0 = k, 1 = j, 2 = i)
    device: str = "auto"  #: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``
    strength: Optional[float] = None  #: None or 1 automatic, 0 input unchanged, up to 3 stronger
    seed: int = 0  #: for methods with randomness
    flips: int = 1  #: test-time averaging over this many in-plane flips/rotations (1, 2, 4 or 8)
    slice_batch: int = DEFAULT_SLICE_BATCH  #: 2D slices handed to a method at once

    def validated(self, resolve: bool = True) -> "RunOptions":
        """A copy with every field checked (one sentence per problem) and ``device`` resolved.

        ``resolve=False`` only checks the device's spelling (no torch import: a GUI checks the user's
        choices on its main thread, the engine resolves the device where the method runs).
        """
        mode = str(self.mode).strip().lower()
        if mode not in MODES:
            raise InputError(f"Unknown mode {self.mode!r}; use one of {', '.join(MODES)}.")
        axis = _integer(self.axis, "slice axis")
        if axis not in AXES:
            raise InputError(f"The slice axis must be 0, 1 or 2 (k, j, i), not {self.axis!r}.")
        flips = _integer(self.flips, "number of test-time flips")
        if flips not in FLIP_COUNTS:
            raise InputError(f"The number of test-time flips must be one of {', '.join(map(str, FLIP_COUNTS))}, "
                             f"not {self.flips!r}.")
        batch = _integer(self.slice_batch, "slice batch")
        if batch < 1:
            raise InputError(f"The slice batch must be at least 1, not {self.slice_batch!r}.")
        device = resolve_device(self.device) if resolve else check_device(self.device)
        return RunOptions(mode=mode, axis=axis, device=device,
                          strength=check_strength(self.strength), seed=_integer(self.seed, "seed"),
                          flips=flips, slice_batch=batch)

    def columns(self) -> dict:
        """What a results table records about the run besides the method (only what differs from the default)."""
        row: dict = {}
        if self.strength is not None and self.strength != 1.0:
            row["strength"] = self.strength
        if self.flips != 1:
            row["flips"] = self.flips
        return row


def merged(options: Optional[RunOptions] = None, **fields: Any) -> RunOptions:
    """``options`` (default: all defaults) with the given ``fields`` replaced; not validated.

    A field given as ``None`` keeps its value, except ``strength``, where ``None`` means automatic. An
    unknown field or an ``options`` that is not a :class:`RunOptions` raises one sentence.
    """
    if options is not None and not isinstance(options, RunOptions):
        raise InputError(f"options must be a RunOptions, not {type(options).__name__}.")
    known = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InputError(f"Unknown run option {unknown[0]!r}; the options are: {', '.join(sorted(known))}.")
    given = {k: v for k, v in fields.items() if v is not None or k == "strength"}
    return dataclasses.replace(options or RunOptions(), **given)

