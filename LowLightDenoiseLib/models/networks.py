"""Denoising networks built from MONAI blocks; every one works in 2D or 3D (``spatial_dims``).

All networks take ``in_channels`` input channels (channel 0 is the image, further channels can
carry a noise-level map) and return one channel: the restored image in the same normalised units.

* ``dncnn``: DnCNN-style residual CNN (Zhang et al. 2017): conv-BN-ReLU stack predicting the noise.
* ``unet``: U-Net with skip connections (MONAI ``BasicUNet``), residual output.
* ``dae``: CNN feature extractor (strided conv encoder) with a denoising auto-encoder decoder,
  no skip connections, residual output.
* ``dualpath``: multiscale dual-path network: a U-Net path that removes noise and a global
  brightness/contrast path that predicts per-pixel curve parameters (Zero-DCE style quadratic
  curves) applied to the denoised image, for dark photographs and radiographs.
* ``slab_unet`` (3D only): a 2.5D network for volumes: every output slice comes from a 2D network
  applied to a slab of ``2 * neighbours + 1`` input slices stacked as channels (the slice itself
  first): this project's U-Net, or (``inner: "oidn_unet"``) OIDN's, every slice through its transfer
  function. It takes the 2D network's weights (:func:`initialise_from`) with the neighbours' input
  weights at zero, so it starts as exactly that 2D model and training only adds what the
  neighbouring slices tell.
* ``oidn_unet`` (2D only): the U-Net of Intel Open Image Denoise (:mod:`.oidn`), with OIDN's own
  trained weights converted by ``train/convert_oidn.py``, as it is or as the start of a fine-tuned model.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers import Act, Norm
from monai.networks.nets import BasicUNet
from torch import nn

from .oidn import OIDNUNet


class DnCNN(nn.Module):
    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, features: int = 64, depth: int = 17) -> None:
        super().__init__()
        layers = [Convolution(spatial_dims, in_channels, features, act=Act.RELU, norm=None)]
        for _ in range(depth - 2):
            layers.append(Convolution(spatial_dims, features, features, act=Act.RELU, norm=Norm.BATCH, bias=False))
        layers.append(Convolution(spatial_dims, features, 1, conv_only=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] - self.body(x)


class ResidualUNet(nn.Module):
    def __init__(self, spatial_dims: int = 2, in_channels: int = 1,
                 features: Sequence[int] = (32, 32, 64, 128, 256, 32), norm: Any = ("instance", {"affine": True})
                 ) -> None:
        super().__init__()
        # norm="batch" keeps absolute intensity and noise levels visible to the network (instance
        # normalisation removes the constant part of a noise-map channel)
        self.net = BasicUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1,
                             features=tuple(features), act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
                             norm=tuple(norm) if isinstance(norm, list) else norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + self.net(x)


class DenoisingAutoencoder(nn.Module):
    """Strided-conv feature extractor + transposed-conv decoder (no skips), residual output."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, features: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        enc, ch = [], in_channels
        for i, f in enumerate(features):
            enc.append(Convolution(spatial_dims, ch, f, strides=1 if i == 0 else 2, act=Act.PRELU, norm=Norm.BATCH))
            enc.append(Convolution(spatial_dims, f, f, act=Act.PRELU, norm=Norm.BATCH))
            ch = f
        self.encoder = nn.Sequential(*enc)
        dec = []
        for f in reversed(features[:-1]):
            dec.append(Convolution(spatial_dims, ch, f, strides=2, is_transposed=True, act=Act.PRELU, norm=Norm.BATCH))
            dec.append(Convolution(spatial_dims, f, f, act=Act.PRELU, norm=Norm.BATCH))
            ch = f
        dec.append(Convolution(spatial_dims, ch, 1, conv_only=True))
        self.decoder = nn.Sequential(*dec)
        self.multiple = 2 ** (len(features) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for s in reversed(x.shape[2:]):
            extra = (-s) % self.multiple
            pads.extend([0, extra])
        xp = nn.functional.pad(x, pads, mode="replicate") if any(pads) else x
        y = self.decoder(self.encoder(xp))
        y = y[(slice(None), slice(None)) + tuple(slice(0, s) for s in x.shape[2:])]
        return x[:, :1] - y


class DualPathNet(nn.Module):
    """Noise path (residual U-Net) + brightness/contrast path (global curve estimation)."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1,
                 features: Sequence[int] = (32, 32, 64, 128, 256, 32), curve_features: int = 32,
                 iterations: int = 4, context_scale: int = 4) -> None:
        super().__init__()
        self.noise_path = ResidualUNet(spatial_dims, in_channels, features)
        pool = nn.AvgPool2d if spatial_dims == 2 else nn.AvgPool3d
        self.down = pool(context_scale)
        self.curve_path = nn.Sequential(
            Convolution(spatial_dims, in_channels, curve_features, act=Act.RELU, norm=None),
            Convolution(spatial_dims, curve_features, curve_features, act=Act.RELU, norm=None, dilation=2, padding=2),
            Convolution(spatial_dims, curve_features, curve_features, act=Act.RELU, norm=None, dilation=4, padding=4),
            Convolution(spatial_dims, curve_features, iterations, conv_only=True),
        )
        self.iterations = iterations
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        denoised = self.noise_path(x)
        small = self.down(x) if min(x.shape[2:]) >= 2 * self.down.kernel_size else x
        alphas = torch.tanh(self.curve_path(small))
        alphas = nn.functional.interpolate(alphas, size=x.shape[2:], mode=self.mode, align_corners=False)
        y = denoised
        for i in range(self.iterations):
            y = y + alphas[:, i:i + 1] * y * (1 - y)
        return y


class SlabUNet(nn.Module):
    """2.5D U-Net: ``(B, C, D, H, W) -> (B, 1, D, H, W)``, each slice denoised from its slab of neighbours.

    Slab channels are ordered slice, then neighbours at -1, +1, -2, +2, ... (``C`` channels each),
    so channel 0 is the slice's own image (the residual base) and channels ``:C`` are what a 2D
    model with ``C`` input channels sees. Beyond the volume's ends the slab is mirrored (slice -1
    is slice 1: a real slice with its own noise), or repeated when the volume is too thin to mirror.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, neighbours: int = 2,
                 features: Sequence[int] = (32, 32, 64, 128, 256, 32), norm: Any = None, inner: str = "unet",
                 **inner_options: Any) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError("slab_unet is a network for volumes: spatial_dims must be 3.")
        if int(neighbours) < 1:
            raise ValueError(f"slab_unet needs at least one neighbour on each side, not {neighbours}.")
        self.neighbours = int(neighbours)
        self.slice_channels = int(in_channels)
        channels = in_channels * (2 * self.neighbours + 1)
        if inner == "oidn_unet":  # every slice of the slab is an image for OIDN's transfer function
            self.unet2d: nn.Module = OIDNUNet(2, channels, features, image_stride=self.slice_channels,
                                              **inner_options)
        elif inner == "unet" and not inner_options:
            self.unet2d = ResidualUNet(2, channels, features, norm)
        else:
            raise ValueError(f"slab_unet's inner network is 'unet' or 'oidn_unet' (with its options), not {inner!r}"
                             f"{' with ' + ', '.join(sorted(inner_options)) if inner_options else ''}.")

    def offsets(self) -> Sequence[int]:
        return [0] + [s * k for k in range(1, self.neighbours + 1) for s in (-1, 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, d, h, w = x.shape
        y = self.unet2d(self.slab_batch(x))  # (B * D, 1, H, W)
        return y.reshape(b, d, 1, h, w).transpose(1, 2)

    def slab_batch(self, x: torch.Tensor, start: int = 0, stop: Optional[int] = None) -> torch.Tensor:
        """What :meth:`forward` gives its 2D U-Net for slices ``start:stop`` of ``x`` ``(B, C, D, H, W)``:
        a ``(B * n, C', H, W)`` batch of slabs whose neighbours come from the whole volume, so a volume
        can be run a few slices at a time (and tiled in-plane like a 2D model) with the same result."""
        b, c, d, h, w = x.shape
        stop = d if stop is None else int(stop)
        if not 0 <= start < stop <= d:
            raise ValueError(f"Slices {start}:{stop} are not within a volume of {d} slices.")
        index = torch.arange(start, stop)
        planes = []
        for offset in self.offsets():
            j = index + offset
            if d > self.neighbours:  # mirrored about the end slices
                j = torch.where(j < 0, -j, j)
                j = torch.where(j >= d, 2 * (d - 1) - j, j)
            else:  # too thin to mirror: the end slices repeated
                j = j.clamp(0, d - 1)
            planes.append(x[:, :, j])
        slab = torch.cat(planes, dim=1)  # (B, C', n, H, W)
        return slab.transpose(1, 2).reshape(b * (stop - start), slab.shape[1], h, w)

    def inflate_2d_state(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """A 2D ``unet`` (or ``oidn_unet``) state dict (same features, ``slice_channels`` inputs) as this network's
        state: the input convolutions' weights go to the slice's own channels, zeros to the neighbours'."""
        if isinstance(self.unet2d, OIDNUNet):  # its own rule: new inputs at zero, surplus outputs averaged
            return {f"unet2d.{k}": v for k, v in self.unet2d.adapt_state(state).items()}
        own = self.state_dict()
        out = {}
        for key, value in state.items():
            target = own.get(f"unet2d.{key}")
            if target is None:
                raise ValueError(f"The 2D weights hold {key!r}, which a slab_unet of these features lacks.")
            if value.shape != target.shape:
                if value.ndim != 4 or value.shape[1] != self.slice_channels or \
                        (value.shape[0],) + tuple(value.shape[2:]) != (target.shape[0],) + tuple(target.shape[2:]):
                    raise ValueError(f"The 2D weights' {key!r} has shape {tuple(value.shape)}, which does not "
                                     f"inflate to {tuple(target.shape)}.")
                inflated = torch.zeros_like(target)
                inflated[:, :self.slice_channels] = value
                value = inflated
            out[f"unet2d.{key}"] = value
        missing = sorted(set(own) - set(out))
        if missing:
            raise ValueError(f"The 2D weights lack {missing[:3]}.")
        return out


NETWORKS: Dict[str, Callable[..., nn.Module]] = {
    "dncnn": DnCNN,
    "unet": ResidualUNet,
    "dae": DenoisingAutoencoder,
    "dualpath": DualPathNet,
    "slab_unet": SlabUNet,
    "oidn_unet": OIDNUNet,
}


def build_network(architecture: str, spatial_dims: int = 2, in_channels: int = 1, **kwargs: Any) -> nn.Module:
    """Instantiate a registered architecture by name."""
    if architecture not in NETWORKS:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {', '.join(sorted(NETWORKS))}.")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, not {spatial_dims}.")
    return NETWORKS[architecture](spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)


def initialise_from(model: nn.Module, state: Dict[str, torch.Tensor]) -> str:
    """Load ``state`` into ``model`` before training: the same network's weights strictly, or, for a
    ``slab_unet``, a 2D ``unet``'s (inflated, :meth:`SlabUNet.inflate_2d_state`). Returns what was done."""
    if isinstance(model, SlabUNet) and not any(k.startswith("unet2d.") for k in state):
        model.load_state_dict(model.inflate_2d_state(state), strict=True)
        return "2D U-Net weights inflated to the slab (neighbour inputs start at zero)"
    if isinstance(model, OIDNUNet):
        adapted = model.adapt_state(state)
        model.load_state_dict(adapted, strict=True)
        changed = [k for k in adapted if adapted[k] is not state[k]]
        return "OIDN U-Net weights" + (f", adapted ({', '.join(changed)}: new inputs at zero, outputs averaged)"
                                       if changed else "")
    model.load_state_dict(state, strict=True)
    return "same network's weights"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
