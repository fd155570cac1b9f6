"""The one interface every denoising or enhancement method implements, classical or learned.

The engine (:mod:`LowLightDenoiseLib.pipeline`) owns everything around a method: validation,
normalisation and its inverse, colour channels, the 2D slice-wise or 3D choice, batching, progress
and cancellation. A method only maps a *block* of normalised intensities to a block of the same
shape:

* ``context.spatial_dims == 2``: ``block`` is a stack of 2D slices ``(n, h, w)``, each processed
  on its own;
* ``context.spatial_dims == 3``: ``block`` is one volume ``(d, h, w)``.

So the command line, the benchmark, training evaluation and the Slicer module treat a median filter
and a U-Net exactly the same way.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, List, Optional, Tuple

import numpy as np

from ..noise import NoiseProfile
from ..progress import RunControl

if TYPE_CHECKING:
    from ..volume import Volume


@dataclasses.dataclass
class MethodContext:
    """What a method may use besides the block itself, for one run of the engine.

    A method keeps no state between runs: what it wants to tell the user (an out-of-memory retry, a
    CPU fallback) goes into ``warnings``, the list the engine created for this run.
    """

    spatial_dims: int
    noise: NoiseProfile
    control: RunControl = dataclasses.field(default_factory=RunControl)
    device: str = "cpu"
    #: None or 1 the automatic strength, 0 the input unchanged, up to 3 stronger (see :mod:`..options`)
    strength: Optional[float] = None
    seed: int = 0
    warnings: List[str] = dataclasses.field(default_factory=list)

    def with_control(self, control: RunControl) -> "MethodContext":
        """The same context reporting through ``control`` (the warnings list is shared)."""
        return dataclasses.replace(self, control=control)


class Method(abc.ABC):
    """A denoiser or enhancer behind the common interface."""

    #: short identifier used on the command line, in tables and in Slicer (e.g. ``"nlm"``, ``"default-2d"``)
    name: str = ""
    #: one-line human description
    title: str = ""
    #: ``"classical"`` or ``"learned"``
    kind: str = "classical"
    #: ``"denoise"`` (keeps intensities) or ``"enhance"`` (changes brightness/contrast on purpose)
    category: str = "denoise"
    #: spatial dimensionalities the method can run in
    spatial_dims: Tuple[int, ...] = (2, 3)
    #: what ``mode="auto"`` picks when both are possible
    preferred_dims: int = 2
    #: smallest in-plane (and, in 3D, through-plane) size the method accepts
    min_size: int = 3
    #: whether the method runs on the chosen device (a GPU); the others always run on the CPU
    uses_device: bool = False
    #: the Poisson-Gaussian fit the engine gives the method (``MethodContext.noise``): ``"constrained"`` (``b >= 0``,
    #: the fit every shipped model was trained with and every automatic rule tuned with, so their outputs stay as
    #: measured) or ``"free"`` (``b`` may be negative: the photon gain right, what ``estimate-noise`` reports); see
    #: :func:`~..noise.estimate_poisson_gaussian`
    noise_fit: str = "constrained"

    @abc.abstractmethod
    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        """Return the processed block (float32, same shape); never modify ``block`` in place."""

    def for_volume(self, volume: "Volume", axis: int = 0) -> "Method":
        """The method that runs on ``volume`` (sliced along ``axis`` in 2D), chosen once before the engine starts:
        itself, except for a method that chooses by the image (``auto``, :mod:`.auto`), which returns what it
        chose."""
        return self

    def describe(self) -> dict:
        return {"name": self.name, "title": self.title, "kind": self.kind, "category": self.category,
                "spatial_dims": list(self.spatial_dims),
                "preferred_dims": self.preferred_dims, "min_size": self.min_size}

    def columns(self) -> dict:
        """What a results table records about this method besides its name (e.g. an adapted model's
        adaptation: :mod:`.adaptation`); empty for most methods."""
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
