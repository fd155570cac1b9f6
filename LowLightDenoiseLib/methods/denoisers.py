"""Classical denoisers: Gaussian, median, bilateral, anisotropic diffusion, total variation, wavelets, NLM.

Each picks its parameters from the engine's noise estimate (or by J-invariant self-calibration), in the
variance-stabilised domain for photon-limited noise; see :mod:`.classical`.
"""
from __future__ import annotations

import abc
import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import InputError
from ..noise import NoiseProfile
from .base import MethodContext
from .classical_base import ClassicalMethod, VstOption, _as_float32


class Denoiser(ClassicalMethod):
    """A noise-removing method with automatic parameters and an optional variance stabilisation.

    Subclasses implement :meth:`parameters` (the automatic rule, for Gaussian noise of standard
    deviation ``sigma`` in the units of the image they will see) and :meth:`denoise`.
    """

    category = "denoise"
    #: a 3D neighbourhood averages more voxels than a 2D one (and slices are often thicker than
    #: pixels), so in 3D the automatic strength is multiplied by this factor (tuned on CT and MR)
    factor_3d: float = 0.7

    def __init__(self, strength: Optional[float] = None, vst: VstOption = "auto",
                 calibrate: bool = False, **fixed: Any) -> None:
        super().__init__(strength)
        if vst not in ("auto", True, False):
            raise InputError(f"The vst option must be 'auto', True or False, not {vst!r}.")
        self.vst = vst
        self.calibrate = bool(calibrate)
        self.fixed = self._check_fixed(fixed)

    def columns(self) -> Dict[str, Any]:
        """A self-calibrated run says so in the results table (``calibrate``)."""
        return {"calibrate": True} if self.calibrate else {}

    @abc.abstractmethod
    def parameters(self, image: np.ndarray, sigma: float, strength: float) -> Dict[str, Any]:
        """Automatic parameters for ``image`` with Gaussian noise ``sigma`` at this strength."""

    @abc.abstractmethod
    def denoise(self, image: np.ndarray, params: Dict[str, Any]) -> np.ndarray:
        """Run the filter with explicit parameters."""

    def uses_vst(self, image: np.ndarray, noise: NoiseProfile) -> bool:
        """Whether to denoise in the variance-stabilised domain for this image and noise."""
        if self.vst is False or noise.a <= 0:
            return False
        if self.vst is True:
            return True
        return noise.a * max(float(np.median(image)), 0.0) > noise.b

    def chosen_parameters(self, image: np.ndarray, context: MethodContext) -> Dict[str, Any]:
        """The parameters this method uses on ``image`` (after any VST), for reports and tests."""
        stabilised, sigma, _ = self._domain(image, context.noise)
        return self._params(stabilised, sigma, context)

    def _domain(self, image: np.ndarray, noise: NoiseProfile) -> Tuple[np.ndarray, float, bool]:
        """The image to denoise (stabilised or not), its noise sigma there, and whether it is stabilised."""
        if self.uses_vst(image, noise):
            from ..vst import generalized_anscombe

            return generalized_anscombe(image, noise.a, noise.b), 1.0, True
        return image, float(noise.sigma), False

    def _params(self, image: np.ndarray, sigma: float, context: MethodContext) -> Dict[str, Any]:
        strength = self.resolve_strength(context)
        if self.calibrate and self.strength is None and context.strength is None:
            strength = self._calibrated_strength(image, sigma)
        elif image.ndim == 3:
            strength *= self.factor_3d
        params = self.parameters(image, max(sigma, 0.0), strength)
        params.update(self.fixed)
        return params

    def _calibrated_strength(self, image: np.ndarray, sigma: float) -> float:
        """J-invariant self-supervised choice of the strength multiplier on a central crop."""
        from skimage.restoration import calibrate_denoiser

        crop_size = 64 if image.ndim == 2 else 32
        crop = image[tuple(slice(max(0, (s - crop_size) // 2), max(0, (s - crop_size) // 2) + crop_size)
                           for s in image.shape)]
        grid = {"strength": [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]}

        def run(img: np.ndarray, strength: float) -> np.ndarray:
            return self.denoise(img, {**self.parameters(img, sigma, strength), **self.fixed})

        _, (tested, losses) = calibrate_denoiser(np.asarray(crop, dtype=np.float64), run, grid,
                                                 stride=3 if image.ndim == 2 else 2, extra_output=True)
        return float(tested[int(np.argmin(losses))]["strength"])

    def process(self, image: np.ndarray, context: MethodContext) -> np.ndarray:
        if self.resolve_strength(context) == 0 and not self.fixed:
            return image.copy()
        work, sigma, stabilised = self._domain(image, context.noise)
        if sigma <= 0:
            return image.copy()
        params = self._params(work, sigma, context)
        out = self.denoise(np.asarray(work, dtype=np.float32), params)
        if stabilised:
            from ..vst import inverse_generalized_anscombe

            out = inverse_generalized_anscombe(np.asarray(out, dtype=np.float64), context.noise.a, context.noise.b)
        return _as_float32(out)


def _sitk_filter(image: np.ndarray, fn, *args: Any) -> np.ndarray:
    import SimpleITK as sitk

    result = fn(sitk.GetImageFromArray(np.asarray(image, dtype=np.float32)), *args)
    return sitk.GetArrayFromImage(result).astype(np.float32)


def _spread(image: np.ndarray) -> float:
    """Robust intensity range of ``image`` (0.5-99.5 percentiles), to express noise relative to it."""
    low, high = np.percentile(image, (0.5, 99.5))
    return float(high - low) if high > low else 1.0


def _relative_noise(image: np.ndarray, sigma: float) -> float:
    return sigma / _spread(image)


def _round_footprint(radius: int, ndim: int) -> np.ndarray:
    """Pixels within ``radius + 0.5`` of the centre: radius 1 is the full 3 x 3 square in 2D."""
    grid = np.indices((2 * radius + 1,) * ndim) - radius
    return (grid ** 2).sum(axis=0) <= (radius + 0.5) ** 2


class GaussianFilter(Denoiser):
    """Gaussian smoothing; its width (pixels) grows with the noise level relative to the contrast.

    ``strength`` multiplies the blur standard deviation ``blur``.
    """

    name = "gaussian"
    title = "Gaussian smoothing (width from the noise level)"
    factor_3d = 0.6
    parameter_names = ("blur",)

    def parameters(self, image, sigma, strength):
        rel = _relative_noise(image, sigma)
        return {"blur": strength * float(np.clip(4.0 * rel ** 0.5, 0.3, 4.0))}

    def denoise(self, image, params):
        from skimage.filters import gaussian

        return gaussian(image, sigma=params["blur"], mode="reflect", preserve_range=True)


class MedianFilter(Denoiser):
    """Median filter; its radius (pixels) grows with the relative noise level.

    The footprint holds the pixels within ``radius + 0.5`` (a disk in 2D, a ball in 3D);
    ``strength`` multiplies the radius.
    """

    name = "median"
    title = "Median filter (radius from the noise level)"
    factor_3d = 0.5
    parameter_names = ("radius",)

    def parameters(self, image, sigma, strength):
        rel = _relative_noise(image, sigma)
        return {"radius": int(math.floor(0.5 + strength * float(np.clip(30.0 * rel, 1.0, 4.0))))}

    def denoise(self, image, params):
        from scipy.ndimage import median_filter

        radius = int(params["radius"])
        if radius < 1:
            return image.copy()
        return median_filter(image, footprint=_round_footprint(radius, image.ndim), mode="reflect")


class BilateralFilter(Denoiser):
    """Edge-preserving bilateral filter (SimpleITK, 2D and 3D).

    ``range_sigma`` (intensity) is a multiple of the noise sigma so that noise differences are
    averaged and edges above the noise are kept; ``spatial_sigma`` (pixels) grows with the
    relative noise. ``strength`` multiplies ``range_sigma``.
    """

    name = "bilateral"
    title = "Bilateral filter (range sigma from the noise level)"
    factor_3d = 1.0
    parameter_names = ("spatial_sigma", "range_sigma")

    def parameters(self, image, sigma, strength):
        rel = _relative_noise(image, sigma)
        return {"spatial_sigma": float(np.clip(6.0 * rel ** 0.5, 1.0, 3.0 if image.ndim == 2 else 1.0)),
                "range_sigma": strength * 3.0 * sigma}

    def denoise(self, image, params):
        import SimpleITK as sitk

        if params["range_sigma"] <= 0:
            return image.copy()
        return _sitk_filter(image, sitk.Bilateral, float(params["spatial_sigma"]),
                            float(params["range_sigma"]), 64)


class AnisotropicDiffusion(Denoiser):
    """Anisotropic diffusion (SimpleITK): curvature flow (default) or Perona-Malik gradient flow.

    ITK's conductance is relative to the image's mean gradient magnitude, so it needs no
    intensity scaling; the number of iterations grows with the relative noise level.
    ``strength`` multiplies the number of iterations (the diffusion time).
    """

    name = "anisotropic-diffusion"
    title = "Anisotropic diffusion (curvature / Perona-Malik)"
    factor_3d = 0.6
    parameter_names = ("iterations", "conductance", "time_step", "variant")

    def parameters(self, image, sigma, strength):
        rel = _relative_noise(image, sigma)
        return {"iterations": int(round(strength * float(np.clip(950.0 * rel ** 1.5, 1.0, 100.0)))),
                "conductance": 1.5, "time_step": 0.0625 if image.ndim == 2 else 0.03,
                "variant": "curvature"}

    def denoise(self, image, params):
        import SimpleITK as sitk

        iterations = int(params["iterations"])
        if iterations < 1:
            return image.copy()
        variant = params["variant"]
        if variant not in ("curvature", "gradient"):
            raise InputError(f"Unknown anisotropic diffusion variant {variant!r}; use 'curvature' or 'gradient'.")
        fn = sitk.CurvatureAnisotropicDiffusion if variant == "curvature" else sitk.GradientAnisotropicDiffusion
        return _sitk_filter(image, fn, float(params["time_step"]), float(params["conductance"]), 1, iterations)


class TotalVariation(Denoiser):
    """Total-variation denoising (Chambolle's algorithm, scikit-image, 2D and 3D).

    The TV weight is a multiple of the noise sigma; ``strength`` multiplies the weight.
    """

    name = "tv"
    title = "Total variation (Chambolle)"
    factor_3d = 0.6
    parameter_names = ("weight",)

    def parameters(self, image, sigma, strength):
        return {"weight": strength * sigma}

    def denoise(self, image, params):
        from skimage.restoration import denoise_tv_chambolle

        if params["weight"] <= 0:
            return image.copy()
        return denoise_tv_chambolle(image, weight=float(params["weight"]), max_num_iter=100)


class WaveletDenoiser(Denoiser):
    """Wavelet shrinkage with BayesShrink thresholds (scikit-image), cycle-spun once per axis.

    The thresholds follow from the noise sigma; ``strength`` multiplies that sigma.
    """

    name = "wavelet"
    title = "Wavelet BayesShrink"
    min_size = 6  # one decomposition level of the db2 wavelet without boundary-only coefficients
    factor_3d = 1.0
    parameter_names = ("sigma", "wavelet", "cycle_spin")

    def parameters(self, image, sigma, strength):
        return {"sigma": strength * sigma, "wavelet": "db2", "cycle_spin": 1}

    def denoise(self, image, params):
        from skimage.restoration import cycle_spin, denoise_wavelet

        if params["sigma"] <= 0:
            return image.copy()
        kwargs = {"sigma": float(params["sigma"]), "wavelet": params["wavelet"], "mode": "soft",
                  "method": "BayesShrink", "rescale_sigma": True}
        shifts = int(params["cycle_spin"])
        if shifts <= 0:
            return denoise_wavelet(image, **kwargs)
        return cycle_spin(image, denoise_wavelet, max_shifts=shifts, func_kw=kwargs, **_serial_cycle_spin())


def _serial_cycle_spin() -> Dict[str, int]:
    """Keyword that runs :func:`skimage.restoration.cycle_spin` serially (renamed in scikit-image 0.25)."""
    import inspect

    from skimage.restoration import cycle_spin

    return {"workers": 1} if "workers" in inspect.signature(cycle_spin).parameters else {"num_workers": 1}


class NonLocalMeans(Denoiser):
    """Non-local means (scikit-image, fast mode, 2D and 3D).

    The filtering parameter ``h`` is a multiple of the noise sigma (which is also passed so that
    the expected noise distance is subtracted); ``strength`` multiplies ``h``. Patches are 5 pixels
    (3 in 3D) and the search window is 13 pixels (7 in 3D) so that a 512 x 512 slice takes well
    under a second.
    """

    name = "nlm"
    title = "Non-local means (fast mode)"
    factor_3d = 0.6
    parameter_names = ("h", "patch_size", "patch_distance", "sigma")

    def parameters(self, image, sigma, strength):
        return {"h": strength * 0.7 * sigma, "sigma": sigma,
                "patch_size": 5 if image.ndim == 2 else 3, "patch_distance": 6 if image.ndim == 2 else 3}

    def denoise(self, image, params):
        from skimage.restoration import denoise_nl_means

        if params["h"] <= 0:
            return image.copy()
        return denoise_nl_means(np.asarray(image, dtype=np.float32), h=float(params["h"]),
                                sigma=float(params["sigma"]), patch_size=int(params["patch_size"]),
                                patch_distance=int(params["patch_distance"]), fast_mode=True,
                                preserve_range=True)
