"""Intensity normalisation and its exact inverse: the one place physical units meet network units.

Every method (classical or learned) works on values where the image's dark end is near 0 and its
bright end near 1. :class:`Normalizer` is an affine map ``y = (x - low) / (high - low)`` fitted on
the input; :meth:`Normalizer.inverse` undoes it exactly (float64 parameters), so a method that
returns its input returns the input's physical values (HU in, HU out). Nothing is clipped.

``low``/``high`` are robust percentiles by default so that a few metal or air voxels do not squash
the tissue range; ``"range"`` uses the exact minimum and maximum (used by the low-light simulator,
whose photon counts are defined "at full scale"). Enhancement methods change brightness on purpose:
their output goes to the display range of the source type instead (:func:`display_range`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from .errors import InputError

DEFAULT_PERCENTILES: Tuple[float, float] = (0.5, 99.5)
#: pixel types whose values are display levels, black to white: 8-bit photographs. A 16-bit file (a radiograph,
#: a microscope image) uses its detector's range, not the type's 0-65535, so it keeps its own units.
DISPLAY_TYPES = ("uint8",)


def display_range(dtype: Optional[str]) -> Optional[Tuple[float, float]]:
    """Black and white of an image whose pixel type is a display type (``uint8``: 0-255), else None.

    An enhancement method's output spans this range (clipped) instead of the dark input's own range, so
    it can brighten a dark photograph; CT, MR and float images have no such range and keep their units.
    """
    if dtype is None or str(dtype) not in DISPLAY_TYPES:
        return None
    return 0.0, float(np.iinfo(np.dtype(str(dtype))).max)


@dataclasses.dataclass(frozen=True)
class Normalizer:
    low: float
    high: float

    @classmethod
    def fit(cls, array: np.ndarray, method: str = "percentile",
            percentiles: Tuple[float, float] = DEFAULT_PERCENTILES) -> "Normalizer":
        a = np.asarray(array)
        if method == "range":
            low, high = float(np.min(a)), float(np.max(a))
        elif method == "percentile":
            sample = a.ravel()
            if sample.size > 4_000_000:  # a strided sample is enough for percentiles of big volumes
                sample = sample[:: sample.size // 2_000_000]
            low, high = (float(v) for v in np.percentile(sample, percentiles))
            if high <= low:  # mostly-constant image (e.g. black background): fall back to the range
                low, high = float(np.min(a)), float(np.max(a))
        else:
            raise InputError(f"Unknown normalisation method {method!r}; use 'percentile' or 'range'.")
        if not high > low:
            raise InputError("The image is constant, so its intensities cannot be normalised.")
        return cls(low, high)

    @property
    def scale(self) -> float:
        return self.high - self.low

    def forward(self, array: np.ndarray) -> np.ndarray:
        """Physical units -> normalised float32 (a new array; the input is not modified)."""
        return ((np.asarray(array, dtype=np.float64) - self.low) / self.scale).astype(np.float32)

    def inverse(self, array: np.ndarray) -> np.ndarray:
        """Normalised -> physical units, as float32 (float64 arithmetic)."""
        return (np.asarray(array, dtype=np.float64) * self.scale + self.low).astype(np.float32)

    def to_normalized_sigma(self, sigma: float) -> float:
        return float(sigma) / self.scale

    def to_physical_sigma(self, sigma: float) -> float:
        return float(sigma) * self.scale
