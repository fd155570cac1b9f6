"""Training loss: MSE + weighted (1 - SSIM) + gradient (edge) term + optional perceptual term.

* MSE: the PSNR the targets are measured in. With ``relative_mse`` each sample's MSE is divided by
  the variance of its own noise (``noisy - target``, known in training only; the model stays blind),
  so that low noise levels weigh as much as high ones instead of being drowned by them; the variance
  is floored at ``relative_floor`` so that noise-free patches (zero background) do not dominate.
* SSIM: MONAI ``SSIMLoss`` (``1 - SSIM``, data range 1 in normalised units), keeps local structure.
* gradient: L1 distance between the finite differences of output and target along every spatial
  axis; it penalises blurred edges that MSE alone tolerates.
* perceptual: MONAI ``PerceptualLoss`` with a torchvision ResNet-50 whose pretrained weights must be
  a LOCAL file (``perceptual_weights``): no feature weights can be downloaded on the machines this
  project trains on, so the term is off unless a user supplies the file (and has torchvision).

Targets can be slightly outside [0, 1] (normalisation by robust percentiles), which SSIM tolerates.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from train.config_fields import from_config_dict


@dataclasses.dataclass
class LossConfig:
    """Weights of the loss terms (the ``loss`` section of a training config)."""

    mse: float = 1.0
    relative_mse: bool = False  # divide each sample's MSE by its true noise variance (equal weight per level)
    relative_floor: float = 4e-4  # variance floor (noise std 0.02): near noise-free patches must not dominate
    ssim: float = 0.1
    gradient: float = 0.1
    perceptual: float = 0.0
    perceptual_weights: Optional[str] = None  # local ResNet-50 state dict for the perceptual term
    perceptual_state_dict_key: Optional[str] = None

    @classmethod
    def from_dict(cls, d: Dict) -> "LossConfig":
        return from_config_dict(cls, d, "loss")


def gradient_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 difference of forward differences along each spatial axis (2D or 3D)."""
    total = output.new_zeros(())
    spatial = range(2, output.dim())
    for axis in spatial:
        total = total + torch.mean(torch.abs(torch.diff(output, dim=axis) - torch.diff(target, dim=axis)))
    return total / max(1, len(spatial))


class DenoiseLoss(nn.Module):
    """Weighted sum of the terms; ``forward`` returns the total and each term (for the logs)."""

    def __init__(self, config: LossConfig, spatial_dims: int) -> None:
        super().__init__()
        from monai.losses import SSIMLoss

        self.config = config
        self.ssim = SSIMLoss(spatial_dims=spatial_dims, data_range=1.0, win_size=7) if config.ssim > 0 else None
        self.perceptual = self._perceptual(config, spatial_dims) if config.perceptual > 0 else None

    @staticmethod
    def _perceptual(config: LossConfig, spatial_dims: int) -> nn.Module:
        path = config.perceptual_weights
        if not path or not Path(path).is_file():
            raise ValueError("The perceptual loss needs a local pretrained weights file (loss.perceptual_weights); "
                             "none can be downloaded here, so set loss.perceptual to 0 or give the file.")
        from monai.losses import PerceptualLoss

        return PerceptualLoss(spatial_dims=spatial_dims, network_type="resnet50", is_fake_3d=spatial_dims == 3,
                              pretrained=True, pretrained_path=str(path),
                              pretrained_state_dict_key=config.perceptual_state_dict_key)

    def forward(self, output: torch.Tensor, target: torch.Tensor,
                noisy: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Loss terms; ``noisy`` (the network's image channel) is needed for ``relative_mse``."""
        c = self.config
        if c.relative_mse:
            if noisy is None:
                raise ValueError("relative_mse needs the noisy input to measure each sample's noise variance.")
            dims = tuple(range(1, output.dim()))
            noise_var = torch.mean((noisy - target) ** 2, dim=dims).clamp_min(c.relative_floor)
            terms = {"mse": torch.mean(torch.mean((output - target) ** 2, dim=dims) / noise_var)}
        else:
            terms = {"mse": nn.functional.mse_loss(output, target)}
        if self.ssim is not None:
            terms["ssim"] = self.ssim(output, target)
        if c.gradient > 0:
            terms["gradient"] = gradient_loss(output, target)
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(output, target)
        weights = {"mse": c.mse, "ssim": c.ssim, "gradient": c.gradient, "perceptual": c.perceptual}
        terms["total"] = sum(weights[k] * v for k, v in terms.items())
        return terms
