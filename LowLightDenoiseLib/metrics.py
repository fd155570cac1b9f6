"""Image-quality figures: full-reference (a clean image exists) and no-reference (the clinical case).

Conventions, written down because every number in a table depends on them:

* **Arrays** follow :class:`~.volume.Volume`: scalar ``(z, y, x)`` (a 2D image is ``(y, x)`` or
  ``(1, y, x)``); colour arrays have a trailing channel axis and are passed with ``channel_axis=-1``.
  Everything is computed in the arrays' **physical units** (HU stays HU).
* **Data range** ``L`` (PSNR and SSIM): explicit. Default: ``reference.max() - reference.min()``
  over the whole reference (all channels), in physical units. Pass ``data_range`` to compare against
  a fixed scale (e.g. 255 for 8-bit photographs, 4095 for 12-bit CT).
* **MSE / MAE**: mean over every voxel (and channel) of the squared / absolute difference.
* **PSNR** = ``10 log10(L**2 / MSE)`` in dB (``inf`` for identical images), via scikit-image.
* **SSIM** (Wang et al. 2004): Gaussian window sigma 1.5 truncated to 11 samples, K1 = 0.01,
  K2 = 0.03, population covariances, mean over the valid region (borders of 5 samples cropped),
  via :func:`skimage.metrics.structural_similarity`. SSIM's luminance term depends on where zero is
  (HU have a negative zero point), so both images are first mapped by the same affine map that
  sends ``reference.min()`` to 0 and ``reference.min() + L`` to 1, and SSIM uses ``L = 1``.
  ``ssim`` is 2D (each slice along ``axis`` on its own, then the mean of the per-slice means);
  ``ssim_3d`` is the true 3D SSIM with a 3D Gaussian window (computed in slabs, exactly, so memory
  stays bounded). An SSIM needs at least 11 samples along each windowed axis; otherwise it is
  ``None`` (not defined), never a made-up number. Colour: the mean over channels.
* **Noise** ``sigma``: the wavelet MAD estimate of :func:`.noise.estimate_sigma` (median of sampled
  slices), in physical units. **Noise reduction** = ``sigma(input) / sigma(output)``: 2 means the
  noise standard deviation was halved; below 1 the method added noise.
* **RMS contrast**: standard deviation of the intensities after mapping the *input's* 0.5-99.5
  percentile range to [0, 1] (the same map for input and output, so the figures are comparable).
  **Contrast improvement** = ``rms_contrast(output) / rms_contrast(input)``: above 1 for enhancers.
  Noise adds to the RMS contrast, so a pure denoiser reads slightly below 1; the figure is meant for
  enhancement methods.
* **Edge preservation**: Pearson correlation of the in-plane Sobel gradient magnitudes (each slice
  along ``axis``) of two images, both first smoothed by a Gaussian of ``edge_sigma`` pixels so that
  noise does not count as edges. Against a reference it tells whether the output's edges are the
  clean image's edges; without a reference (input vs output) whether the method kept the input's
  anatomy where it was (1 = edges kept in place and in proportion; lower = blurred or moved).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np

from .errors import InputError
from .normalize import Normalizer
from .volume import Volume, validate_values

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # 2 * int(3.5 * SSIM_SIGMA + 0.5) + 1: scikit-image's Gaussian window at sigma 1.5
_SSIM_PAD = (SSIM_WINDOW - 1) // 2
_SLAB_VOXELS = 8_000_000  # 3D SSIM slab size: about 0.3 GB of float32 temporaries per slab
_FLOAT32_VOXELS = 8_000_000  # above this size SSIM is computed in float32 (after the shift to [0, 1])
DEFAULT_EDGE_SIGMA = 1.0

REFERENCE_KEYS = ("psnr", "ssim", "ssim_3d", "mse", "mae", "data_range")
NO_REFERENCE_KEYS = ("noise_sigma_input", "noise_sigma_output", "noise_reduction", "contrast_input",
                     "contrast_output", "contrast_improvement", "edge_preservation")


def _as_volume_array(array: np.ndarray, channel_axis: Optional[int], what: str) -> np.ndarray:
    """Bring an array to ``(z, y, x)`` or ``(z, y, x, c)`` (channel last) as float64 or float32."""
    a = np.asarray(array)
    if channel_axis is not None:
        a = np.moveaxis(a, channel_axis, -1)
    spatial = a.ndim - (1 if channel_axis is not None else 0)
    if spatial == 2:
        a = a[np.newaxis]
    elif spatial != 3:
        raise InputError(f"{what} must be a 2D or 3D image, not an array of shape {np.shape(array)}.")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    return a


def _pair(output: np.ndarray, reference: np.ndarray, channel_axis: Optional[int]) -> tuple:
    out = _as_volume_array(output, channel_axis, "The output")
    ref = _as_volume_array(reference, channel_axis, "The reference")
    if out.shape != ref.shape:
        raise InputError(f"The output (shape {out.shape}) and the reference (shape {ref.shape}) differ in size.")
    return out, ref


def default_data_range(reference: np.ndarray) -> float:
    """The default data range: ``max - min`` of the reference (physical units)."""
    ref = np.asarray(reference)
    return float(np.max(ref)) - float(np.min(ref))


def _checked_range(reference: np.ndarray, data_range: Optional[float]) -> float:
    rng = default_data_range(reference) if data_range is None else float(data_range)
    if not (math.isfinite(rng) and rng > 0):
        if data_range is None:
            raise InputError("The reference image is constant, so it defines no data range; give one explicitly.")
        raise InputError(f"The data range must be a positive number, not {data_range}.")
    return rng


def _mse(out: np.ndarray, ref: np.ndarray) -> float:
    from skimage.metrics import mean_squared_error

    return float(mean_squared_error(ref.astype(np.float64, copy=False), out.astype(np.float64, copy=False)))


def mse(output: np.ndarray, reference: np.ndarray, channel_axis: Optional[int] = None) -> float:
    """Mean squared error over every voxel (and channel), in squared physical units."""
    return _mse(*_pair(output, reference, channel_axis))


def mae(output: np.ndarray, reference: np.ndarray, channel_axis: Optional[int] = None) -> float:
    """Mean absolute error over every voxel (and channel), in physical units."""
    out, ref = _pair(output, reference, channel_axis)
    return float(np.mean(np.abs(out.astype(np.float64) - ref.astype(np.float64))))


def psnr(output: np.ndarray, reference: np.ndarray, data_range: Optional[float] = None,
         channel_axis: Optional[int] = None) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(L**2 / MSE)``; ``inf`` when the images are equal."""
    out, ref = _pair(output, reference, channel_axis)
    rng = _checked_range(ref, data_range)
    err = _mse(out, ref)
    if err == 0:
        return math.inf
    return float(10.0 * np.log10(rng * rng / err))


def _ssim_scalar(out: np.ndarray, ref: np.ndarray, spatial_dims: int, axis: int) -> Optional[float]:
    """SSIM of two scalar (z, y, x) arrays already mapped to a unit data range."""
    from skimage.metrics import structural_similarity

    kw = dict(data_range=1.0, gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False)
    if spatial_dims == 2:
        o = np.moveaxis(out, axis, 0)
        r = np.moveaxis(ref, axis, 0)
        if min(o.shape[1:]) < SSIM_WINDOW:
            return None
        return float(np.mean([structural_similarity(o[i], r[i], **kw) for i in range(o.shape[0])]))
    if min(out.shape) < SSIM_WINDOW:
        return None
    depth = out.shape[0]
    step = max(1, _SLAB_VOXELS // max(1, out.shape[1] * out.shape[2]) - 2 * _SSIM_PAD)
    total = 0.0
    count = 0
    # Slabs with a halo of _SSIM_PAD slices: the Gaussian filters reach exactly _SSIM_PAD slices, so the
    # SSIM map inside each slab equals the whole-volume map and the mean is exact.
    for z0 in range(_SSIM_PAD, depth - _SSIM_PAD, step):
        z1 = min(z0 + step, depth - _SSIM_PAD)
        lo, hi = z0 - _SSIM_PAD, z1 + _SSIM_PAD
        _, smap = structural_similarity(out[lo:hi], ref[lo:hi], full=True, **kw)
        inner = smap[_SSIM_PAD:_SSIM_PAD + (z1 - z0), _SSIM_PAD:-_SSIM_PAD, _SSIM_PAD:-_SSIM_PAD]
        total += float(np.sum(inner, dtype=np.float64))
        count += inner.size
    return total / count


def ssim(output: np.ndarray, reference: np.ndarray, data_range: Optional[float] = None, *,
         spatial_dims: int = 2, axis: int = 0, channel_axis: Optional[int] = None) -> Optional[float]:
    """Structural similarity, 2D per slice along ``axis`` (mean) or true 3D; ``None`` if too small.

    See the module docstring for the window, the constants and the affine map to a unit range.
    """
    if spatial_dims not in (2, 3):
        raise InputError(f"SSIM is defined here in 2 or 3 dimensions, not {spatial_dims}.")
    if axis not in (0, 1, 2):
        raise InputError(f"Slice axis must be 0, 1 or 2, not {axis}.")
    out, ref = _pair(output, reference, channel_axis)
    rng = _checked_range(ref, data_range)
    low = float(np.min(ref))
    dtype = np.float32 if out.size > _FLOAT32_VOXELS else np.float64  # float32 keeps big volumes in memory
    out = (out.astype(dtype) - dtype(low)) / dtype(rng)
    ref = (ref.astype(dtype) - dtype(low)) / dtype(rng)
    if channel_axis is None:
        return _ssim_scalar(out, ref, spatial_dims, axis)
    values = [_ssim_scalar(out[..., c], ref[..., c], spatial_dims, axis) for c in range(out.shape[-1])]
    return None if values[0] is None else float(np.mean(values))


def _channels(a: np.ndarray, channel_axis: Optional[int]) -> List[np.ndarray]:
    return [a] if channel_axis is None else [a[..., c] for c in range(a.shape[-1])]


def noise_sigma(array: np.ndarray, channel_axis: Optional[int] = None) -> float:
    """Estimated Gaussian noise standard deviation (wavelet MAD) in the array's units; mean over channels."""
    from .noise import estimate_sigma

    a = _as_volume_array(array, channel_axis, "The image")
    return float(np.mean([estimate_sigma(c) for c in _channels(a, channel_axis)]))


def rms_contrast(array: np.ndarray, low: float, high: float) -> float:
    """Standard deviation of the intensities after mapping ``[low, high]`` to ``[0, 1]``."""
    if not high > low:
        raise InputError("The contrast scale needs high > low.")
    a = np.asarray(array, dtype=np.float64)
    return float(np.std((a - low) / (high - low)))


def _gradient_magnitude(a: np.ndarray, axis: int, sigma: float) -> np.ndarray:
    """In-plane Sobel gradient magnitude of each slice along ``axis`` after Gaussian smoothing."""
    from scipy import ndimage

    s = np.moveaxis(np.asarray(a, dtype=np.float32), axis, 0)
    out = np.empty(s.shape, dtype=np.float32)
    for i, sl in enumerate(s):
        if sigma > 0:
            sl = ndimage.gaussian_filter(sl, sigma=sigma)
        out[i] = np.hypot(ndimage.sobel(sl, axis=0), ndimage.sobel(sl, axis=1))
    return out


def edge_preservation(first: np.ndarray, second: np.ndarray, *, axis: int = 0,
                      sigma: float = DEFAULT_EDGE_SIGMA, channel_axis: Optional[int] = None) -> Optional[float]:
    """Pearson correlation of smoothed in-plane gradient magnitudes; ``None`` if either has no edges."""
    a, b = _pair(first, second, channel_axis)
    values = []
    for ca, cb in zip(_channels(a, channel_axis), _channels(b, channel_axis)):
        ga = _gradient_magnitude(ca, axis, sigma).ravel().astype(np.float64)
        gb = _gradient_magnitude(cb, axis, sigma).ravel().astype(np.float64)
        ga -= ga.mean()
        gb -= gb.mean()
        denom = math.sqrt(float(np.dot(ga, ga)) * float(np.dot(gb, gb)))
        if denom == 0:
            return None
        values.append(float(np.dot(ga, gb)) / denom)
    return float(np.mean(values))


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return math.inf if num > 0 else 1.0
    return float(num) / float(den)


def _check_volume(v: Volume, what: str) -> None:
    validate_values(v.array, what)


def _check_pair(first: Volume, what: str, output: Volume) -> None:
    """One sentence if ``output`` and the ``what`` image (input or reference) cannot be compared."""
    if output.array.shape != first.array.shape:
        raise InputError(f"The output (shape {output.array.shape}) and the {what} "
                         f"(shape {first.array.shape}) differ in size.")
    _check_volume(first, f"The {what} image")
    if not np.all(np.isfinite(output.array)):
        raise InputError("The output image contains NaN or infinite values.")


def reference_metrics(output: Volume, reference: Volume, data_range: Optional[float] = None, *,
                      axis: int = 0) -> Dict[str, Any]:
    """PSNR, SSIM (2D per slice and 3D), MSE, MAE and the data range used, output vs a clean reference.

    ``ssim_3d`` is ``None`` for 2D images and for volumes thinner than the 11-sample window.
    """
    _check_pair(reference, "reference", output)
    ch = -1 if reference.is_color else None
    rng = _checked_range(reference.array, data_range)
    return {
        "psnr": psnr(output.array, reference.array, rng, channel_axis=ch),
        "ssim": ssim(output.array, reference.array, rng, spatial_dims=2, axis=axis, channel_axis=ch),
        "ssim_3d": None if reference.is_2d else ssim(output.array, reference.array, rng, spatial_dims=3,
                                                     channel_axis=ch),
        "mse": mse(output.array, reference.array, channel_axis=ch),
        "mae": mae(output.array, reference.array, channel_axis=ch),
        "data_range": rng,
    }


def no_reference_metrics(input: Volume, output: Volume, *, axis: int = 0,
                         edge_sigma: float = DEFAULT_EDGE_SIGMA) -> Dict[str, Any]:
    """What can be measured without a clean image: noise before/after, contrast, edge preservation."""
    _check_pair(input, "input", output)
    ch = -1 if input.is_color else None
    sig_in = noise_sigma(input.array, channel_axis=ch)
    sig_out = noise_sigma(output.array, channel_axis=ch)
    norm = Normalizer.fit(input.array)
    con_in = rms_contrast(input.array, norm.low, norm.high)
    con_out = rms_contrast(output.array, norm.low, norm.high)
    return {
        "noise_sigma_input": sig_in,
        "noise_sigma_output": sig_out,
        "noise_reduction": _ratio(sig_in, sig_out),
        "contrast_input": con_in,
        "contrast_output": con_out,
        "contrast_improvement": _ratio(con_out, con_in),
        "edge_preservation": edge_preservation(input.array, output.array, axis=axis, sigma=edge_sigma,
                                               channel_axis=ch),
    }
