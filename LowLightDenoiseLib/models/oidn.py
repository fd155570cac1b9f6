"""The U-Net of Intel Open Image Denoise (OIDN), written for this project from OIDN's public description.

OIDN (https://www.openimagedenoise.org, Apache-2.0) denoises rendered images with a U-Net trained on
a large set of path-traced scenes. Its trained weights ship inside OIDN's core library as tensor
archives; ``train/convert_oidn.py`` reads them out (with this project's own archive reader) into a
safetensors file of this module's network. Nothing here imports OIDN or its Python bindings.

The network (``architecture: "oidn_unet"``), per OIDN's filter graph: 3x3 convolutions with ReLU,
2x2 max pooling after ``enc_conv1..4``, nearest-neighbour 2x up-sampling, and skip connections by
channel concatenation (the last one with the network input itself)::

    enc_conv0 -> enc_conv1 -> pool -> enc_conv2 -> pool -> enc_conv3 -> pool -> enc_conv4 -> pool
    -> enc_conv5a -> enc_conv5b -> up, cat pool3 -> dec_conv4a -> dec_conv4b -> up, cat pool2
    -> dec_conv3a -> dec_conv3b -> up, cat pool1 -> dec_conv2a -> dec_conv2b -> up, cat input
    -> dec_conv1a -> dec_conv1b -> dec_conv0

``features`` gives the eleven widths ``ec1..ec5, dc4, dc3, dc2a, dc2b, dc1a, dc1b``: OIDN's "balanced"
models use :data:`OIDN_BASE` (0.91 M parameters with 3 colour channels), its "fast" ones
:data:`OIDN_SMALL`.

``transfer`` says what happens around the U-Net:

* ``"pu"`` / ``"srgb"`` / ``"log"`` (OIDN as it is: HDR colour, LDR colour and light-map filters): the
  image channel is multiplied by ``input_scale``, sanitised (NaN to 0, clamped to ``[0, 65504]``, or
  ``[0, 1]`` for ``srgb``), sent through OIDN's transfer function into the network's domain; the output
  is clamped at 0, sent back through the inverse, averaged over its colour channels (OIDN's rule for a
  one-channel output image) and divided by ``input_scale``. ``clamp: false`` leaves out the clamp of the
  output (its zero gradient below 0 stalls a network trained from random weights). A grey image is OIDN's colour input with
  three equal channels, so the converted weights of ``enc_conv0`` and of the input part of
  ``dec_conv1a`` are summed over the three colours (exact for equal channels).
* ``"none"``: the U-Net alone, on whatever the model's input configuration produces (e.g. the
  generalised-Anscombe image plus its noise level), with a linear output: the start of a fine-tuned model.

``in_channels`` beyond the first (a noise-level channel) enter the network as they are, and are part
of the last skip connection, as OIDN's auxiliary images are. With ``image_stride`` ``s`` the channels
``0, s, 2s, ...`` are all images (the slices of a 2.5D slab, :class:`~.networks.SlabUNet`): each is scaled and
transferred like the first, the others still enter as they are.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Sequence, Tuple

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers import Act
from torch import nn
from torch.nn import functional as F

#: widths ec1, ec2, ec3, ec4, ec5, dc4, dc3, dc2a, dc2b, dc1a, dc1b of OIDN's "balanced" U-Net
OIDN_BASE: Tuple[int, ...] = (32, 48, 64, 80, 96, 112, 96, 64, 64, 64, 32)
#: the same for OIDN's "fast" (small) U-Net
OIDN_SMALL: Tuple[int, ...] = (32, 32, 32, 32, 32, 64, 64, 64, 32, 32, 32)
TRANSFERS = ("pu", "srgb", "log", "none")
#: largest HDR value OIDN accepts (float16's maximum); the transfer functions map it to 1
HDR_MAX = 65504.0

# OIDN's perceptually uniform ("PU") curve, fitted to PU encoding by OIDN's authors (piecewise:
# linear, power, logarithm); the constants are OIDN's
_PU_A, _PU_B, _PU_C, _PU_D = 1.41283765e+03, 1.64593172e+00, 4.31384981e-01, -2.94139609e-03
_PU_E, _PU_F, _PU_G = 1.92653254e-01, 6.26026094e-03, 9.98620152e-01
_PU_Y0, _PU_Y1 = 1.57945760e-06, 3.22087631e-02
_PU_X0, _PU_X1 = 2.23151711e-03, 3.70974749e-01


def _pu_forward(y: torch.Tensor) -> torch.Tensor:
    power = _PU_B * torch.pow(y.clamp_min(_PU_Y0), _PU_C) + _PU_D
    log = _PU_E * torch.log(y + _PU_F) + _PU_G
    return torch.where(y <= _PU_Y0, _PU_A * y, torch.where(y <= _PU_Y1, power, log))


def _pu_inverse(x: torch.Tensor) -> torch.Tensor:
    power = torch.pow(((x - _PU_D) / _PU_B).clamp_min(0.0), 1.0 / _PU_C)
    exp = torch.exp((x - _PU_G) / _PU_E) - _PU_F
    return torch.where(x <= _PU_X0, x / _PU_A, torch.where(x <= _PU_X1, power, exp))


_PU_NORM = 1.0 / float(_pu_forward(torch.tensor(HDR_MAX, dtype=torch.float32)))
_LOG_NORM = 1.0 / math.log(HDR_MAX + 1.0)


def _srgb_forward(y: torch.Tensor) -> torch.Tensor:
    return torch.where(y <= 0.0031308, 12.92 * y, 1.055 * torch.pow(y.clamp_min(0.0031308), 1.0 / 2.4) - 0.055)


def _srgb_inverse(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, torch.pow(((x + 0.055) / 1.055).clamp_min(0.0), 2.4))


def transfer_forward(kind: str, y: torch.Tensor) -> torch.Tensor:
    """OIDN's transfer function ``kind`` from linear values into the network's domain."""
    if kind == "pu":
        return _pu_forward(y) * _PU_NORM
    if kind == "srgb":
        return _srgb_forward(y)
    if kind == "log":
        return torch.log(y + 1.0) * _LOG_NORM
    return y


def transfer_inverse(kind: str, x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`transfer_forward`."""
    if kind == "pu":
        return _pu_inverse(x / _PU_NORM)
    if kind == "srgb":
        return _srgb_inverse(x)
    if kind == "log":
        return torch.exp(x / _LOG_NORM) - 1.0
    return x


class OIDNUNet(nn.Module):
    """OIDN's U-Net (2D); see the module's description for ``features``, ``transfer`` and ``input_scale``."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, features: Sequence[int] = OIDN_BASE,
                 out_channels: int = 1, transfer: str = "none", input_scale: float = 1.0,
                 clamp: bool = True, image_stride: int = 0) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("oidn_unet is a 2D network: spatial_dims must be 2.")
        if transfer not in TRANSFERS:
            raise ValueError(f"transfer must be one of {', '.join(TRANSFERS)}, not {transfer!r}.")
        widths = [int(f) for f in features]
        if len(widths) != 11 or min(widths) < 1:
            raise ValueError(f"oidn_unet needs 11 positive widths (ec1..ec5, dc4, dc3, dc2a, dc2b, dc1a, dc1b), "
                             f"not {list(features)}.")
        if not float(input_scale) > 0:
            raise ValueError(f"input_scale must be positive, not {input_scale}.")
        ec1, ec2, ec3, ec4, ec5, dc4, dc3, dc2a, dc2b, dc1a, dc1b = widths
        self.transfer = transfer
        self.input_scale = float(input_scale)
        self.clamp = bool(clamp)
        self.in_channels = int(in_channels)
        stride = int(image_stride) or self.in_channels
        if stride < 1 or self.in_channels % stride:
            raise ValueError(f"image_stride must divide in_channels ({self.in_channels}), not {image_stride}.")
        #: the input channels that are images (scaled, sanitised, transferred); the rest enter as they are
        self.images = list(range(0, self.in_channels, stride))

        def conv(cin: int, cout: int, relu: bool = True) -> nn.Module:
            if relu:
                return Convolution(2, cin, cout, kernel_size=3, act=Act.RELU, norm=None)
            return Convolution(2, cin, cout, kernel_size=3, conv_only=True)

        ic = self.in_channels
        self.enc_conv0 = conv(ic, ec1)
        self.enc_conv1 = conv(ec1, ec1)
        self.enc_conv2 = conv(ec1, ec2)
        self.enc_conv3 = conv(ec2, ec3)
        self.enc_conv4 = conv(ec3, ec4)
        self.enc_conv5a = conv(ec4, ec5)
        self.enc_conv5b = conv(ec5, ec5)
        self.dec_conv4a = conv(ec5 + ec3, dc4)
        self.dec_conv4b = conv(dc4, dc4)
        self.dec_conv3a = conv(dc4 + ec2, dc3)
        self.dec_conv3b = conv(dc3, dc3)
        self.dec_conv2a = conv(dc3 + ec1, dc2a)
        self.dec_conv2b = conv(dc2a, dc2b)
        self.dec_conv1a = conv(dc2b + ic, dc1a)
        self.dec_conv1b = conv(dc1a, dc1b)
        # OIDN clamps its output at 0 (the ReLU of its graph); a fine-tuned model's output stays linear
        self.dec_conv0 = conv(dc1b, int(out_channels), relu=False)

    def unet(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net itself, on ``(B, in_channels, H, W)`` with ``H`` and ``W`` multiples of 16."""
        pool = lambda t: F.max_pool2d(t, 2, 2)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
        pool1 = pool(self.enc_conv1(self.enc_conv0(x)))
        pool2 = pool(self.enc_conv2(pool1))
        pool3 = pool(self.enc_conv3(pool2))
        y = pool(self.enc_conv4(pool3))
        y = self.enc_conv5b(self.enc_conv5a(y))
        y = self.dec_conv4b(self.dec_conv4a(torch.cat((up(y), pool3), 1)))
        y = self.dec_conv3b(self.dec_conv3a(torch.cat((up(y), pool2), 1)))
        y = self.dec_conv2b(self.dec_conv2a(torch.cat((up(y), pool1), 1)))
        y = self.dec_conv1b(self.dec_conv1a(torch.cat((up(y), x), 1)))
        return self.dec_conv0(y)

    def _images(self, x: torch.Tensor, change: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``x`` with ``change`` applied to its image channels (:attr:`images`)."""
        if self.images == [0]:
            return torch.cat((change(x[:, :1]), x[:, 1:]), 1)
        channels = list(torch.unbind(x, 1))
        for i in self.images:
            channels[i] = change(channels[i].unsqueeze(1))[:, 0]
        return torch.stack(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % 16, (-w) % 16
        if self.transfer == "none":  # the image channels scaled into the range the weights expect, and back
            x = self._images(x, lambda t: t * self.input_scale) if self.input_scale != 1.0 else x
            xp = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
            y = self.unet(xp)[..., :h, :w]
            y = y.mean(dim=1, keepdim=True) if y.shape[1] > 1 else y
            return y / self.input_scale if self.input_scale != 1.0 else y

        def to_network(image: torch.Tensor) -> torch.Tensor:
            image = torch.nan_to_num(image.float() * self.input_scale, nan=0.0, posinf=HDR_MAX, neginf=0.0)
            return transfer_forward(self.transfer, image.clamp(0.0, 1.0 if self.transfer == "srgb" else HDR_MAX))

        v = self._images(x.float(), to_network)
        if pad_h or pad_w:  # OIDN pads its tiles with zeros
            v = F.pad(v, (0, pad_w, 0, pad_h))
        y = self.unet(v)[..., :h, :w].float()
        y = torch.nan_to_num(y, nan=0.0)
        y = transfer_inverse(self.transfer, y.clamp_min(0.0) if self.clamp else y)
        y = y.mean(dim=1, keepdim=True)
        if self.transfer == "srgb":
            y = y.clamp_max(1.0)
        return y / self.input_scale


    def adapt_state(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Weights of another ``oidn_unet`` of the same widths (e.g. OIDN's as converted: one image input,
        three outputs) as this network's: missing input channels get zero weights (a noise-level channel
        starts by changing nothing), surplus output channels are averaged (OIDN's rule for one output)."""
        own = self.state_dict()
        out = {}
        for key, value in state.items():
            target = own.get(key)
            if target is None:
                raise ValueError(f"The weights hold {key!r}, which this oidn_unet lacks.")
            if value.shape != target.shape and key.startswith("dec_conv0.") and value.shape[0] > target.shape[0] == 1:
                value = value.mean(dim=0, keepdim=True)
            elif value.shape != target.shape and key.endswith("weight") and value.ndim == 4 and \
                    value.shape[1] < target.shape[1] and (key.startswith("enc_conv0.") or key.startswith("dec_conv1a.")):
                grown = torch.zeros_like(target)
                grown[:, :value.shape[1]] = value
                value = grown
            if value.shape != target.shape:
                raise ValueError(f"The weights' {key!r} has shape {tuple(value.shape)}, which does not adapt to "
                                 f"{tuple(target.shape)}.")
            out[key] = value
        missing = sorted(set(own) - set(out))
        if missing:
            raise ValueError(f"The weights lack {missing[:3]}.")
        return out


def fold_colour_state(state: dict, in_channels: int = 1, out_channels: int = 1,
                      colours: int = 3) -> dict:
    """OIDN weights for ``colours`` input/output channels -> the same network on grey images.

    The colour inputs of ``enc_conv0`` and of ``dec_conv1a``'s skip part are summed (exact when the
    three channels are equal, as for a grey image), inputs beyond the first get zero weights (so a
    noise-level channel starts by changing nothing), and with ``out_channels`` 1 the three outputs of
    ``dec_conv0`` are averaged (weights and bias)."""
    out = {}
    for key, value in state.items():
        value = torch.as_tensor(value).float()
        if key.startswith("enc_conv0.") and key.endswith("weight"):
            value = _fold_inputs(value, 0, colours, in_channels)
        elif key.startswith("dec_conv1a.") and key.endswith("weight"):
            value = _fold_inputs(value, value.shape[1] - colours, colours, in_channels)
        elif key.startswith("dec_conv0.") and out_channels == 1:
            value = value.mean(dim=0, keepdim=True)
        out[key] = value
    return out


def _fold_inputs(weight: torch.Tensor, start: int, colours: int, in_channels: int) -> torch.Tensor:
    folded = weight[:, start:start + colours].sum(dim=1, keepdim=True)
    extra = torch.zeros((weight.shape[0], in_channels - 1) + tuple(weight.shape[2:]), dtype=weight.dtype)
    return torch.cat((weight[:, :start], folded, extra), dim=1)


def oidn_state_to_module(state: dict) -> dict:
    """Keys of an OIDN archive (``enc_conv0.weight``) -> this module's (``enc_conv0.conv.weight``)."""
    return {f"{key.rsplit('.', 1)[0]}.conv.{key.rsplit('.', 1)[1]}": value for key, value in state.items()}

