"""Learned methods: a network (:mod:`..models`) plus its weights, behind the common interface.

A model is described by a :class:`~..models.spec.ModelSpec` (architecture, 2D or 3D, network keyword
arguments and an input configuration) and a weights file; :class:`LearnedMethod` runs it tile by
tile with bounded memory (:mod:`..models.inference`).

``strength`` (:mod:`..options`) has the meaning it has for every method: 1 (the default) is the
network's output, 0 returns the input, values between blend ``x + strength * (net(x) - x)`` and keep
some of the original texture, values above 1 tell the network the noise is ``strength`` times
stronger than estimated (its noise-map channel and variance-stabilising transform), so it smooths
more.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import InputError, ModelNotAvailableError
from ..models.spec import ModelSpec, finish_output, load_state_dict, prepare_input
from ..options import check_strength
from .base import Method, MethodContext

#: a 2.5D model runs a volume this many slices at a time (their slabs held in memory at once)
SLAB_SLICES_PER_PASS = 16
# A model whose input configuration has ``"preserve_means": true`` (the shipped denoisers; not a model that
# must reproduce another program, such as OIDN) keeps the input's intensity levels, in two ways:
#
# * it sees nothing darker than ``-(FLOOR_MARGIN + FLOOR_SIGMAS * noise std at 0)`` (normalised units); what
#   lies below (gas at -2000 HU, -3024 HU padding under the 0.5 % percentile of the window) passes the network
#   by its offset. The networks never saw such values and the VST folds everything below its own floor onto
#   one value: a 6 x 6 padding corner came out 214 HU too bright (12 HU now). Air's noise stays above the floor.
# * its output keeps the input's local means: the residual ``input - output``, clipped to +-MEAN_CLIP_SIGMAS
#   noise standard deviations (removed noise counts, removed structure does not), is smoothed in-plane by a
#   Gaussian of MEAN_SIGMA_PIXELS and added back. On a Poisson-noise phantom the flat blocks were +6 to +18 HU
#   off (0.06-0.18 noise sigma; volume-2.5d the most), -3 to +6 HU now; PSNR on the CT and MR crops at peak
#   300/100/30 changes by -0.02 to +0.18 dB. The clip uses the larger noise std at the input and at the output:
#   at 2 photons (read noise 0) a bound from the input alone (zero-photon pixels predict almost no noise) made
#   CT 170 HU too bright and cost 5.6 dB (validation CT, 6 x 192 x 192: 20.97 -> 26.58 dB, shift -1.8 HU).
FLOOR_MARGIN = 0.05
FLOOR_SIGMAS = 4.0
MEAN_SIGMA_PIXELS = 8.0
MEAN_CLIP_SIGMAS = 3.0


def keep_local_means(block: np.ndarray, out: np.ndarray, noise: Any) -> np.ndarray:
    """``out`` plus the in-plane low-pass of the clipped residual ``block - out`` (see :data:`MEAN_SIGMA_PIXELS`)."""
    from scipy.ndimage import gaussian_filter

    x = np.asarray(block, dtype=np.float64)
    y = np.asarray(out, dtype=np.float64)
    # The noise std at the output (the clean level's estimate) or at the input, whichever is larger: at a
    # few photons a noisy pixel of 0 photons has almost no predicted noise, and a bound taken there alone
    # clipped every dark pixel's residual (+170 HU on CT at 2 photons).
    std = np.maximum(noise.std_at(np.maximum(y, 0.0)), noise.std_at(x))
    bound = MEAN_CLIP_SIGMAS * np.asarray(std, dtype=np.float64)
    residual = np.clip(x - y, -bound, bound)
    sigma = (0.0,) * (x.ndim - 2) + (MEAN_SIGMA_PIXELS, MEAN_SIGMA_PIXELS)
    return (y + gaussian_filter(residual, sigma=sigma, mode="reflect")).astype(np.float32)


class LearnedMethod(Method):
    """A trained network run tile by tile (:mod:`..models.inference`), 2D models slice-wise, 3D ones on volumes."""

    kind = "learned"
    uses_device = True

    def __init__(self, spec: ModelSpec, network: Any, device: str = "cpu", settings: Any = None,
                 weights_path: Optional[Union[str, Path]] = None) -> None:
        from ..models.inference import InferenceSettings

        self.spec = spec
        self.name = spec.name
        self.title = spec.title or f"{spec.architecture} ({spec.spatial_dims}D learned model)"
        self.category = spec.category
        self.spatial_dims = (spec.spatial_dims,)
        self.preferred_dims = spec.spatial_dims
        self.min_size = int(spec.min_size)
        self.network = network.eval()
        self.device = device
        self.settings = settings if settings is not None else InferenceSettings()
        self.weights_path = Path(weights_path) if weights_path is not None else None
        #: the tiling report of the most recent block (diagnostics only: tiles, retries, device)
        self.last_report: Any = None
        # caches, not state: activation elements per voxel by network, and the tile plan (and the device
        # that did not run out of memory) by input shape
        self._elements: Dict[int, float] = {}
        self._memo: Dict[Tuple[str, Tuple[int, ...]], Tuple[str, Any]] = {}

    @classmethod
    def from_weights(cls, spec: ModelSpec, weights: Union[str, Path, Dict[str, Any]], device: str = "cpu",
                     settings: Any = None) -> "LearnedMethod":
        """Build the network of ``spec`` and load ``weights`` (a file or a state dict), strictly."""
        network = spec.build_network()
        state = load_state_dict(weights) if isinstance(weights, (str, Path)) else weights
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as error:
            where = f"in {weights} " if isinstance(weights, (str, Path)) else ""
            raise ModelNotAvailableError(
                f"The weights {where}do not fit model {spec.name!r} ({spec.architecture}, "
                f"{spec.spatial_dims}D); the file belongs to another model or version.") from error
        return cls(spec, network, device=device, settings=settings,
                   weights_path=weights if isinstance(weights, (str, Path)) else None)

    def _denoise(self, block: np.ndarray, noise: Any, context: MethodContext) -> np.ndarray:
        """One pass of the network over a normalised block: input channels, tiles, output in the block's units."""
        import torch

        channels = prepare_input(block, noise, self.spec.input)
        requested = str(context.device or self.device)
        control = context.control
        slab_batch = getattr(self.network, "slab_batch", None)
        if self.spec.spatial_dims == 2:
            x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(channels, 0, 1)))  # (n, C, h, w)
            out = self._run(x, self.network, 2, self.spec.size_multiple, requested, control,
                            context.warnings).numpy()[:, 0]
        elif slab_batch is not None:
            # 2.5D: each slice's slab (its neighbours from the whole volume) through the 2D U-Net, a few
            # slices at a time and tiled in-plane like a 2D model: the same result as one pass over the
            # volume, without 3D tiles that overlap along the slices
            volume = torch.from_numpy(channels[np.newaxis])  # (1, C, d, h, w)
            depth = volume.shape[2]
            parts = []
            for start in range(0, depth, SLAB_SLICES_PER_PASS):
                stop = min(depth, start + SLAB_SLICES_PER_PASS)
                parts.append(self._run(slab_batch(volume, start, stop), self.network.unet2d, 2,
                                       tuple(self.spec.size_multiple)[1:], requested,
                                       control.sub(start / depth, stop / depth), context.warnings, start > 0))
            out = torch.cat(parts).numpy()[:, 0]
        else:
            x = torch.from_numpy(channels[np.newaxis])  # (1, C, d, h, w)
            out = self._run(x, self.network, 3, self.spec.size_multiple, requested, control,
                            context.warnings).numpy()[0, 0]
        return finish_output(out, block, noise, self.spec.input)

    def _run(self, x: Any, network: Any, dims: int, multiple: Any, requested: str, control: Any,
             warnings: List[str], continued: bool = False) -> Any:
        """``x`` (N, C, *spatial) through ``network`` with the tiling engine; the plan (and a device that ran
        out of memory) is remembered per shape. ``continued``: another part of the same block (reports merged)."""
        from ..models.inference import activation_elements_per_voxel, bytes_per_voxel, infer, model_predictor

        device, plan = self._memo.get((requested, tuple(x.shape)), (requested, None))
        if device != requested and not continued:
            warnings.append(f"Running on the {device.upper()}: {requested} ran out of memory on an earlier "
                            "block of this size.")
        if id(network) not in self._elements:
            self._elements[id(network)] = activation_elements_per_voxel(network, dims, x.shape[1])
        amp = self.settings.amp and device.startswith("cuda")
        y, report = infer(x, lambda d: model_predictor(network, d, self.settings.amp), device,
                          voxel_bytes=bytes_per_voxel(self._elements[id(network)], x.shape[1], amp),
                          control=control, settings=self.settings, multiple=multiple, plan=plan)
        self._memo[(requested, tuple(x.shape))] = (report.device, report.plans[-1])
        warnings.extend(report.warnings)
        if continued and self.last_report is not None:
            merged = self.last_report
            merged.plans.extend(report.plans)
            merged.warnings.extend(report.warnings)
            merged.windows += report.windows
            merged.seconds += report.seconds
            merged.device = report.device
            merged.fell_back_to_cpu = merged.fell_back_to_cpu or report.fell_back_to_cpu
        else:
            self.last_report = report
        return y

    def describe(self) -> dict:
        row = super().describe()
        row.update({"architecture": self.spec.architecture, "version": self.spec.version,
                    "input": dict(self.spec.input)})
        return row

    @staticmethod
    def floor(noise: Any) -> float:
        """The darkest normalised value a denoising model is given (see :data:`FLOOR_MARGIN`)."""
        return -(FLOOR_MARGIN + FLOOR_SIGMAS * float(np.asarray(noise.std_at(np.zeros(1)))[0]))

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        if context.spatial_dims != self.spec.spatial_dims:
            raise InputError(f"Model {self.name!r} is a {self.spec.spatial_dims}D model; "
                             f"use --mode {self.spec.spatial_dims}d.")
        strength = check_strength(context.strength)
        strength = 1.0 if strength is None else strength
        if strength == 0.0:
            return np.array(block, dtype=np.float32)
        noise = context.noise.scaled(strength) if strength > 1.0 else context.noise
        preserve = bool(self.spec.input.get("preserve_means")) and self.category == "denoise"
        floor = self.floor(context.noise)
        if preserve and float(np.min(block)) < floor:
            inside = np.maximum(block, np.float32(floor))
            out = self._denoise(inside, noise, context) + (np.asarray(block, dtype=np.float32) - inside)
        else:
            out = self._denoise(block, noise, context)
        if preserve:
            out = keep_local_means(block, out, context.noise)
        if strength < 1.0:
            block64 = np.asarray(block, dtype=np.float64)
            out = (block64 + strength * (out - block64)).astype(np.float32)
        return out
