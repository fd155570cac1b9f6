"""Degradation models: simulate low-light and other noisy acquisitions of a clean image.

Every model is a frozen dataclass acting on a *normalised* array (dark end 0, bright end 1) of
any shape (a 2D image, a stack of slices or a 3D volume) with a seeded
:class:`numpy.random.Generator`, so a simulation is reproducible from ``(model, seed)``. The
physics of each model is in its docstring; :meth:`Degradation.noise_profile` gives the true noise
parameters in the :class:`~LowLightDenoiseLib.noise.NoiseProfile` convention (variance
``a * mean + b`` of the degraded image) where such a profile exists.

:func:`simulate_volume` applies a model to a :class:`~LowLightDenoiseLib.volume.Volume` in physical
units (normalise with the exact range, degrade, map back) and :func:`random_degradation` draws the
blind degradations used to train the learned methods.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, ClassVar, Dict, Optional, Sequence, Type, Union

import numpy as np
from scipy import ndimage

from .errors import InputError
from .noise import NoiseProfile
from .normalize import Normalizer
from .volume import Volume, validate_values


def _out(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float32 output for float32 (or integer) input, float64 for float64 input."""
    return y.astype(np.float64 if np.asarray(x).dtype == np.float64 else np.float32)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)


def _finite_number(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"Parameter {name!r} must be a number, got {value!r}.") from None
    _require(math.isfinite(v), f"Parameter {name!r} must be finite, got {value!r}.")
    return v


@dataclasses.dataclass(frozen=True)
class Degradation(abc.ABC):
    """Base class: a noise/darkening model with ``apply(x, rng)`` and its true noise profile."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degraded copy of ``x`` (normalised units; ``x`` itself is not modified)."""

    def noise_profile(self, clean: Optional[np.ndarray] = None) -> Optional[NoiseProfile]:
        """True noise parameters of the degraded image, or ``None`` where the model has none.

        ``sigma`` is the root-mean-square noise standard deviation over ``clean`` when the clean
        image is given, otherwise the standard deviation at a mid-grey (0.5) input.
        """
        return None

    def params(self) -> Dict[str, float]:
        """Parameters as a plain dict (for metadata, reports and :func:`make_degradation`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def describe(self) -> str:
        """One-line human-readable description, e.g. ``lowlight(peak=30, read_noise=1)``."""
        args = ", ".join(f"{k}={v:g}" for k, v in self.params().items())
        return f"{self.name}({args})"

    def _checked_input(self, x: np.ndarray) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        _require(a.size > 0, "The image to degrade is empty.")
        _require(bool(np.all(np.isfinite(a))), "The image to degrade contains NaN or infinite values.")
        return a


@dataclasses.dataclass(frozen=True)
class LowLight(Degradation):
    """Photon-limited acquisition of a dark scene (the low-light model of the project).

    1. Darkening: ``s = brightness * x ** gamma`` (``x`` clipped at 0; ``gamma > 1`` crushes the
       shadows more than the highlights, as a shorter exposure on a non-linear sensor response).
    2. Shot noise: the sensor counts ``N ~ Poisson(peak * s)`` photons, ``peak`` being the
       expected count of a full-scale (``x = 1``) pixel at brightness 1.
    3. Read noise: ``N + r`` with ``r ~ N(0, read_noise**2)`` in photons (electronic noise).
    4. Output in image units: ``y = (N + r) / peak`` (not clipped, so the statistics stay exact).

    Hence ``E[y] = s`` and ``Var[y] = s / peak + (read_noise / peak) ** 2``: a Poisson-Gaussian
    profile with ``a = 1 / peak`` and ``b = (read_noise / peak) ** 2`` in terms of the degraded
    mean ``s``, at any brightness and gamma.
    """

    brightness: float = 1.0
    gamma: float = 1.0
    peak: float = 100.0
    read_noise: float = 0.0
    name: ClassVar[str] = "lowlight"

    def __post_init__(self) -> None:
        b = _finite_number("brightness", self.brightness)
        g = _finite_number("gamma", self.gamma)
        p = _finite_number("peak", self.peak)
        r = _finite_number("read_noise", self.read_noise)
        _require(0 < b <= 1, f"brightness must be in (0, 1], got {self.brightness}.")
        _require(0 < g <= 10, f"gamma must be in (0, 10], got {self.gamma}.")
        _require(0 < p <= 1e9, f"peak (photons at full scale) must be in (0, 1e9], got {self.peak}.")
        _require(r >= 0, f"read_noise must be non-negative, got {self.read_noise}.")

    def darken(self, x: np.ndarray) -> np.ndarray:
        """Noise-free dark image ``brightness * max(x, 0) ** gamma`` (the mean of :meth:`apply`)."""
        return self.brightness * np.power(np.maximum(np.asarray(x, dtype=np.float64), 0.0), self.gamma)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = self.darken(self._checked_input(x))
        counts = rng.poisson(self.peak * s).astype(np.float64)
        if self.read_noise > 0:
            counts += rng.normal(0.0, self.read_noise, size=counts.shape)
        return _out(x, counts / self.peak)

    def noise_profile(self, clean: Optional[np.ndarray] = None) -> NoiseProfile:
        a = 1.0 / self.peak
        b = (self.read_noise / self.peak) ** 2
        mean = float(np.mean(self.darken(clean))) if clean is not None else float(self.darken(np.array(0.5)))
        return NoiseProfile(sigma=math.sqrt(a * mean + b), a=a, b=b)


@dataclasses.dataclass(frozen=True)
class Gaussian(Degradation):
    """Additive white Gaussian noise ``y = x + n``, ``n ~ N(0, sigma**2)`` (thermal/electronic noise)."""

    sigma: float = 0.05
    name: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        s = _finite_number("sigma", self.sigma)
        _require(0 <= s <= 10, f"sigma must be in [0, 10], got {self.sigma}.")

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = self._checked_input(x)
        return _out(x, a + rng.normal(0.0, self.sigma, size=a.shape))

    def noise_profile(self, clean: Optional[np.ndarray] = None) -> NoiseProfile:
        return NoiseProfile(sigma=self.sigma, a=0.0, b=self.sigma ** 2)


@dataclasses.dataclass(frozen=True)
class SaltPepper(Degradation):
    """Impulse noise: a fraction ``amount`` of the pixels, chosen independently, is replaced by
    full scale 1 (salt, probability ``salt_fraction``) or by 0 (pepper): dead/hot detector
    elements and transmission bit errors. Not additive, so it has no noise profile."""

    amount: float = 0.05
    salt_fraction: float = 0.5
    name: ClassVar[str] = "salt_pepper"

    def __post_init__(self) -> None:
        a = _finite_number("amount", self.amount)
        f = _finite_number("salt_fraction", self.salt_fraction)
        _require(0 <= a <= 1, f"amount must be in [0, 1], got {self.amount}.")
        _require(0 <= f <= 1, f"salt_fraction must be in [0, 1], got {self.salt_fraction}.")

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        y = self._checked_input(x).copy()
        u = rng.random(y.shape)
        hit = u < self.amount
        salt = u < self.amount * self.salt_fraction
        y[hit] = 0.0
        y[salt] = 1.0
        return _out(x, y)


@dataclasses.dataclass(frozen=True)
class Speckle(Degradation):
    """Multiplicative speckle of coherent imaging (ultrasound, OCT): ``y = x * m`` with
    ``m ~ Gamma(L, 1/L)``, ``L = 1 / sigma**2`` looks, so ``E[m] = 1`` and ``Var[y] = sigma**2 x**2``
    (fully developed intensity speckle averaged over ``L`` looks; ``L = 1`` is exponential)."""

    sigma: float = 0.2
    name: ClassVar[str] = "speckle"

    def __post_init__(self) -> None:
        s = _finite_number("sigma", self.sigma)
        _require(0 < s <= 2, f"sigma (relative speckle std) must be in (0, 2], got {self.sigma}.")

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = self._checked_input(x)
        looks = 1.0 / self.sigma ** 2
        return _out(x, a * rng.gamma(looks, 1.0 / looks, size=a.shape))

    def noise_profile(self, clean: Optional[np.ndarray] = None) -> Optional[NoiseProfile]:
        if clean is None:
            return None
        rms = float(np.sqrt(np.mean(np.square(np.asarray(clean, dtype=np.float64)))))
        return NoiseProfile(sigma=self.sigma * rms)


@dataclasses.dataclass(frozen=True)
class Rician(Degradation):
    """MR magnitude noise: the complex signal ``x + n1 + i n2`` (``n1, n2 ~ N(0, sigma**2)``,
    independent receiver channels) is reconstructed as ``y = sqrt((x + n1)**2 + n2**2)``. At high
    SNR ``y`` is ~Gaussian around ``x``; at low SNR it is biased upwards (background mean
    ``sigma * sqrt(pi / 2)``, Rayleigh)."""

    sigma: float = 0.05
    name: ClassVar[str] = "rician"

    def __post_init__(self) -> None:
        s = _finite_number("sigma", self.sigma)
        _require(0 <= s <= 10, f"sigma must be in [0, 10], got {self.sigma}.")

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = self._checked_input(x)
        re = a + rng.normal(0.0, self.sigma, size=a.shape)
        im = rng.normal(0.0, self.sigma, size=a.shape)
        return _out(x, np.hypot(re, im))

    def noise_profile(self, clean: Optional[np.ndarray] = None) -> NoiseProfile:
        return NoiseProfile(sigma=self.sigma, a=0.0, b=self.sigma ** 2)


@dataclasses.dataclass(frozen=True)
class CorrelatedGaussian(Degradation):
    """Spatially correlated Gaussian noise, as in CT after filtered back-projection: white noise
    blurred by a Gaussian kernel of standard deviation ``length`` voxels (every axis longer than 1)
    and rescaled by the kernel's energy so that the marginal standard deviation is exactly
    ``sigma``; neighbouring voxels correlate by ~``exp(-1 / (4 length**2))``."""

    sigma: float = 0.05
    length: float = 1.0
    name: ClassVar[str] = "correlated_gaussian"

    def __post_init__(self) -> None:
        s = _finite_number("sigma", self.sigma)
        n = _finite_number("length", self.length)
        _require(0 <= s <= 10, f"sigma must be in [0, 10], got {self.sigma}.")
        _require(0 < n <= 20, f"length (correlation length in voxels) must be in (0, 20], got {self.length}.")

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = self._checked_input(x)
        axes = tuple(i for i, n in enumerate(a.shape) if n > 1)
        white = rng.normal(0.0, 1.0, size=a.shape)
        if not axes:
            return _out(x, a + self.sigma * white)
        noise = white
        for axis in axes:
            noise = ndimage.gaussian_filter1d(noise, self.length, axis=axis, mode="wrap")
        return _out(x, a + self.sigma / math.sqrt(self._kernel_energy()) ** len(axes) * noise)

    def _kernel_energy(self) -> float:
        """Sum of squared weights of scipy's 1D Gaussian kernel: the variance of filtered unit noise."""
        radius = int(4.0 * self.length + 0.5)
        delta = np.zeros(2 * radius + 1)
        delta[radius] = 1.0
        return float(np.sum(np.square(ndimage.gaussian_filter1d(delta, self.length, mode="constant"))))

    def noise_profile(self, clean: Optional[np.ndarray] = None) -> NoiseProfile:
        return NoiseProfile(sigma=self.sigma, a=0.0, b=self.sigma ** 2)


DEGRADATIONS: Dict[str, Type[Degradation]] = {
    cls.name: cls for cls in (LowLight, Gaussian, SaltPepper, Speckle, Rician, CorrelatedGaussian)
}


def make_degradation(name: str, **params: Any) -> Degradation:
    """Build a degradation by name (see :data:`DEGRADATIONS`); bad names or values raise ``InputError``."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in DEGRADATIONS:
        raise InputError(f"Unknown degradation {name!r}; choose one of {', '.join(sorted(DEGRADATIONS))}.")
    cls = DEGRADATIONS[key]
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InputError(f"Degradation {key!r} has no parameter {unknown[0]!r}; its parameters are "
                         f"{', '.join(allowed)}.")
    return cls(**params)


def simulate_volume(volume: Volume, degradation: Union[Degradation, str], seed: int = 0) -> Volume:
    """Degrade a volume in physical units: a new volume, same geometry and units, input untouched.

    The image is mapped to [0, 1] by its exact range (so ``peak`` photons is the count of the
    brightest voxel), degraded, and mapped back with the same affine map; the result is float32.
    A colour image shares one map across its channels, so the whole picture darkens towards black
    and keeps its colour balance (each channel darkened towards its own minimum would leave a
    reddish fundus photograph bright). The degradation and seed are recorded in the metadata.
    """
    if isinstance(degradation, str):
        degradation = make_degradation(degradation)
    if not isinstance(degradation, Degradation):
        raise InputError(f"Expected a degradation model or its name, got {type(degradation).__name__}.")
    validate_values(volume.array)
    rng = np.random.default_rng(seed)
    out = np.empty(volume.array.shape, dtype=np.float32)
    norm = Normalizer.fit(volume.array, "range")  # one map for every channel of a colour image
    for c in range(volume.channels):
        chan = volume.array[..., c] if volume.is_color else volume.array
        y = norm.inverse(degradation.apply(norm.forward(chan), rng))
        if volume.is_color:
            out[..., c] = y
        else:
            out[...] = y
    return volume.with_array(out, degradation=degradation.describe(), degradation_seed=int(seed))


#: Relative frequency of each kind in :func:`random_degradation` (photon-limited light dominates).
DEFAULT_KIND_WEIGHTS: Dict[str, float] = {
    "lowlight": 4.0, "gaussian": 1.0, "salt_pepper": 1.0, "speckle": 1.0, "rician": 1.0,
    "correlated_gaussian": 1.0,
}


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def random_degradation(rng: np.random.Generator, kinds: Optional[Sequence[str]] = None) -> Degradation:
    """Draw a blind training degradation.

    Ranges: ``lowlight`` peak log-uniform 10..1000 photons, read noise 0..3 photons, brightness
    0.1..1, gamma 1..2.5; ``gaussian`` sigma log-uniform 0.01..0.15; ``salt_pepper`` amount
    0.005..0.1, salt fraction 0.2..0.8; ``speckle`` sigma 0.05..0.5; ``rician`` sigma log-uniform
    0.01..0.15; ``correlated_gaussian`` sigma log-uniform 0.01..0.1, length 0.5..2 voxels.
    ``kinds`` restricts the draw (default all, weighted by :data:`DEFAULT_KIND_WEIGHTS`).
    """
    names = list(DEFAULT_KIND_WEIGHTS) if kinds is None else [str(k) for k in kinds]
    _require(len(names) > 0, "random_degradation needs at least one kind.")
    for k in names:
        _require(k in DEGRADATIONS, f"Unknown degradation {k!r}; choose from {', '.join(sorted(DEGRADATIONS))}.")
    w = np.array([DEFAULT_KIND_WEIGHTS[k] for k in names], dtype=np.float64)
    kind = names[int(rng.choice(len(names), p=w / w.sum()))]
    if kind == "lowlight":
        return LowLight(brightness=float(rng.uniform(0.1, 1.0)), gamma=float(rng.uniform(1.0, 2.5)),
                        peak=_log_uniform(rng, 10.0, 1000.0), read_noise=float(rng.uniform(0.0, 3.0)))
    if kind == "gaussian":
        return Gaussian(sigma=_log_uniform(rng, 0.01, 0.15))
    if kind == "salt_pepper":
        return SaltPepper(amount=float(rng.uniform(0.005, 0.1)), salt_fraction=float(rng.uniform(0.2, 0.8)))
    if kind == "speckle":
        return Speckle(sigma=float(rng.uniform(0.05, 0.5)))
    if kind == "rician":
        return Rician(sigma=_log_uniform(rng, 0.01, 0.15))
    return CorrelatedGaussian(sigma=_log_uniform(rng, 0.01, 0.1), length=float(rng.uniform(0.5, 2.0)))
