"""Classical denoisers and enhancers behind the common :class:`~.base.Method` interface.

Every method works on normalised intensities (dark end ~0, bright end ~1) as the engine hands
them over, on a stack of 2D slices (each slice on its own) or on one 3D volume, and returns a new
float32 block of the same shape; the input block is never modified.

Denoisers pick their parameters by themselves, because clinical images have no clean reference:

* from the engine's noise estimate ``context.noise`` (Gaussian ``sigma``; Poisson-Gaussian
  ``a``, ``b`` with variance ``a * x + b``), through the rules of each class below, which were
  tuned on the real CT, MR and X-ray crops of ``Testing/Data`` degraded by photon-limited noise;
* optionally (``calibrate=True``) by self-supervised J-invariant calibration
  (:func:`skimage.restoration.calibrate_denoiser`) of the strength multiplier on a central crop.

For photon-limited input the denoisers run in the variance-stabilised domain (generalised
Anscombe transform, :mod:`LowLightDenoiseLib.vst`), where the noise is Gaussian with unit
variance; ``vst="auto"`` does so when the signal-dependent part ``a * median(x)`` of the noise
variance exceeds the constant part ``b``.

``context.strength`` (or the ``strength`` option) is a multiplier of the automatic strength of
every method, from 0 to :data:`~LowLightDenoiseLib.options.MAX_STRENGTH`: 1 is the automatic
choice, larger smooths (or enhances) more, smaller less, 0 leaves a denoiser's input unchanged.
What it multiplies is written in each class docstring.
"""
from __future__ import annotations

from typing import Dict, Type

from .base import Method
from .classical_base import ClassicalMethod
from .denoisers import (AnisotropicDiffusion, BilateralFilter, Denoiser, GaussianFilter, MedianFilter,
                        NonLocalMeans, TotalVariation, WaveletDenoiser)
from .enhancers import CLAHE, ContrastStretch, Enhancer, GammaCorrection, HistogramEqualization, UnsharpMask

__all__ = ["CLASSICAL_METHODS", "ClassicalMethod", "Denoiser", "Enhancer"]

CLASSICAL_METHODS: Dict[str, Type[Method]] = {
    cls.name: cls for cls in (GaussianFilter, MedianFilter, BilateralFilter, AnisotropicDiffusion,
                              TotalVariation, WaveletDenoiser, NonLocalMeans, HistogramEqualization,
                              CLAHE, ContrastStretch, GammaCorrection, UnsharpMask)
}
