"""The engine: run any method on a :class:`Volume`, slice-wise (2D) or volumetrically (3D).

Data flow, one way::

    Volume (physical units) -> per channel: Normalizer.forward -> noise estimate
      -> 2D: slices along ``axis`` in batches | 3D: the whole volume -> Method.apply
      -> Normalizer.inverse -> new Volume (same geometry, physical units)

An enhancement method (category ``enhance``) on an 8-bit photograph (``uint8``) returns 0..255 instead, clipped, so it can brighten what was dark; its channels share
one normalisation then, so a colour photograph keeps its colour balance.

How the method runs (mode, axis, device, strength, seed, test-time flips) is one
:class:`~.options.RunOptions`, validated here once. The input volume and its array are never modified.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .errors import InputError
from .methods import Method, MethodContext, get_method
from .methods.wrappers import FlipAveraging
from .noise import NoiseProfile, estimate_noise
from .normalize import Normalizer, display_range
from .options import RunOptions, merged, resolve_device
from .progress import CancelToken, ProgressCallback, RunControl
from .volume import Volume, validate_values


@dataclasses.dataclass
class DenoiseResult:
    """The output volume and what happened."""

    volume: Volume
    method: str
    mode: str
    axis: int
    device: str
    seconds: float
    noise: List[NoiseProfile]  # per channel, normalised units
    normalizers: List[Normalizer]
    #: sentences worth showing the user, e.g. a learned model's out-of-memory retries or CPU fallback
    warnings: List[str] = dataclasses.field(default_factory=list)
    options: RunOptions = dataclasses.field(default_factory=RunOptions)
    #: what the method adds to a results table (:meth:`~.methods.base.Method.columns`, e.g. an adaptation)
    columns: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def summary(self) -> Dict[str, Any]:
        """The run as table columns: method, mode, axis, device, seconds, non-default options, the method's
        own columns, warnings."""
        row = {"method": self.method, "mode": self.mode, "axis": self.axis, "device": self.device,
               "seconds": round(self.seconds, 4)}
        row.update(self.options.columns())
        row.update(self.columns)
        if self.warnings:
            row["warnings"] = list(self.warnings)
        return row


def resolve_mode(mode: str, method: Method, volume: Volume) -> str:
    """Turn ``auto|2d|3d`` into ``2d`` or ``3d`` for this method and volume, or raise one sentence."""
    depth = volume.spatial_shape[0]
    if mode == "auto":
        can_3d = 3 in method.spatial_dims and not volume.is_2d and depth >= method.min_size
        if can_3d and (method.preferred_dims == 3 or 2 not in method.spatial_dims):
            return "3d"
        if 2 in method.spatial_dims:
            return "2d"
        mode = "3d"  # a 3D-only method on a too-thin volume: fall through to the clear error below
    if mode == "3d":
        if 3 not in method.spatial_dims:
            raise InputError(f"Method {method.name!r} works on 2D slices only; use --mode 2d.")
        if depth < method.min_size:
            raise InputError(
                f"3D mode needs a volume with at least {method.min_size} slices; this image has {depth}.")
    if mode == "2d" and 2 not in method.spatial_dims:
        raise InputError(f"Method {method.name!r} works on whole volumes only; use --mode 3d.")
    return mode


def _check_size(shape: tuple, method: Method, mode: str) -> None:
    small = [s for s in shape if s < method.min_size]
    if small:
        raise InputError(
            f"Method {method.name!r} needs an image of at least {method.min_size} pixels along each "
            f"{'slice ' if mode == '2d' else ''}axis; this one is {' x '.join(map(str, shape))}.")


def run_options(options: Optional[RunOptions] = None, **fields: Any) -> RunOptions:
    """``options`` (default: all defaults) with ``fields`` replaced, validated; unknown fields raise one sentence.

    The device is checked but not resolved: only a method that runs on a device needs ``auto`` turned into
    ``cuda`` or ``cpu`` (which imports torch), and :func:`denoise_volume` does that for it.
    """
    return merged(options, **fields).validated(resolve=False)


def denoise_volume(
    volume: Volume,
    method: Union[str, Method],
    options: Optional[RunOptions] = None,
    *,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    **fields: Any,
) -> DenoiseResult:
    """Denoise (or enhance) ``volume`` with ``method``; returns a new volume in the same units.

    ``options`` (a :class:`RunOptions`) or its fields as keywords (``mode="2d"``, ``device="cpu"``...)
    say how; keywords override ``options``.
    """
    if not isinstance(volume, Volume):
        raise InputError(f"denoise_volume needs a Volume (see io.read_volume or Volume(array)), "
                         f"not {type(volume).__name__}.")
    if cancel is not None and not isinstance(cancel, CancelToken):
        raise InputError(f"cancel must be a CancelToken, not {type(cancel).__name__}.")
    if progress is not None and not callable(progress):
        raise InputError(f"progress must be a function progress(fraction, message), not {type(progress).__name__}.")
    opts = run_options(options, **fields)
    control = RunControl(progress, cancel)
    if not isinstance(method, Method):
        control.step(0.0, f"{method}: loading")  # a learned model's weights load (or download) first
    method = get_method(method, device=opts.device)
    validate_values(volume.array)
    resolve_mode(opts.mode, method, volume)  # a mode the method cannot run: one sentence before anything loads
    # a method that chooses by the image (auto) chooses here, once, on slices along the run's axis
    method = method.for_volume(volume, 0 if volume.is_2d else opts.axis)
    # the device is resolved once, here, and only for a method that runs on one (no torch import otherwise)
    opts = dataclasses.replace(opts, device=resolve_device(opts.device) if method.uses_device else "cpu")
    mode = resolve_mode(opts.mode, method, volume)
    axis = 0 if mode == "2d" and volume.is_2d else opts.axis
    opts = dataclasses.replace(opts, axis=axis)
    if opts.flips > 1:
        method = FlipAveraging(method, opts.flips)
    spatial = volume.spatial_shape
    _check_size(tuple(s for i, s in enumerate(spatial) if i != axis) if mode == "2d" else spatial, method, mode)

    t0 = time.perf_counter()
    # an enhancer may brighten: its [0, 1] output spans black to white of an 8-bit photograph
    display = display_range(volume.source_dtype) if method.category == "enhance" else None
    warnings: List[str] = []
    channels = volume.channels
    out = np.empty(volume.array.shape, dtype=np.float32)
    noises: List[NoiseProfile] = []
    normalizers: List[Normalizer] = []
    control.step(0.0, f"{method.name}: starting")
    for c in range(channels):
        chan = volume.array if not volume.is_color else volume.array[..., c]
        # an enhancer on a colour photograph: one map for all channels, so its colour balance survives
        norm = Normalizer.fit(volume.array if display is not None and volume.is_color else chan)
        x = norm.forward(chan)
        noise = estimate_noise(x, constrained=method.noise_fit != "free")  # the fit the method was made for
        ctx = MethodContext(spatial_dims=2 if mode == "2d" else 3, noise=noise,
                            control=control.sub(c / channels, (c + 1) / channels), device=opts.device,
                            strength=opts.strength, seed=opts.seed, warnings=warnings)
        y = _run_2d(method, x, axis, ctx, opts.slice_batch) if mode == "2d" else _run_3d(method, x, ctx)
        y = _back_to_units(y, norm, display)
        if volume.is_color:
            out[..., c] = y
        else:
            out[...] = y
        noises.append(noise)
        normalizers.append(norm)
    control.step(1.0, f"{method.name}: done")
    seconds = time.perf_counter() - t0
    result = volume.with_array(out, method=method.name)
    return DenoiseResult(result, method.name, mode, axis, opts.device, seconds, noises, normalizers,
                         warnings, dataclasses.replace(opts, mode=mode), method.columns())


def _back_to_units(y: np.ndarray, norm: Normalizer, display: Optional[tuple]) -> np.ndarray:
    """Normalised output -> the input's units; an enhancer's output on an 8-bit photo -> 0..255, clipped."""
    if display is None:
        return norm.inverse(y)
    black, white = display
    return (black + np.clip(np.asarray(y, dtype=np.float64), 0.0, 1.0) * (white - black)).astype(np.float32)


def _checked(block_out: np.ndarray, shape: tuple, method: Method) -> np.ndarray:
    y = np.asarray(block_out, dtype=np.float32)
    if y.shape != shape:
        raise RuntimeError(f"Method {method.name!r} returned shape {y.shape} for a block of shape {shape}.")
    return y


def _run_2d(method: Method, x: np.ndarray, axis: int, ctx: MethodContext, slice_batch: int) -> np.ndarray:
    slices = np.moveaxis(x, axis, 0)
    n = slices.shape[0]
    out = np.empty(slices.shape, dtype=np.float32)
    batch = max(1, int(slice_batch))
    control = ctx.control
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        sub = ctx.with_control(control.sub(start / n, stop / n))
        sub.control.step(0.0, f"{method.name}: slices {start + 1}-{stop} of {n}")
        block = np.ascontiguousarray(slices[start:stop])
        out[start:stop] = _checked(method.apply(block, sub), block.shape, method)
    control.step(1.0, f"{method.name}: {n} slices")
    return np.moveaxis(out, 0, axis)


def _run_3d(method: Method, x: np.ndarray, ctx: MethodContext) -> np.ndarray:
    ctx.control.step(0.0, f"{method.name}: volume {'x'.join(map(str, x.shape))}")
    y = _checked(method.apply(x, ctx), x.shape, method)
    ctx.control.step(1.0, f"{method.name}: volume done")
    return y
