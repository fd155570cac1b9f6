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

import abc
import math
import warnings
from typing import Any, Dict, Optional, Tuple, Type, Union

import numpy as np

from ..errors import InputError
from ..noise import NoiseProfile
from ..options import check_strength
from .base import Method, MethodContext

VstOption = Union[str, bool]


def _as_float32(block: np.ndarray) -> np.ndarray:
    return np.asarray(block, dtype=np.float32)


class ClassicalMethod(Method):
    """Shared machinery: slice loop in 2D, whole volume in 3D, progress and cancellation."""

    kind = "classical"

    def __init__(self, strength: Optional[float] = None) -> None:
        self.strength = check_strength(strength)

    #: names of the parameters the automatic rule returns (each can be fixed by hand as a keyword)
    parameter_names: Tuple[str, ...] = ()

    def _check_fixed(self, fixed: Dict[str, Any]) -> Dict[str, Any]:
        unknown = sorted(set(fixed) - set(self.parameter_names))
        if unknown:
            raise InputError(f"Method {self.name!r} has no parameter {unknown[0]!r}; "
                             f"it has: {', '.join(self.parameter_names)}.")
        return dict(fixed)

    def resolve_strength(self, context: MethodContext) -> float:
        """The strength multiplier in effect: the constructor's, else the context's, else 1."""
        if self.strength is not None:
            return self.strength
        value = check_strength(context.strength)
        return 1.0 if value is None else value

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        x = _as_float32(block)
        if x.ndim != 3:
            raise InputError(f"Method {self.name!r} expects a 3D block (slices or volume), got {x.ndim}D.")
        if context.spatial_dims not in self.spatial_dims:
            raise InputError(f"Method {self.name!r} cannot run in {context.spatial_dims}D.")
        if context.spatial_dims == 3:
            context.control.check()
            return _as_float32(self.process(x, context)).reshape(x.shape)
        out = np.empty(x.shape, dtype=np.float32)
        n = x.shape[0]
        for i in range(n):
            context.control.step(i / n, f"{self.name}: slice {i + 1} of {n}")
            out[i] = self.process(x[i], context)
        return out

    @abc.abstractmethod
    def process(self, image: np.ndarray, context: MethodContext) -> np.ndarray:
        """Process one 2D slice or one 3D volume (float32, not to be modified in place)."""


# --------------------------------------------------------------------------------------- denoisers


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


class Enhancer(ClassicalMethod):
    """A brightness/contrast method: works on the normalised image clipped to [0, 1].

    The 0.5 % darkest and brightest values that the engine's robust normalisation puts outside
    [0, 1] are clipped first, so the output spans at most the normalised range [0, 1].
    """

    category = "enhance"

    def __init__(self, strength: Optional[float] = None, **fixed: Any) -> None:
        super().__init__(strength)
        self.fixed = self._check_fixed(fixed)

    @abc.abstractmethod
    def parameters(self, image: np.ndarray, sigma: float, strength: float) -> Dict[str, Any]:
        """Automatic parameters for the clipped ``image`` with noise ``sigma``."""

    @abc.abstractmethod
    def enhance(self, image: np.ndarray, params: Dict[str, Any]) -> np.ndarray:
        """Run the enhancement with explicit parameters on an image in [0, 1]."""

    def chosen_parameters(self, image: np.ndarray, context: MethodContext) -> Dict[str, Any]:
        """The parameters this method uses on ``image``, for reports and tests."""
        clipped = np.clip(image, 0.0, 1.0)
        params = self.parameters(clipped, float(context.noise.sigma), self.resolve_strength(context))
        params.update(self.fixed)
        return params

    def process(self, image: np.ndarray, context: MethodContext) -> np.ndarray:
        clipped = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
        if np.ptp(clipped) == 0:
            return clipped.astype(np.float32)
        return _as_float32(self.enhance(clipped, self.chosen_parameters(image, context)))


class HistogramEqualization(Enhancer):
    """Global histogram equalisation (per slice in 2D, per volume in 3D).

    ``strength`` is the blend between the input (0) and the fully equalised image (1, automatic);
    values above 1 count as 1.
    """

    name = "histeq"
    title = "Histogram equalisation"
    parameter_names = ("blend", "bins")

    def parameters(self, image, sigma, strength):
        return {"blend": min(strength, 1.0), "bins": 256}

    def enhance(self, image, params):
        from skimage.exposure import equalize_hist

        with warnings.catch_warnings():  # a slice 3 or 4 pixels wide is not a colour image
            warnings.filterwarnings("ignore", message="This might be a color image")
            equalised = equalize_hist(image, nbins=int(params["bins"]))
        return image + float(params["blend"]) * (equalised - image)


class CLAHE(Enhancer):
    """Contrast-limited adaptive histogram equalisation (scikit-image, 2D and 3D).

    Tiles are 1/8 of each axis (at least 3 pixels); the clip limit is 0.01, lowered in proportion
    when the noise sigma exceeds 0.02 so that flat noisy regions are not amplified.
    ``strength`` multiplies the clip limit.
    """

    name = "clahe"
    title = "CLAHE (contrast-limited adaptive histogram equalisation)"
    parameter_names = ("clip_limit", "kernel_size", "bins")
    min_size = 8

    def parameters(self, image, sigma, strength):
        kernel = [max(3, s // 8) for s in image.shape]
        limit = 0.01 * min(1.0, 0.02 / sigma) if sigma > 0 else 0.01
        return {"clip_limit": strength * limit, "kernel_size": kernel, "bins": 256}

    def enhance(self, image, params):
        from skimage.exposure import equalize_adapthist

        if params["clip_limit"] <= 0:
            return image
        return equalize_adapthist(image, kernel_size=params["kernel_size"],
                                  clip_limit=float(params["clip_limit"]), nbins=int(params["bins"]))


class ContrastStretch(Enhancer):
    """Linear contrast stretch of the ``saturate`` % darkest/brightest percentiles to [0, 1].

    Automatic ``saturate`` is 1 % at each end; ``strength`` multiplies it (0 = min/max stretch).
    """

    name = "contrast-stretch"
    title = "Contrast stretching (percentiles to full range)"
    parameter_names = ("saturate",)

    def parameters(self, image, sigma, strength):
        return {"saturate": float(np.clip(1.0 * strength, 0.0, 49.0))}

    def enhance(self, image, params):
        from skimage.exposure import rescale_intensity

        saturate = float(params["saturate"])
        low, high = np.percentile(image, (saturate, 100.0 - saturate))
        if high <= low:
            return image
        return rescale_intensity(image, in_range=(float(low), float(high)), out_range=(0.0, 1.0))


class GammaCorrection(Enhancer):
    """Power-law (gamma) correction ``y = x ** gamma`` with gamma from the median brightness.

    The automatic gamma maps the median of the image to 0.5 (gamma < 1 brightens a dark image,
    > 1 darkens a bright one), limited to [0.2, 5]; ``strength`` multiplies ``log(gamma)``
    (0 = identity, 2 = the square of the automatic gamma).
    """

    name = "gamma"
    title = "Gamma correction (from the median brightness)"
    parameter_names = ("gamma",)
    min_size = 1

    def parameters(self, image, sigma, strength):
        median = float(np.clip(np.median(image), 1e-3, 1 - 1e-3))
        gamma = float(np.clip(math.log(0.5) / math.log(median), 0.2, 5.0))
        return {"gamma": gamma ** strength}

    def enhance(self, image, params):
        from skimage.exposure import adjust_gamma

        return adjust_gamma(image, gamma=float(params["gamma"]))


class UnsharpMask(Enhancer):
    """Unsharp masking ``x + amount * (x - gaussian(x, radius))`` (scikit-image, 2D and 3D).

    Sharpening amplifies noise, so the automatic ``amount`` (1 on clean images) falls as the noise
    sigma rises (``1 / (1 + (sigma / 0.03)^2)``) and the ``radius`` grows with it (1 to 3 pixels).
    ``strength`` multiplies ``amount``.
    """

    name = "unsharp-mask"
    title = "Unsharp mask (amount from the noise level)"
    parameter_names = ("radius", "amount")

    def parameters(self, image, sigma, strength):
        return {"radius": float(np.clip(1.0 + 20.0 * sigma, 1.0, 3.0)),
                "amount": strength / (1.0 + (sigma / 0.03) ** 2)}

    def enhance(self, image, params):
        from skimage.filters import unsharp_mask

        return unsharp_mask(image, radius=float(params["radius"]), amount=float(params["amount"]),
                            preserve_range=True)


CLASSICAL_METHODS: Dict[str, Type[Method]] = {
    cls.name: cls for cls in (GaussianFilter, MedianFilter, BilateralFilter, AnisotropicDiffusion,
                              TotalVariation, WaveletDenoiser, NonLocalMeans, HistogramEqualization,
                              CLAHE, ContrastStretch, GammaCorrection, UnsharpMask)
}
