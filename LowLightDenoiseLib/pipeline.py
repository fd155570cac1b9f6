"""The engine: run any method on a :class:`Volume`, slice-wise (2D) or volumetrically (3D).

Data flow, one way::

    Volume (physical units) -> per channel: Normalizer.forward -> noise estimate
      -> 2D: slices along ``axis`` in batches | 3D: the whole volume -> Method.apply
      -> Normalizer.inverse -> new Volume (same geometry, physical units)

The input volume and its array are never modified.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .errors import InputError
from .methods import Method, MethodContext, get_method
from .noise import NoiseProfile, estimate_noise
from .normalize import Normalizer
from .progress import CancelToken, ProgressCallback, RunControl
from .volume import Volume, validate_values

MODES = ("auto", "2d", "3d")
DEFAULT_SLICE_BATCH = 16


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

    def summary(self) -> Dict[str, Any]:
        row = {"method": self.method, "mode": self.mode, "axis": self.axis, "device": self.device,
               "seconds": round(self.seconds, 4)}
        if self.warnings:
            row["warnings"] = list(self.warnings)
        return row


def resolve_mode(mode: str, method: Method, volume: Volume) -> str:
    """Turn ``auto|2d|3d`` into ``2d`` or ``3d`` for this method and volume, or raise one sentence."""
    mode = str(mode).lower()
    if mode not in MODES:
        raise InputError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
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


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; validates explicit choices."""
    device = str(device).lower()
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"Unknown device {device!r}; use auto, cuda or cpu.")
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


def denoise_volume(
    volume: Volume,
    method: Union[str, Method],
    *,
    mode: str = "auto",
    axis: int = 0,
    device: str = "auto",
    strength: Optional[float] = None,
    slice_batch: int = DEFAULT_SLICE_BATCH,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    seed: int = 0,
) -> DenoiseResult:
    """Denoise (or enhance) ``volume`` with ``method``; returns a new volume in the same units."""
    control = RunControl(progress, cancel)
    device = resolve_device(device)
    if not isinstance(method, Method):
        method = get_method(method, device=device)
    validate_values(volume.array)
    mode = resolve_mode(mode, method, volume)
    if axis not in (0, 1, 2):
        raise InputError(f"Slice axis must be 0, 1 or 2 (k, j, i), not {axis}.")
    if mode == "2d" and volume.is_2d:
        axis = 0
    spatial = volume.spatial_shape
    _check_size(tuple(s for i, s in enumerate(spatial) if i != axis) if mode == "2d" else spatial, method, mode)

    t0 = time.perf_counter()
    warned = len(getattr(method, "warnings", ()))
    channels = volume.channels
    out = np.empty(volume.array.shape, dtype=np.float32)
    noises: List[NoiseProfile] = []
    normalizers: List[Normalizer] = []
    control.step(0.0, f"{method.name}: starting")
    for c in range(channels):
        chan = volume.array if not volume.is_color else volume.array[..., c]
        norm = Normalizer.fit(chan)
        x = norm.forward(chan)
        noise = estimate_noise(x)
        ctrl = control.sub(c / channels, (c + 1) / channels)
        ctx = MethodContext(spatial_dims=2 if mode == "2d" else 3, noise=noise, control=ctrl,
                            device=device, strength=strength, seed=seed)
        y = _run_2d(method, x, axis, ctx, slice_batch) if mode == "2d" else _run_3d(method, x, ctx)
        y = norm.inverse(y)
        if volume.is_color:
            out[..., c] = y
        else:
            out[...] = y
        noises.append(noise)
        normalizers.append(norm)
    control.step(1.0, f"{method.name}: done")
    seconds = time.perf_counter() - t0
    result = volume.with_array(out, method=method.name)
    warnings = list(getattr(method, "warnings", ())[warned:])
    return DenoiseResult(result, method.name, mode, axis, device, seconds, noises, normalizers, warnings)


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
        ctx.control = control.sub(start / n, stop / n)
        ctx.control.step(0.0, f"{method.name}: slices {start + 1}-{stop} of {n}")
        block = np.ascontiguousarray(slices[start:stop])
        out[start:stop] = _checked(method.apply(block, ctx), block.shape, method)
    ctx.control = control
    control.step(1.0, f"{method.name}: {n} slices")
    return np.moveaxis(out, 0, axis)


def _run_3d(method: Method, x: np.ndarray, ctx: MethodContext) -> np.ndarray:
    ctx.control.step(0.0, f"{method.name}: volume {'x'.join(map(str, x.shape))}")
    y = _checked(method.apply(x, ctx), x.shape, method)
    ctx.control.step(1.0, f"{method.name}: volume done")
    return y
