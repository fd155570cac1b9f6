"""Classical enhancers: histogram equalisation, CLAHE, contrast stretch, gamma and unsharp masking.

They change brightness and contrast on purpose (category ``enhance``); see :mod:`.classical`.
"""
from __future__ import annotations

import abc
import math
import warnings
from typing import Any, Dict, Optional

import numpy as np

from .base import MethodContext
from .classical_base import ClassicalMethod, _as_float32


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
