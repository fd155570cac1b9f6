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
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers import Act, Norm
from monai.networks.nets import BasicUNet
from torch import nn


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


NETWORKS: Dict[str, Callable[..., nn.Module]] = {
    "dncnn": DnCNN,
    "unet": ResidualUNet,
    "dae": DenoisingAutoencoder,
    "dualpath": DualPathNet,
}


def build_network(architecture: str, spatial_dims: int = 2, in_channels: int = 1, **kwargs: Any) -> nn.Module:
    """Instantiate a registered architecture by name."""
    if architecture not in NETWORKS:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {', '.join(sorted(NETWORKS))}.")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, not {spatial_dims}.")
    return NETWORKS[architecture](spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
