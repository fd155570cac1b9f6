"""Variance-stabilising transform for Poisson-Gaussian data: the generalised Anscombe transform.

Model (the :class:`~LowLightDenoiseLib.noise.NoiseProfile` convention): an observation ``z`` of a
clean intensity ``x`` has mean ``x`` and variance ``a * x + b``, i.e. ``z = a * p + n`` with
``p ~ Poisson(x / a)`` and ``n ~ N(0, b)``; ``a`` is the gain (``1 / peak`` photons for a [0, 1]
image) and ``b`` the variance of the Gaussian read noise.

Forward (generalised Anscombe transform, GAT)::

    f(z) = (2 / a) * sqrt(max(a * z + 3/8 * a**2 + b, 0))

makes the noise approximately Gaussian with unit variance whatever ``x`` is, so that a denoiser
built for additive white Gaussian noise of sigma 1 can be applied in the transformed domain.
With ``a = 0`` (pure Gaussian noise) the transform reduces to ``z / sqrt(b)``.

Inverse. The algebraic inverse ``z = a * (y/2)**2 - 3/8 * a - b / a`` is biased at low counts,
because a denoiser estimates ``E[f(z)]``, not ``f(E[z])``. The exact unbiased inverse maps
``E[f(z) | x]`` back to ``x``; Makitalo & Foi (IEEE TIP 2011, 2013) give a closed-form
approximation of it. In photon units (``D = y``, ``s = sqrt(b) / a``)::

    I(D, s) = D**2 / 4 + sqrt(3/2) / 4 * D**-1 - 11/8 * D**-2 + 5/8 * sqrt(3/2) * D**-3 - 1/8 - s**2

clipped at 0 (and ``- s**2`` below ``D = 2 * sqrt(3/8)``, the value of ``f`` at zero photons, where the
expansion is no longer valid and ``I`` reaches 0); the result in image units is ``a * I(D, s)``.

Negative ``b``. When the photon-zero level is ``x0`` rather than 0 (a normalised image whose window starts
below the zero-photon voxels), ``var = a * (x - x0) + r = a * x + b`` with ``b = r - a * x0``, often negative.
The transform is exact for this case too: its argument ``a * z + 3/8 a**2 + b`` is the one of ``z - x0`` with
read-noise variance ``r``, and the inverse ``a * I(D, b / a**2)`` equals ``x0 + a * I(D, r / a**2)``. So ``b < 0``
is accepted when ``a > 0``; below ``D = 2 sqrt(3/8)`` the inverse gives ``-b / a``, the level where the fitted
variance reaches 0 (the continuation of the case ``b >= 0``, where it gives 0).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

_SQRT_3_2 = float(np.sqrt(1.5))
_D_MIN = 2.0 * float(np.sqrt(3.0 / 8.0))


def _check(a: float, b: float) -> None:
    if not (np.isfinite(a) and np.isfinite(b)) or a < 0:
        raise InputError(f"The noise parameters must be finite with a >= 0, got a={a}, b={b}.")
    if a == 0 and b <= 0:
        raise InputError(f"The noise model has no variance (a = 0, b = {b}); there is nothing to stabilise.")


def generalized_anscombe(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """Forward GAT ``(2/a) sqrt(max(a x + 3a^2/8 + b, 0))`` (``x / sqrt(b)`` when ``a = 0``).

    Output noise has variance ~1 for data with variance ``a * mean + b``; float64 arithmetic,
    float32 out for float32 input, float64 otherwise. The input is not modified.
    """
    _check(a, b)
    z = np.asarray(x, dtype=np.float64)
    if a == 0:
        y = z / np.sqrt(b)
    else:
        y = (2.0 / a) * np.sqrt(np.maximum(a * z + 0.375 * a * a + b, 0.0))
    return y.astype(_out_dtype(x))


def inverse_generalized_anscombe(y: np.ndarray, a: float, b: float) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of the GAT (Makitalo & Foi).

    Use on the *denoised* transformed image: it maps ``E[f(z)]`` back to the clean mean, which
    the algebraic inverse does not do at low photon counts (see the module docstring).
    """
    _check(a, b)
    d = np.asarray(y, dtype=np.float64)
    if a == 0:
        return (d * np.sqrt(b)).astype(_out_dtype(y))
    s2 = b / (a * a)
    valid = d >= _D_MIN
    dv = np.where(valid, d, 1.0)
    photons = (0.25 * dv * dv + 0.25 * _SQRT_3_2 / dv - 1.375 / dv ** 2
               + 0.625 * _SQRT_3_2 / dv ** 3 - 0.125)
    photons = np.maximum(np.where(valid, photons, 0.0) - s2, 0.0)
    return (a * photons).astype(_out_dtype(y))


def algebraic_inverse_generalized_anscombe(y: np.ndarray, a: float, b: float) -> np.ndarray:
    """Plain algebraic inverse ``a (y/2)^2 - 3a/8 - b/a`` of the GAT (biased at low counts; reference)."""
    _check(a, b)
    d = np.asarray(y, dtype=np.float64)
    if a == 0:
        return (d * np.sqrt(b)).astype(_out_dtype(y))
    return (a * (0.25 * d * d) - 0.375 * a - b / a).astype(_out_dtype(y))


def _out_dtype(x: np.ndarray) -> np.dtype:
    return np.dtype(np.float32) if np.asarray(x).dtype == np.float32 else np.dtype(np.float64)
