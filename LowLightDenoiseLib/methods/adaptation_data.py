"""The scan as :func:`~.adaptation.adapt` trains on it: each channel normalised and its noise estimated as the
engine does, the pixels held out for the guard, random oriented patches and their batches.

* :func:`_sources` - every channel as a :class:`_Source`: the normalised stack (2D slices along the run's axis, or
  the volume for a 3D model), its noise, its held-out 8 x 8 blocks, and whether its noise is new to the model
  (:func:`~.adaptation_guard.novelty`).
* :func:`_patch_shape`, :func:`_picks`, :func:`_batch` - the patch size a model needs, random patches (flips and
  quarter turns only: they keep pixel noise independent) and a :class:`_Batch` of them, with the pixels that may
  be targets (training) or the held-out ones (the guard).
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Tuple

import numpy as np

from ..errors import InputError
from ..noise import NoiseProfile, classify_noise, estimate_noise
from ..normalize import Normalizer
from ..volume import Volume
from .adaptation_guard import novelty
from .selfsupervised import Domain
from .wrappers import DIHEDRAL


@dataclasses.dataclass
class _Source:
    """One channel of the scan as the network sees it: normalised stack, noise, held-out pixels."""

    stack: np.ndarray  # (n, h, w): 2D slices along the run's axis, or the volume for a 3D model
    noise: NoiseProfile
    heldout: np.ndarray  # bool, like stack
    novelty: str = ""  # why its noise is unlike the training's ('' when it is like it)


def _heldout_blocks(shape: Tuple[int, ...], share: float, rng: np.random.Generator, block: int = 8) -> np.ndarray:
    """Random ``block x block`` in-plane blocks of every slice (about ``share`` of them), at least one in and out."""
    n, h, w = shape
    grid = rng.random((n, -(-h // block), -(-w // block))) < share
    if not grid.any():
        grid.flat[int(rng.integers(grid.size))] = True
    if grid.all():
        grid.flat[int(rng.integers(grid.size))] = False
    return np.repeat(np.repeat(grid, block, axis=1), block, axis=2)[:, :h, :w]


def _sources(volume: Volume, spatial_dims: int, axis: int, share: float, rng: np.random.Generator,
             noise_fit: str = "constrained") -> List[_Source]:
    """Every channel normalised and its noise estimated exactly as :func:`~..pipeline.denoise_volume` does for a
    method whose :attr:`~.base.Method.noise_fit` is ``noise_fit``."""
    out = []
    for c in range(volume.channels):
        chan = volume.array if not volume.is_color else volume.array[..., c]
        x = Normalizer.fit(chan).forward(chan)
        noise = estimate_noise(x, constrained=noise_fit != "free")  # the model's fit, as the engine gives it
        stack = np.ascontiguousarray(np.moveaxis(x, axis, 0) if spatial_dims == 2 else x, dtype=np.float32)
        out.append(_Source(stack, noise, _heldout_blocks(stack.shape, share, rng), novelty(noise, _label(x))))
    return out


def scan_novelty(sources: List[_Source]) -> str:
    """Why the scan's noise is new to the model (the first channel's reason that has one), '' when familiar."""
    return next((s.novelty for s in sources if s.novelty), "")


def _label(x: np.ndarray) -> str:
    """The noise classifier's label, or '' for an image too small to classify (then only the noise level counts)."""
    try:
        return classify_noise(x).label
    except InputError:
        return ""


def _multiple(spec: Any) -> Tuple[int, int]:
    """The (through-plane, in-plane) size multiple of a model's patches."""
    m = spec.size_multiple
    m = tuple(m) if isinstance(m, (tuple, list)) else (m, m, m)
    return int(m[0]), int(m[-1])


def _patch_shape(sources: List[_Source], spec: Any, settings: Any) -> Tuple[int, ...]:
    """The largest square patch (a multiple of what the network and the loss need) that fits every slice."""
    mz, mxy = _multiple(spec)
    if settings.loss == "nb2nb":
        mxy *= 2  # the sub-images are half the size
    side = min(min(s.stack.shape[1:]) for s in sources)
    p = min(int(settings.patch), side) // mxy * mxy
    if p < mxy:
        raise InputError(f"The image is too small to adapt {spec.name!r} to it: slices of at least {mxy} x {mxy} "
                         f"pixels are needed, this one has {side} pixels along one side.")
    if spec.spatial_dims == 2:
        return (p, p)
    depth = min(int(settings.depth), min(s.stack.shape[0] for s in sources)) // mz * mz
    if depth < mz:
        raise InputError(f"The volume is too thin to adapt {spec.name!r} to it: it needs at least {mz} slices.")
    return (depth, p, p)


def _picks(sources: List[_Source], shape: Tuple[int, ...], count: int, rng: np.random.Generator) -> List[tuple]:
    """``count`` random patches: (source, start indices, flip/rotation), channels weighted by their size."""
    sizes = np.array([s.stack.size for s in sources], dtype=np.float64)
    want = (1,) + shape if len(shape) == 2 else shape
    out = []
    for _ in range(count):
        i = int(rng.choice(len(sources), p=sizes / sizes.sum()))
        start = tuple(int(rng.integers(0, d - p + 1)) for d, p in zip(sources[i].stack.shape, want))
        out.append((i, start, int(rng.integers(0, len(DIHEDRAL)))))
    return out


def _orient(a: np.ndarray, turn: int) -> np.ndarray:
    turns, mirrored = DIHEDRAL[turn]
    a = np.rot90(a, turns, axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if mirrored else a)


def _parameters(noise: NoiseProfile) -> List[float]:
    """``a, b, offset, span, sigma`` of a channel: its Poisson-Gaussian model and VST frame (see :class:`Domain`)."""
    from ..models.spec import vst_parameters
    from ..vst import generalized_anscombe

    a, b = vst_parameters(noise)
    ends = generalized_anscombe(np.array([0.0, 1.0]), a, b)
    return [a, b, float(ends[0]), float(ends[1] - ends[0]), float(noise.sigma)]


@dataclasses.dataclass
class _Batch:
    """Patches of the scan: normalised noisy images, their domain, and the pixels that may be targets."""

    y: Any  # (B, 1, *patch)
    domain: Domain
    weights: Any  # (B, 1, *patch): 1 where a pixel may be a target
    channels: List[int]  # the source (channel) of each patch
    variance: Any = None  # the guard's noise variance per pixel (fixed: at the un-adapted model's output)


def _batch(sources: List[_Source], picks: List[tuple], shape: Tuple[int, ...], spec: Any, heldout: bool,
           device: str) -> _Batch:
    """The patches ``picks`` (training pixels as targets, or the held-out ones)."""
    import torch

    want = (1,) + shape if len(shape) == 2 else shape
    ys, ws, ps = [], [], []
    for i, start, turn in picks:
        src = sources[i]
        index = tuple(slice(s, s + p) for s, p in zip(start, want))
        patch = _orient(src.stack[index], turn)
        held = _orient(src.heldout[index], turn)
        if len(shape) == 2:
            patch, held = patch[0], held[0]
        ys.append(patch[np.newaxis])
        ws.append((held if heldout else ~held).astype(np.float32)[np.newaxis])
        ps.append(_parameters(src.noise))
    y, w = (torch.from_numpy(np.stack(a).astype(np.float32)).to(device) for a in (ys, ws))
    params = torch.tensor(ps, dtype=torch.float32, device=device)
    return _Batch(y, Domain(params, spec.input, len(shape)), w, [i for i, _, _ in picks])
