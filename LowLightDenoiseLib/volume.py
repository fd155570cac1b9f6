"""The in-memory image every part of the library exchanges: an array in physical units plus geometry.

Conventions (the same as ITK/SimpleITK and the files on disk):

* ``array`` is always 3D in index order ``(k, j, i)`` = ``(z, y, x)``; a 2D image is stored with
  ``z = 1``. Colour images carry a trailing channel axis: ``(z, y, x, c)``.
* ``spacing`` and ``origin`` are ``(x, y, z)`` in millimetres, ``direction`` is the 3x3 direction
  cosine matrix (row-major, columns are the i, j, k axes), all in LPS like ITK.
  The MRML bridge converts to and from Slicer's RAS.
* Values are in the file's physical units (HU for CT after rescale slope/intercept, raw signal for
  MR, grey levels for photographs); ``source_dtype`` remembers the stored type so that writing back
  can use it.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .errors import InputError


@dataclasses.dataclass
class Volume:
    array: np.ndarray
    spacing: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: Tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    source_dtype: Optional[str] = None
    is_2d: bool = False
    metadata: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array is None or isinstance(self.array, (str, bytes, os.PathLike)):
            raise InputError(f"A Volume needs an array of pixel values (numpy), not {type(self.array).__name__}.")
        a = np.asarray(self.array)
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise InputError(f"A Volume needs numeric pixel values, not {a.dtype} values.")
        if a.ndim == 2:
            a = a[np.newaxis]
            self.is_2d = True
        if a.ndim not in (3, 4):
            raise InputError(f"Expected a 2D or 3D image, got an array with {a.ndim} dimensions.")
        if a.ndim == 4 and a.shape[-1] not in (1, 3, 4):
            raise InputError(
                f"Expected 1, 3 or 4 colour channels, got {a.shape[-1]}: 4D (time series) images are not supported."
            )
        self.array = a
        self.spacing = _numbers(self.spacing, 3, "spacing", "(x, y, z) in mm")
        if not all(s > 0 for s in self.spacing):
            raise InputError(f"The spacing must be positive, not {self.spacing}.")
        self.origin = _numbers(self.origin, 3, "origin", "(x, y, z) in mm")
        self.direction = _numbers(self.direction, 9, "direction", "a 3x3 matrix, row by row")
        if abs(float(np.linalg.det(np.reshape(self.direction, (3, 3))))) < 1e-6:
            raise InputError(f"The direction {self.direction} is not a rotation (its axes are not independent).")
        if self.source_dtype is None:
            self.source_dtype = str(a.dtype)
        if a.shape[0] == 1:
            self.is_2d = True

    @property
    def channels(self) -> int:
        """Number of colour channels (1 for a scalar image)."""
        return 1 if self.array.ndim == 3 else int(self.array.shape[-1])

    @property
    def is_color(self) -> bool:
        return self.array.ndim == 4

    @property
    def spatial_shape(self) -> Tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape[:3])  # type: ignore[return-value]

    def with_array(self, array: np.ndarray, **metadata: Any) -> "Volume":
        """A new volume with the same geometry and a new array (the original is left untouched)."""
        meta = dict(self.metadata)
        meta.update(metadata)
        return Volume(
            array=array,
            spacing=self.spacing,
            origin=self.origin,
            direction=self.direction,
            source_dtype=self.source_dtype,
            is_2d=self.is_2d,
            metadata=meta,
        )

    def same_geometry(self, other: "Volume", tol: float = 1e-6) -> bool:
        return (
            self.array.shape[:3] == other.array.shape[:3]
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )


def _numbers(values: Any, count: int, what: str, meaning: str) -> tuple:
    """``values`` as a tuple of ``count`` finite floats, or one sentence."""
    try:
        numbers = tuple(float(v) for v in np.asarray(values, dtype=float).ravel())
    except (TypeError, ValueError):
        raise InputError(f"The {what} must be {count} numbers ({meaning}), not {values!r}.") from None
    if len(numbers) != count or np.ndim(values) > 2:
        raise InputError(f"The {what} must be {count} numbers ({meaning}), not {len(numbers)}.")
    if not all(np.isfinite(numbers)):
        raise InputError(f"The {what} must be finite numbers, not {numbers}.")
    return numbers


def geometry_difference(first: Volume, second: Volume, rtol: float = 1e-4, atol: float = 1e-3) -> Optional[str]:
    """``None`` when both volumes lie on the same voxel grid, else what differs, in words.

    Spacing and origin (mm) are compared to 1e-3 mm plus 1e-4 relative (file formats round them), the
    direction cosines to 1e-3.
    """
    def mm(values: Tuple[float, ...]) -> str:
        return " x ".join(f"{v:g}" for v in values)

    if first.array.shape[:3] != second.array.shape[:3] or first.channels != second.channels:
        return f"size {' x '.join(map(str, first.array.shape))} vs {' x '.join(map(str, second.array.shape))}"
    if not np.allclose(first.spacing, second.spacing, rtol=rtol, atol=atol):
        return f"spacing {mm(first.spacing)} mm vs {mm(second.spacing)} mm"
    if not np.allclose(first.origin, second.origin, rtol=rtol, atol=atol):
        return f"origin {mm(first.origin)} mm vs {mm(second.origin)} mm"
    if not np.allclose(first.direction, second.direction, atol=1e-3):
        return "orientation (direction cosines)"
    return None


def validate_values(array: np.ndarray, what: str = "The input image") -> None:
    """Raise :class:`InputError` with one sentence if ``array`` cannot be denoised.

    Rejects non-numeric data, boolean masks, NaN or infinite values, and constant images (no signal to
    work on).
    """
    a = np.asarray(array)
    if a.size == 0:
        raise InputError(f"{what} is empty.")
    if a.dtype == bool:
        raise InputError(f"{what} is a yes/no mask (boolean values), not an image with grey levels; "
                         "there is nothing to denoise.")
    if not np.issubdtype(a.dtype, np.number):
        raise InputError(f"{what} has non-numeric pixel type {a.dtype}.")
    if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
        if np.iscomplexobj(a):
            raise InputError(f"{what} has complex values; give its magnitude instead.")
        bad = ~np.isfinite(a)
        if bad.any():
            n = int(bad.sum())
            raise InputError(f"{what} contains {n} NaN or infinite value(s); fix or mask them first.")
    lo, hi = np.min(a), np.max(a)
    if lo == hi:
        raise InputError(f"{what} is constant (every value is {lo}); there is nothing to denoise.")
