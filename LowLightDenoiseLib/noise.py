"""Noise analysis: noise-level estimation and noise-type classification.

All estimates are in the units of the array they are given (the engine passes normalised arrays).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class NoiseProfile:
    """Estimated noise of an image.

    ``sigma``: standard deviation of additive Gaussian noise (signal-independent part included);
    ``a``, ``b``: Poisson-Gaussian model, variance(x) = a * x + b, where ``a`` is the gain
    (1 / photons at full scale for a [0, 1] image) and ``b`` the read-noise variance.
    """

    sigma: float
    a: float = 0.0
    b: float = 0.0

    def std_at(self, x: np.ndarray) -> np.ndarray:
        """Noise standard deviation predicted at intensity ``x`` (Poisson-Gaussian if fitted)."""
        if self.a > 0 or self.b > 0:
            return np.sqrt(np.maximum(self.a * np.asarray(x, dtype=np.float64) + self.b, 1e-12))
        return np.full(np.shape(x), self.sigma)


def estimate_sigma(array: np.ndarray) -> float:
    """Gaussian noise standard deviation by the wavelet MAD estimator (Donoho), slice-averaged."""
    from skimage.restoration import estimate_sigma as _sk_estimate_sigma

    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 3:
        idx = np.linspace(0, a.shape[0] - 1, num=min(a.shape[0], 8)).astype(int)
        return float(np.median([_sk_estimate_sigma(a[i]) for i in np.unique(idx)]))
    return float(_sk_estimate_sigma(a))


def estimate_noise(array: np.ndarray) -> NoiseProfile:
    """Full noise profile of a (normalised) image or volume."""
    return NoiseProfile(sigma=estimate_sigma(array))
