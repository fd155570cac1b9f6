"""The machinery every classical method shares: the slice loop in 2D, the whole volume in 3D, strength.

See :mod:`.classical` for what the classical methods are and how they choose their parameters.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ..errors import InputError
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
