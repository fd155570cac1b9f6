"""Comparison-only methods: never shipped, run only when a user has installed them.

BM3D (the ``bm3d`` package) is the classical reference for photon-limited noise after the
generalised Anscombe transform, but its licence forbids shipping it, so it is imported only inside
:meth:`BM3DVST.apply`, only when installed, and only by the benchmark and training evaluation.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .base import Method, MethodContext

BM3D_NAME = "bm3d-vst"
BM3D_TRUE_NAME = "bm3d-vst-true"


def bm3d_available() -> bool:
    """True when the ``bm3d`` package can be imported."""
    import importlib.util

    return importlib.util.find_spec("bm3d") is not None


class BM3DVST(Method):
    """BM3D slice by slice after the generalised Anscombe transform, then its exact unbiased inverse.

    The Poisson-Gaussian parameters are the engine's blind estimate (as for every method), or, when
    ``a`` and ``b`` are given, those values in the engine's normalised units: the TRUE parameters of a
    simulated degradation, an oracle no user has (named ``bm3d-vst-true``).
    """

    kind = "comparison"
    category = "denoise"
    spatial_dims = (2,)
    min_size = 8

    def __init__(self, a: Optional[float] = None, b: Optional[float] = None) -> None:
        self.true = a is not None and b is not None
        self.a, self.b = (float(a), float(b)) if self.true else (0.0, 0.0)
        self.name = BM3D_TRUE_NAME if self.true else BM3D_NAME
        self.title = ("BM3D after the generalised Anscombe transform, "
                      f"{'true' if self.true else 'estimated'} noise parameters (comparison only, never shipped)")

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        import bm3d

        from ..vst import generalized_anscombe, inverse_generalized_anscombe

        if self.true:
            a, b = self.a, self.b
        else:
            noise = context.noise
            a, b = float(noise.a), float(noise.b)
            if a <= 0 and b <= 0:
                a, b = 0.0, float(noise.sigma) ** 2
        out = np.empty(block.shape, dtype=np.float32)
        for i, image in enumerate(block):
            context.control.step(i / len(block), f"{self.name}: slice {i + 1} of {len(block)}")
            y = generalized_anscombe(image.astype(np.float64), a, b)
            out[i] = inverse_generalized_anscombe(np.asarray(bm3d.bm3d(y, sigma_psd=1.0), dtype=np.float64), a, b)
        return out
