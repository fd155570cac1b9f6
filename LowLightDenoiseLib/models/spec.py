"""What a model is, apart from its weights: :class:`ModelSpec`, its input configuration, and weights files.

The input configuration says how a normalised image becomes network input and how the output comes
back; :func:`prepare_input` and :func:`finish_output` are the only implementation, shared with the
training code so a model sees at inference exactly what it saw in training:

* ``{"noise_map": true}`` adds a channel holding the estimated per-pixel noise standard deviation
  (``NoiseProfile.std_at(x)``; in the VST domain, the constant noise level there);
* ``{"vst": true}`` runs the network in the generalised-Anscombe domain (:mod:`..vst`), rescaled
  by the fixed affine map that sends ``f(0), f(1)`` to ``0, 1`` (so the image keeps its [0, 1]
  range and the stabilised noise has standard deviation ``1 / (f(1) - f(0))``); the output goes
  back through the exact unbiased inverse (``"vst_inverse": "unbiased"``, the default, right for
  a denoised estimate) or the algebraic one (``"algebraic"``);
* ``{"preserve_means": true}`` (inference only, see :mod:`..methods.learned`): intensities far below the
  normalisation window pass the network by, and the output keeps the input's local means.

Weights are safetensors, or a ``torch.save`` state dict read with ``weights_only=True``; nothing is
ever unpickled.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ..errors import ModelNotAvailableError
from ..noise import NoiseProfile

INPUT_DEFAULTS: Dict[str, Any] = {"noise_map": False, "vst": False, "vst_inverse": "unbiased", "preserve_means": False}
VST_INVERSES = ("unbiased", "algebraic")
CATEGORIES = ("denoise", "enhance")


def validate_input_config(input_config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The input configuration with defaults filled in; unknown keys or bad values raise ValueError."""
    cfg = dict(INPUT_DEFAULTS)
    given = dict(input_config or {})
    unknown = sorted(set(given) - set(INPUT_DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown input configuration key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(INPUT_DEFAULTS))}.")
    cfg.update(given)
    for key in ("noise_map", "vst", "preserve_means"):
        if not isinstance(cfg[key], bool):
            raise ValueError(f"Input configuration {key!r} must be true or false, not {cfg[key]!r}.")
    if cfg["vst_inverse"] not in VST_INVERSES:
        raise ValueError(f"vst_inverse must be one of {', '.join(VST_INVERSES)}, not {cfg['vst_inverse']!r}.")
    return cfg


def input_channels(input_config: Optional[Dict[str, Any]]) -> int:
    """Number of network input channels the configuration produces (image, plus noise map)."""
    return 1 + int(validate_input_config(input_config)["noise_map"])


def vst_parameters(noise: NoiseProfile) -> Tuple[float, float]:
    """``(a, b)`` of the Poisson-Gaussian model; a Gaussian-only profile becomes ``(0, sigma**2)``."""
    if noise.a > 0 or noise.b > 0:
        return float(noise.a), float(noise.b)
    return 0.0, max(float(noise.sigma) ** 2, 1e-12)


def _vst_frame(a: float, b: float) -> Tuple[float, float]:
    """``f(0)`` and ``f(1) - f(0)``: the fixed rescaling of the VST domain back to [0, 1]."""
    from ..vst import generalized_anscombe

    ends = generalized_anscombe(np.array([0.0, 1.0]), a, b)
    return float(ends[0]), float(ends[1] - ends[0])


def prepare_input(x: np.ndarray, noise: NoiseProfile, input_config: Optional[Dict[str, Any]] = None) -> np.ndarray:
    """Normalised image (any spatial shape) -> network input ``(C, *x.shape)`` float32 (``x`` untouched)."""
    cfg = validate_input_config(input_config)
    x = np.asarray(x, dtype=np.float32)
    if cfg["vst"]:
        from ..vst import generalized_anscombe

        a, b = vst_parameters(noise)
        offset, span = _vst_frame(a, b)
        image = (generalized_anscombe(x.astype(np.float64), a, b) - offset) / span
        sigma_map = np.full(x.shape, 1.0 / span)
    else:
        image = x
        sigma_map = noise.std_at(x) if cfg["noise_map"] else None
    channels = [image]
    if cfg["noise_map"]:
        channels.append(sigma_map)
    return np.stack([np.asarray(c, dtype=np.float32) for c in channels])


def prepare_target(clean: np.ndarray, noise: NoiseProfile,
                   input_config: Optional[Dict[str, Any]] = None) -> np.ndarray:
    """A training target ``(1, *clean.shape)`` in the network's output domain (the image channel of
    :func:`prepare_input` applied to the clean image).

    With ``vst``, a network trained against this target estimates ``f(clean)``, whose right inverse is
    ``"vst_inverse": "algebraic"``; ``"unbiased"`` suits networks that estimate ``E[f(noisy)]``
    (e.g. trained with noisy targets in the VST domain).
    """
    cfg = dict(validate_input_config(input_config), noise_map=False)
    return prepare_input(clean, noise, cfg)


def finish_output(y: np.ndarray, x: np.ndarray, noise: NoiseProfile,
                  input_config: Optional[Dict[str, Any]] = None) -> np.ndarray:
    """Network output (``x.shape`` or ``(1, *x.shape)``) -> normalised image like ``x``, float32."""
    cfg = validate_input_config(input_config)
    y = np.asarray(y)
    shape = np.shape(x)
    if y.shape == (1,) + tuple(shape):
        y = y[0]
    if y.shape != tuple(shape):
        raise ValueError(f"Network output has shape {y.shape}, expected {tuple(shape)}.")
    if cfg["vst"]:
        from ..vst import algebraic_inverse_generalized_anscombe, inverse_generalized_anscombe

        a, b = vst_parameters(noise)
        offset, span = _vst_frame(a, b)
        inverse = inverse_generalized_anscombe if cfg["vst_inverse"] == "unbiased" \
            else algebraic_inverse_generalized_anscombe
        y = inverse(y.astype(np.float64) * span + offset, a, b)
    return np.asarray(y, dtype=np.float32)


def _size_multiple(architecture: str, network: Dict[str, Any]) -> Union[int, Tuple[int, ...]]:
    """Tile sides must be a multiple of this (per axis for a tuple) so every down-sampling level divides evenly."""
    if architecture == "slab_unet":
        return (1, 16, 16)  # any number of slices: only the in-plane sides are down-sampled
    if architecture in ("unet", "dualpath", "oidn_unet"):
        return 16
    if architecture == "dae":
        return 2 ** (len(network.get("features", (32, 64, 128))) - 1)
    return 1


@dataclasses.dataclass
class ModelSpec:
    """What is needed to build a model's network and feed it: everything but the weights."""

    name: str
    architecture: str
    spatial_dims: int
    network: Dict[str, Any] = dataclasses.field(default_factory=dict)
    input: Dict[str, Any] = dataclasses.field(default_factory=dict)
    category: str = "denoise"
    title: str = ""
    version: str = ""
    min_size: int = 8

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"Model {self.name!r}: spatial_dims must be 2 or 3, not {self.spatial_dims!r}.")
        if self.category not in CATEGORIES:
            raise ValueError(f"Model {self.name!r}: category must be one of {', '.join(CATEGORIES)}.")
        self.input = validate_input_config(self.input)
        self.network = dict(self.network)

    @property
    def in_channels(self) -> int:
        return input_channels(self.input)

    @property
    def size_multiple(self) -> Union[int, Tuple[int, ...]]:
        return _size_multiple(self.architecture, self.network)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelSpec":
        """Build from a registry entry or a weights file's metadata (extra keys are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def build_network(self) -> "Any":
        """A freshly initialised network for this spec (``torch.nn.Module``)."""
        from .networks import build_network

        try:
            return build_network(self.architecture, self.spatial_dims, self.in_channels, **self.network)
        except (ValueError, TypeError) as error:
            raise ModelNotAvailableError(f"Model {self.name!r} cannot be built: {error}") from error


def save_weights(path: Union[str, Path], network: Any, spec: Optional[ModelSpec] = None) -> Path:
    """Write ``network``'s state dict as safetensors (with the spec as JSON metadata)."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in network.state_dict().items()}
    metadata = {"spec": json.dumps(spec.to_dict())} if spec is not None else None
    save_file(state, str(path), metadata=metadata)
    return path


def load_state_dict(path: Union[str, Path]) -> Dict[str, Any]:
    """Tensors of a weights file: safetensors, or a ``torch.save`` dict read with ``weights_only=True``."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if path.suffix in (".pt", ".pth"):
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise ValueError("not a state dict")
            return state
    except FileNotFoundError as error:
        raise ModelNotAvailableError(f"The weights file {path} does not exist.") from error
    except Exception as error:  # noqa: BLE001 - any parse failure means an unusable file
        raise ModelNotAvailableError(f"The weights file {path} cannot be read ({type(error).__name__}); "
                                     "it is damaged or not a weights file.") from error
    raise ModelNotAvailableError(f"The weights file {path} is neither .safetensors nor .pt/.pth.")


