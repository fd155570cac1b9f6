"""Noise analysis: noise-level estimation and noise-type classification.

All estimates are in the units of the array they are given (the engine passes normalised arrays).

* :func:`estimate_sigma`: Gaussian sigma by the wavelet median-absolute-deviation estimator.
* :func:`estimate_poisson_gaussian`: the Poisson-Gaussian model ``var = a * mean + b`` fitted on
  local statistics of a high-pass residual (in the spirit of Foi et al., IEEE TIP 2008).
* :func:`estimate_noise`: both, as a :class:`NoiseProfile`.
* :func:`classify_noise`: Gaussian / Poisson / salt-and-pepper / speckle / Rician, by a small
  multinomial logistic regression on hand-made robust features; its parameters live in
  ``Resources/NoiseClassifier.json`` (fitted on real images by ``train/train_noise_classifier.py``);
  and ``low_noise`` when the noise is negligible against the image's intensity window (a clean scan).

3D volumes are analysed on up to eight evenly spaced slices, so that an estimate costs well under a
second whatever the volume size (the engine runs one on every call).
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .errors import InputError, LowLightDenoiseError
from .resources import resources_dir

if TYPE_CHECKING:
    from .volume import Volume

#: Where the fitted classifier parameters are read from.
CLASSIFIER_PATH = resources_dir() / "NoiseClassifier.json"
#: The noise types of the fitted model (``Resources/NoiseClassifier.json``).
MODEL_LABELS: Tuple[str, ...] = ("gaussian", "poisson", "salt_pepper", "speckle", "rician")
#: Every label :func:`classify_noise` gives: the model's, and ``low_noise`` (decided from the noise level, see
#: :data:`LOW_NOISE_SIGMA`).
NOISE_LABELS: Tuple[str, ...] = MODEL_LABELS + ("low_noise",)
#: Noise standard deviation, relative to the image's robust window (0.5-99.5 percentiles, as the engine normalises),
#: at which ``low_noise`` has probability 1/2; it falls off as ``1 / (1 + (sigma / LOW_NOISE_SIGMA) ** 8)``.
#: Clean scans measure 0.0004-0.006 (CT, radiographs); simulated photon noise at 1000 photons 0.010-0.042
#: (``train/reports/noise_estimation.md``). Real MR carries 0.012-0.036 of its own (Rician) noise.
LOW_NOISE_SIGMA = 0.008
_LOW_NOISE_POWER = 8.0
#: Share of isolated pixels at the extreme values (salt and pepper) at which ``low_noise`` is halved: impulse
#: noise barely moves a median-based sigma. Clean scans measure at most 3e-5, simulated impulse noise (0.5-10 %)
#: at least 3e-3.
LOW_NOISE_IMPULSES = 1e-3

_MAX_SLICES = 8
_MAX_SLICE_SIDE = 512
_BLOCK = 8
# Unit-energy second-difference kernel (sum of squared weights = 1): its output on white noise
# has the noise variance, and it cancels constant and linear intensity trends.
_RESIDUAL_KERNEL = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / 6.0
# Median / mean of the 8x8 block variance of that residual on white Gaussian noise (measured on
# 20 x 512 x 512 samples); divides block-variance medians so that they estimate the variance.
_MEDIAN_TO_MEAN = 0.957


@dataclasses.dataclass(frozen=True)
class NoiseProfile:
    """Estimated noise of an image.

    ``sigma``: standard deviation of additive Gaussian noise (signal-independent part included);
    ``a``, ``b``: Poisson-Gaussian model, variance(x) = a * x + b, where ``a`` is the gain
    (1 / photons at full scale for a [0, 1] image) and ``b`` the variance at ``x = 0``: the read-noise
    variance when the photon-zero level is at 0, and negative when it lies above 0 (``b = r - a * x0``),
    as in the engine's normalised units, whose window starts at a percentile of the noisy image.
    """

    sigma: float
    a: float = 0.0
    b: float = 0.0

    def std_at(self, x: np.ndarray) -> np.ndarray:
        """Noise standard deviation predicted at intensity ``x`` (Poisson-Gaussian if fitted; 1e-6 where
        ``a * x + b`` is not positive, below the data when ``b < 0``, see :data:`DARK_VARIANCE_FLOOR`)."""
        if self.a > 0 or self.b > 0:
            return np.sqrt(np.maximum(self.a * np.asarray(x, dtype=np.float64) + self.b, 1e-12))
        return np.full(np.shape(x), self.sigma)

    def scaled(self, factor: float) -> "NoiseProfile":
        """The same noise with its standard deviation multiplied by ``factor`` (variance by ``factor**2``)."""
        f = float(factor)
        return NoiseProfile(self.sigma * f, self.a * f * f, self.b * f * f)

    @property
    def is_photon_limited(self) -> bool:
        """True when shot noise dominates at mid-grey (``a * 0.5 > b``; always when ``b < 0 < a``): the case
        for a VST."""
        return self.a > 0 and self.a * 0.5 > self.b


@dataclasses.dataclass(frozen=True)
class NoiseClassification:
    """Most likely noise type and the probability of each type in :data:`NOISE_LABELS`."""

    label: str
    probabilities: Dict[str, float]
    features: Dict[str, float] = dataclasses.field(default_factory=dict)


def _check_shape(array: np.ndarray) -> np.ndarray:
    a = np.asarray(array)
    if a.size == 0:
        raise InputError("The image to analyse is empty.")
    if a.ndim not in (2, 3):
        raise InputError(f"Noise analysis expects a 2D image or a 3D volume, got {a.ndim} dimensions.")
    return a


def _sample_slices(array: np.ndarray, max_slices: int = _MAX_SLICES) -> List[np.ndarray]:
    """Up to ``max_slices`` evenly spaced 2D float64 slices, centre-cropped to at most 512 x 512.

    Only the sampled pixels are converted and checked, so the cost does not grow with the volume.
    """
    a = _check_shape(array)
    if a.ndim == 2:
        a = a[np.newaxis]
    idx = np.unique(np.linspace(0, a.shape[0] - 1, num=min(a.shape[0], max_slices)).astype(int))
    out = []
    for i in idx:
        y0 = max(0, (a.shape[1] - _MAX_SLICE_SIDE) // 2)
        x0 = max(0, (a.shape[2] - _MAX_SLICE_SIDE) // 2)
        s = np.asarray(a[i, y0:y0 + _MAX_SLICE_SIDE, x0:x0 + _MAX_SLICE_SIDE], dtype=np.float64)
        if not np.all(np.isfinite(s)):
            raise InputError("The image to analyse contains NaN or infinite values.")
        out.append(s)
    return out


#: the 75th percentile of the standard normal distribution (``scipy.stats.norm.ppf(0.75)``)
_NORMAL_Q3 = 0.6744897501960817


def wavelet_mad_sigma(image: np.ndarray) -> float:
    """Donoho's robust noise estimate of one 2D image: median |finest diagonal db2 detail| / 0.6745.

    The estimator of :func:`skimage.restoration.estimate_sigma` (zero coefficients masked out, NaN when
    none is left), with PyWavelets directly: skimage's version imports ``scipy.stats`` for one constant,
    half a second of every command's start-up.
    """
    import pywt

    detail = pywt.dwtn(np.asarray(image, dtype=np.float64), wavelet="db2")["d" * np.ndim(image)]
    detail = detail[np.nonzero(detail)]
    return float(np.median(np.abs(detail)) / _NORMAL_Q3) if detail.size else float("nan")


def estimate_sigma(array: np.ndarray) -> float:
    """Gaussian noise standard deviation by the wavelet MAD estimator (Donoho), slice median."""
    estimates = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        # a noise-free slice (black background, padding) has no non-zero wavelet detail: the estimate
        # is NaN then; such a slice carries no noise, so it counts as 0
        warnings.simplefilter("ignore", RuntimeWarning)
        for s in _sample_slices(array):
            if min(s.shape) >= 2:
                value = wavelet_mad_sigma(s)
                estimates.append(value if np.isfinite(value) else 0.0)
    return float(np.median(estimates)) if estimates else 0.0


def _blocks(s: np.ndarray, block: int = _BLOCK) -> np.ndarray:
    """Non-overlapping ``block x block`` tiles of a 2D array as rows of a (n, block*block) array."""
    h, w = (s.shape[0] // block) * block, (s.shape[1] // block) * block
    return s[:h, :w].reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3).reshape(-1, block * block)


def local_statistics(array: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Block means of the image and block variances of its unit-energy high-pass residual.

    For noise with variance ``v(mean)`` the residual variance of a smooth block is ``v`` (the
    signal cancels); blocks across edges give larger values, which the robust fits discard.
    Constant blocks (padding, clipped areas) are dropped. Returns ``(means, variances)``.
    """
    means, variances = [], []
    for s in _sample_slices(array):
        if min(s.shape) < _BLOCK + 2:
            continue
        r = ndimage.correlate(s, _RESIDUAL_KERNEL, mode="nearest")[1:-1, 1:-1]
        means.append(_blocks(s[1:-1, 1:-1]).mean(axis=1))
        variances.append(_blocks(r).var(axis=1))
    if not means:
        return np.zeros(0), np.zeros(0)
    m, v = np.concatenate(means), np.concatenate(variances)
    keep = v > 1e-12 * max(1.0, float(np.max(np.abs(m))) ** 2)
    return m[keep], v[keep]


def _binned(m: np.ndarray, v: np.ndarray, bins: int = 16) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-count intensity bins: median level, median-based variance and block count per bin."""
    n = m.size
    k = int(max(1, min(bins, n // 24)))
    order = np.argsort(m, kind="stable")
    groups = np.array_split(order, k)
    levels = np.array([np.median(m[g]) for g in groups])
    var = np.array([np.median(v[g]) / _MEDIAN_TO_MEAN for g in groups])
    counts = np.array([g.size for g in groups], dtype=np.float64)
    return levels, var, counts


#: The free-intercept fit ``var = a * x + b`` (``b`` may be negative) is kept only while it predicts at least this
#: share of the variance measured in the darkest intensity bin, at that bin's level, and a positive variance at the
#: :data:`DARK_BLOCK_QUANTILE` of the block means; otherwise ``b >= 0`` is imposed. In the engine's normalised units
#: the photon-zero level is not at 0 (the window's low end is a percentile of the noisy image, below the zero-photon
#: voxels that read noise spreads), so the true ``b`` is often negative there.
DARK_VARIANCE_FLOOR = 0.25
#: Share of the blocks that may lie below the level where the free fit's variance reaches 0 (where the VST folds
#: every value onto one). Photon noise puts that level under its zero-photon blocks; a convex variance law (speckle)
#: fitted by a line puts it inside the data (a radiograph with speckle lost 3.7 dB in default-2d without this check).
DARK_BLOCK_QUANTILE = 0.01


def _fit_linear(x: np.ndarray, y: np.ndarray, w: np.ndarray, floor: Optional[float] = None,
                x_low: Optional[float] = None) -> Tuple[float, float]:
    """Weighted least squares ``y = s * x + c`` with ``s >= 0`` (boundary solutions if needed).

    ``floor`` None: also ``c >= 0``. Otherwise ``c`` is free as long as ``s * min(x) + c >= floor`` and
    ``s * x_low + c > 0`` (the fit stays positive over the data); a fit that breaks that falls back to ``c >= 0``.
    """
    sw = w.sum()
    xm, ym = (w * x).sum() / sw, (w * y).sum() / sw
    sxx = (w * (x - xm) ** 2).sum()
    s = (w * (x - xm) * (y - ym)).sum() / sxx if sxx > 0 else 0.0
    c = ym - s * xm
    if s < 0:
        return 0.0, max(float(ym), 0.0)
    if floor is not None and c < 0 and s * float(np.min(x)) + c >= floor and (x_low is None or s * x_low + c > 0):
        return float(s), float(c)
    if c < 0:
        sxx0 = (w * x * x).sum()
        return (max(float((w * x * y).sum() / sxx0), 0.0) if sxx0 > 0 else 0.0), 0.0
    return float(s), float(c)


def _fit_variance_model(levels: np.ndarray, var: np.ndarray, counts: np.ndarray, feature: np.ndarray,
                        free_intercept: bool = False, x_low: Optional[float] = None) -> Tuple[float, float]:
    """Fit ``var = s * feature + c`` (``s >= 0``; ``c >= 0`` unless ``free_intercept``, see
    :data:`DARK_VARIANCE_FLOOR`; ``x_low``: the low block level the fit must stay positive at) with weights
    count / predicted variance^2 (two passes)."""
    floor = DARK_VARIANCE_FLOOR * float(var[int(np.argmin(feature))]) if free_intercept else None
    s, c = _fit_linear(feature, var, counts / np.maximum(var, 1e-30) ** 2, floor, x_low)
    pred = np.maximum(s * feature + c, 1e-30)
    return _fit_linear(feature, var, counts / pred ** 2, floor, x_low)


def estimate_poisson_gaussian(array: np.ndarray, constrained: bool = False) -> Tuple[float, float]:
    """Poisson-Gaussian parameters ``(a, b)`` of ``var = a * mean + b`` (``a >= 0``).

    Block means and residual variances (:func:`local_statistics`) are grouped in 16 equal-count
    intensity bins; the median variance of each bin (robust to edge blocks) is fitted by weighted
    least squares. ``b`` may be negative (the photon-zero level lies above 0 in these units) as long as
    the fitted variance stays positive over the data (:data:`DARK_VARIANCE_FLOOR`, :data:`DARK_BLOCK_QUANTILE`);
    ``constrained=True`` imposes ``b >= 0``, the estimator of library 0.2.0 and before (it reads the gain
    38 / 21 / 13 % low on average at 3 / 10 / 30 photons, ``train/reports/noise_estimation_before.md``), which
    the engine still gives every method whose ``noise_fit`` is ``"constrained"`` (all the shipped ones: the
    models were trained with it). Images too small for 8 x 8 blocks fall back to
    ``(0, sigma**2)``.
    """
    m, v = local_statistics(array)
    if m.size < 24:
        return 0.0, estimate_sigma(array) ** 2
    levels, var, counts = _binned(m, v)
    if levels.size < 2 or np.ptp(levels) <= 0:
        return 0.0, float(np.median(var))
    return _fit_variance_model(levels, var, counts, levels, free_intercept=not constrained,
                               x_low=float(np.quantile(m, DARK_BLOCK_QUANTILE)))


def estimate_noise(array: np.ndarray, constrained: bool = False) -> NoiseProfile:
    """Full noise profile of a (normalised) image or volume: wavelet sigma and Poisson-Gaussian (a, b)
    (``constrained``: ``b >= 0``, see :func:`estimate_poisson_gaussian`)."""
    a, b = estimate_poisson_gaussian(array, constrained)
    return NoiseProfile(sigma=estimate_sigma(array), a=a, b=b)


# --- noise-type classification ---------------------------------------------------------------

FEATURE_NAMES: Tuple[str, ...] = (
    "log_impulse_fraction",   # isolated pixels at the image's extreme values (salt and pepper)
    "log_extreme_fraction",   # all pixels at the extreme values (also zero-photon or zero-speckle pixels)
    "variance_slope",         # d log var / d log mean over the bright 3/4 of the bins (0, 1, 2 ...)
    "poisson_fraction",       # share of a * mean in the fitted var = a * mean + b (b >= 0) at the median level
    "speckle_fraction",       # share of c * mean^2 in the fitted var = c * mean^2 + d at the median level
    "log_dark_variance_ratio",  # variance of the darkest bin / median bin variance (log)
    "log_dark_snr",           # mean / std of the darkest bin (Rayleigh background: ~1.9)
    "skew_dark",              # median block skewness of the residual, darkest quarter of blocks
    "skew_bright",            # same, brightest half
    "log_kurtosis",           # median block kurtosis of the residual (log)
    "variance_curvature",     # q2 / q0 of var = q0 + q1 t + q2 t^2, t = (level - median) / level range (speckle > 0)
)


def noise_features(array: np.ndarray) -> np.ndarray:
    """The :data:`FEATURE_NAMES` feature vector of an image (invariant to affine intensity changes)."""
    slices = [s for s in _sample_slices(array) if min(s.shape) >= _BLOCK + 2]
    if not slices:
        raise InputError(f"The image is too small to classify its noise (needs at least {_BLOCK + 2} pixels a side).")
    lo = min(float(s.min()) for s in slices)
    hi = max(float(s.max()) for s in slices)
    if not hi > lo:
        raise InputError("The image is constant, so its noise cannot be classified.")
    u = np.stack([(s - lo) / (hi - lo) for s in slices])
    slices = list(u)
    impulse, extreme, n = 0, 0, 0
    skews, kurts, bmeans = [], [], []
    for s in slices:
        at_extreme = (s <= 1e-6) | (s >= 1.0 - 1e-6)
        med = ndimage.median_filter(s, size=3, mode="nearest")
        impulse += int(np.count_nonzero(at_extreme & (np.abs(s - med) > 0.15)))
        extreme += int(np.count_nonzero(at_extreme))
        n += s.size
        # deviation from the mean of the 8 neighbours keeps most of the noise's skewness
        r = s - (ndimage.uniform_filter(s, size=3, mode="nearest") * 9.0 - s) / 8.0
        rb = _blocks(r[1:-1, 1:-1])
        rb = rb - rb.mean(axis=1, keepdims=True)
        m2 = np.mean(rb ** 2, axis=1)
        ok = m2 > 1e-14
        skews.append(np.where(ok, np.mean(rb ** 3, axis=1) / np.maximum(m2, 1e-14) ** 1.5, 0.0))
        kurts.append(np.where(ok, np.mean(rb ** 4, axis=1) / np.maximum(m2, 1e-14) ** 2, 3.0))
        bmeans.append(_blocks(s[1:-1, 1:-1]).mean(axis=1))
    skew, kurt, bmean = np.concatenate(skews), np.concatenate(kurts), np.concatenate(bmeans)
    order = np.argsort(bmean, kind="stable")
    dark, bright = order[: max(1, order.size // 4)], order[order.size // 2:]

    m, v = local_statistics(u)
    if m.size >= 48:
        levels, var, counts = _binned(m, v)
    else:
        levels, var, counts = np.array([0.5]), np.array([max(estimate_sigma(u) ** 2, 1e-12)]), np.array([1.0])
    mid = float(np.median(levels))
    curvature = 0.0
    if levels.size >= 3 and np.ptp(levels) > 0:
        a, b = _fit_variance_model(levels, var, counts, levels)  # b >= 0: the feature as the model was first fitted
        c, d = _fit_variance_model(levels, var, counts, levels ** 2)
        curvature = _curvature(levels, var, counts)
        top = levels >= np.quantile(levels, 0.25)
        top &= levels > 1e-3
        if top.sum() >= 2 and np.ptp(np.log(levels[top])) > 0:
            slope = float(np.polyfit(np.log(levels[top]), np.log(np.maximum(var[top], 1e-14)), 1)[0])
        else:
            slope = 0.0
    else:
        a, b, c, d, slope = 0.0, float(var[0]), 0.0, float(var[0]), 0.0
    poisson_fraction = a * mid / max(a * mid + b, 1e-30)
    speckle_fraction = c * mid * mid / max(c * mid * mid + d, 1e-30)
    mid_var = float(np.median(var))
    dark_ratio = math.log(max(float(var[0]), 1e-14) / max(mid_var, 1e-14))
    dark_snr = math.log(max(float(levels[0]), 1e-6) / math.sqrt(max(float(var[0]), 1e-14)))
    feats = [
        math.log10(impulse / n + 1e-4),
        math.log10(extreme / n + 1e-4),
        float(np.clip(slope, -1.0, 4.0)),
        poisson_fraction,
        speckle_fraction,
        float(np.clip(dark_ratio, -12.0, 6.0)),
        float(np.clip(dark_snr, -6.0, 6.0)),
        float(np.clip(np.median(skew[dark]), -5.0, 5.0)),
        float(np.clip(np.median(skew[bright]), -5.0, 5.0)),
        math.log(max(float(np.median(kurt)), 1.0)),
        float(np.clip(curvature, -6.0, 6.0)),
    ]
    return np.array(feats, dtype=np.float64)


def _curvature(levels: np.ndarray, var: np.ndarray, counts: np.ndarray) -> float:
    """``q2 / q0`` of the weighted fit ``var = q0 + q1 t + q2 t^2``, ``t = (level - median level) / level range``.

    Unchanged by an intensity offset (unlike a slope in log-log): about 0 for Gaussian and Poisson-Gaussian
    noise wherever the photon-zero level lies, positive for multiplicative (speckle) noise, negative where the
    dark variance is cut down (Rician background).
    """
    t = (levels - np.median(levels)) / np.ptp(levels)
    w = np.sqrt(counts) / np.maximum(var, 1e-30)
    design = np.stack([np.ones_like(t), t, t * t], axis=1) * w[:, None]
    q = np.linalg.lstsq(design, var * w, rcond=None)[0]
    return float(q[2] / q[0]) if q[0] > 0 else 0.0


@lru_cache(maxsize=4)
def _load_classifier(path: str) -> Dict:
    p = Path(path)
    if not p.is_file():
        raise LowLightDenoiseError(f"The noise classifier parameters are missing ({p}); reinstall the extension.")
    with open(p, "r", encoding="utf-8") as f:
        params = json.load(f)
    if list(params.get("features", [])) != list(FEATURE_NAMES):
        raise LowLightDenoiseError(f"The noise classifier in {p} was fitted on other features; retrain it.")
    return params


def classifier_probabilities(features: np.ndarray, params: Dict) -> np.ndarray:
    """Softmax probabilities of a multinomial logistic regression with standardised inputs."""
    z = (np.asarray(features, dtype=np.float64) - np.asarray(params["mean"])) / np.asarray(params["scale"])
    logits = z @ np.asarray(params["weights"]).T + np.asarray(params["bias"])
    logits = logits - np.max(logits, axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


def relative_noise_sigma(array: np.ndarray) -> float:
    """Wavelet noise sigma over the image's robust window (the engine's normalisation: 0.5-99.5 percentiles of the
    whole image), so the ``sigma_normalized`` of :func:`noise_report`; 0 for a constant image."""
    from .normalize import Normalizer

    try:
        norm = Normalizer.fit(np.asarray(array))
    except InputError:
        return 0.0
    return estimate_sigma(array) / norm.scale


def low_noise_probability(relative_sigma: float, impulse_fraction: float = 0.0) -> float:
    """Probability that the noise is negligible: ``1 / (1 + (sigma / LOW_NOISE_SIGMA)**8)`` times
    ``1 / (1 + (impulse_fraction / LOW_NOISE_IMPULSES)**2)`` (see :data:`LOW_NOISE_SIGMA`)."""
    r = max(float(relative_sigma), 0.0) / LOW_NOISE_SIGMA
    i = max(float(impulse_fraction), 0.0) / LOW_NOISE_IMPULSES
    if r > 1e6 or i > 1e6:
        return 0.0
    return 1.0 / (1.0 + r ** _LOW_NOISE_POWER) / (1.0 + i * i)


def classify_noise(array: np.ndarray, classifier_path: Optional[Path] = None) -> NoiseClassification:
    """Most likely noise type of an image or volume (see :data:`NOISE_LABELS`) with probabilities.

    ``low_noise`` has the probability ``q`` of :func:`low_noise_probability` (from the relative noise sigma and
    the impulse fraction, not from the model); the model's types share ``1 - q``. The features are
    affine-invariant, so physical or normalised units give the same answer.
    """
    params = _load_classifier(str(classifier_path or CLASSIFIER_PATH))
    feats = noise_features(array)
    probs = classifier_probabilities(feats, params)
    labels: Sequence[str] = params["labels"]
    rel = relative_noise_sigma(array)
    q = low_noise_probability(rel, 10.0 ** feats[0] - 1e-4)
    out = {str(k): float(p) * (1.0 - q) for k, p in zip(labels, probs)}
    out["low_noise"] = q
    features = {k: float(f) for k, f in zip(FEATURE_NAMES, feats)}
    features["relative_noise_sigma"] = rel
    return NoiseClassification(label=max(out, key=out.__getitem__), probabilities=out, features=features)


def noise_report(volume: "Volume") -> List[Dict[str, object]]:
    """Per channel of ``volume``: the noise in physical units and in the engine's normalised units, and its type.

    Physical units follow from the engine's normalisation ``x = (X - low) / scale``: ``sigma_X =
    scale * sigma_x`` and ``var_X(X) = a * scale * X + (b * scale**2 - a * scale * low)``. This is what
    ``lowlightdenoise estimate-noise`` prints and what any front end can show.
    """
    from .normalize import Normalizer
    from .volume import validate_values

    validate_values(volume.array)
    rows: List[Dict[str, object]] = []
    for c in range(volume.channels):
        chan = volume.array[..., c] if volume.is_color else volume.array
        norm = Normalizer.fit(chan)
        x = norm.forward(chan)
        prof = estimate_noise(x)
        cls = classify_noise(x)
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
