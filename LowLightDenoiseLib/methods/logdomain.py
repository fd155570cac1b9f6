"""A method run in the log domain: the textbook route for multiplicative noise (speckle).

Speckle multiplies the signal, ``y = x * m``; the logarithm makes it additive, ``log y = log x + log m``,
with a variance that no longer depends on the signal. :class:`LogDomain` maps a normalised block through
``log(x + c)`` (rescaled so that 0..1 stays 0..1), runs a Gaussian denoiser on it with that Gaussian noise
level, and maps the result back with ``exp``. ``log m`` has mean ``-var/2`` to first order (gamma-distributed
``m`` of mean 1), so the back-transform multiplies by ``exp(var / 2)`` to keep local means.

The offset ``c`` = :data:`OFFSET` (in normalised units, where the image spans about 0..1) was chosen on the
validation split: mean PSNR of default-2d in the log domain on the six validation scans at speckle 0.15 / 0.3
was 32.43 / 28.89 dB at c = 0.003, 32.46 / 28.94 at 0.01 and 32.43 / 28.87 at 0.03; default-2d on the speckled
image itself 32.25 / 28.68, the best classical method (wavelet) 31.26 / 27.62
(``train/reports/routing-speckle-val.md``, made by ``train/routing_report.py``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from ..noise import NoiseProfile, estimate_sigma
from ..options import check_strength
from .base import Method, MethodContext
from .wrappers import MethodWrapper

#: offset of the logarithm in normalised units (keeps a black pixel finite; see the module docstring)
OFFSET = 0.01


def _span(offset: float) -> float:
    return math.log(1.0 + offset) - math.log(offset)


def to_log(x: np.ndarray, offset: float = OFFSET) -> np.ndarray:
    """``log(x + c)`` rescaled so that 0 maps to 0 and 1 to 1 (``x >= 0``), float32."""
    z = (np.log(np.asarray(x, dtype=np.float64) + offset) - math.log(offset)) / _span(offset)
    return z.astype(np.float32)


def from_log(z: np.ndarray, log_variance: float = 0.0, offset: float = OFFSET) -> np.ndarray:
    """The inverse of :func:`to_log`, times ``exp(log_variance / 2)`` (undoing the mean of speckle's log)."""
    y = np.exp(np.asarray(z, dtype=np.float64) * _span(offset) + math.log(offset) + 0.5 * log_variance)
    return (y - offset).astype(np.float32)


def log_sigma(x: np.ndarray, offset: float = OFFSET) -> float:
    """The Gaussian noise level of a normalised image in the log domain of :func:`to_log` (its units)."""
    return estimate_sigma(to_log(np.maximum(x, 0.0), offset))


class LogDomain(MethodWrapper):
    """``inner`` (a Gaussian denoiser) on ``log(x + c)``, then back (see the module docstring).

    ``sigma``: the noise level in the log domain (units of :func:`to_log`), one per volume, as
    :func:`log_sigma` gives it; without it each block is estimated on its own. Values below 0 (under the
    engine's robust black) pass through unchanged, as the residual of the part that is transformed.
    The strength acts on ``inner`` in the log domain; 0 returns the block unchanged.
    """

    def __init__(self, inner: Method, sigma: Optional[float] = None, offset: float = OFFSET) -> None:
        super().__init__(inner)
        self.name = f"log:{inner.name}"
        self.title = f"{inner.title} (in the log domain, for multiplicative noise)"
        self.sigma = None if sigma is None else float(sigma)
        self.offset = float(offset)

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        strength = check_strength(context.strength)
        strength = 1.0 if strength is None else strength
        x = np.asarray(block, dtype=np.float32)
        if strength == 0.0:
            return x.copy()
        inside = np.maximum(x, np.float32(0.0))
        z = to_log(inside, self.offset)
        sigma = self.sigma if self.sigma is not None else estimate_sigma(z)
        noise = NoiseProfile(sigma=sigma, a=0.0, b=sigma * sigma)
        y = np.asarray(self.inner.apply(z, dataclasses.replace(context, noise=noise)), dtype=np.float32)
        log_variance = (sigma * _span(self.offset)) ** 2 * min(strength, 1.0)
        return from_log(y, log_variance, self.offset) + (x - inside)

    def describe(self) -> dict:
        return dict(self.inner.describe(), name=self.name, title=self.title, domain="log")
