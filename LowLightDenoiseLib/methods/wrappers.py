"""Cross-cutting features as methods that wrap a method, so every method and front end gets them.

:class:`FlipAveraging` is test-time averaging (deepinv's ``EquivariantDenoiser`` idea): the mean of
the wrapped method's outputs for several in-plane flips/rotations of the block, each mapped back.
The engine wraps the method when :attr:`~..options.RunOptions.flips` is above 1, for a classical
filter as for a network.
"""
from __future__ import annotations

import numpy as np

from ..options import FLIP_COUNTS
from .base import Method, MethodContext

#: the in-plane flips/rotations of test-time averaging, in the order they are added: (quarter turns, mirrored)
DIHEDRAL = ((0, False), (2, True), (1, False), (3, True), (2, False), (0, True), (3, False), (1, True))


class MethodWrapper(Method):
    """A method that runs another one: it takes the inner method's name, kind and limits."""

    def __init__(self, inner: Method) -> None:
        self.inner = inner
        self.name = inner.name
        self.title = inner.title
        self.kind = inner.kind
        self.category = inner.category
        self.spatial_dims = tuple(inner.spatial_dims)
        self.preferred_dims = inner.preferred_dims
        self.min_size = inner.min_size
        self.uses_device = inner.uses_device
        self.noise_fit = inner.noise_fit

    def describe(self) -> dict:
        return self.inner.describe()

    def columns(self) -> dict:
        return self.inner.columns()


class FlipAveraging(MethodWrapper):
    """The mean of ``inner`` over ``count`` in-plane flips/rotations (axes -2, -1) of each block.

    Each flip is a full run of the inner method, so 8 takes 8 times as long. Rotations by a quarter
    turn swap the in-plane axes; a method that needs square pixels is unaffected since the block's
    pixels keep their own sizes.
    """

    def __init__(self, inner: Method, count: int) -> None:
        if int(count) not in FLIP_COUNTS:
            raise ValueError(f"count must be one of {', '.join(map(str, FLIP_COUNTS))}, not {count!r}.")
        super().__init__(inner)
        self.count = int(count)

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        total = np.zeros(block.shape, dtype=np.float64)
        control = context.control
        for i, (turns, mirrored) in enumerate(DIHEDRAL[:self.count]):
            view = np.rot90(block, turns, axes=(-2, -1))
            view = view[..., ::-1] if mirrored else view
            sub = context.with_control(control.sub(i / self.count, (i + 1) / self.count))
            y = np.asarray(self.inner.apply(np.ascontiguousarray(view), sub), dtype=np.float32)
            y = y[..., ::-1] if mirrored else y
            total += np.rot90(y, -turns, axes=(-2, -1))
        return (total / self.count).astype(np.float32)

    def describe(self) -> dict:
        return dict(self.inner.describe(), flips=self.count)


def unwrap(method: Method) -> Method:
    """The innermost method (e.g. the :class:`~.learned.LearnedMethod` under test-time averaging)."""
    while isinstance(method, MethodWrapper):
        method = method.inner
    return method
