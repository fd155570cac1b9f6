"""Self-supervised losses for one noisy scan: what adaptation trains on and the guard measures.

The network runs in its own domain (for a ``vst`` model the rescaled generalised-Anscombe domain, where
photon-limited noise is close to white Gaussian noise of one level), but every loss compares its output
AFTER the model's own inverse (:class:`Domain`, the torch twin of :func:`~..models.spec.prepare_input`
and :func:`~..models.spec.finish_output`) with the noisy image in normalised units. There the noisy
value is an unbiased target (``E[y] = x``), where in the VST domain it is not (``E[f(y)] < f(E[y])``
at low counts): measured, a loss on VST-domain noisy targets teaches a model trained for ``f(x)`` to
darken. Each squared error is divided by the local noise variance of the VST (``a x + 3a^2/8 + b``, at
the prediction, without gradient), so the loss weighs dark and bright regions as the VST domain does.

* ``n2s`` - Noise2Self / blind-spot masking (Batson & Royer 2019, J-invariance): one pixel in every
  4 x 4 cell (random phase) is replaced by the mean of its 8 in-plane neighbours and the network must
  predict the noisy value there. Independent noise cannot be predicted from the neighbours, so the
  loss is the risk of the masked prediction plus the noise variance.
* ``n2v`` - the same blind spot with Noise2Void's replacement (Krull et al. 2019): the masked pixel takes
  the noisy value of one of its 8 neighbours, drawn at random, so the masked input still looks like a
  noisy image (a neighbours' mean is a smooth value no pre-trained denoiser has seen at a pixel).
* ``nb2nb`` - Neighbor2Neighbor (Huang et al. 2021): two sub-images made of different neighbouring
  pixels of every 2 x 2 cell; the network denoises one and is compared with the other, plus the
  paper's regulariser (gamma 2) that ties it to the full-resolution output.
* ``r2r`` - Recorrupted-to-Recorrupted (Pang et al. 2021, the Noisier2Noise family): the input gets
  extra Gaussian noise ``alpha * s * n``, the target is ``y - s * n / alpha``; it needs Gaussian noise
  of a known level, so it works in the network's domain (where the noisy target's mean is ``E[f(y)]``).
* :func:`sure_risk` - Monte-Carlo SURE (Ramani et al. 2008) of the FULL (unmasked) output in normalised
  units, unweighted (what PSNR measures), with the noise variance ``a x + b`` at a fixed estimate of
  the clean image: the guard, because it judges the output the user gets.

Every loss takes a ``model``: ``model(y)`` is the output in normalised units and ``model.domain`` its
:class:`Domain` (training: :class:`NetworkModel`, differentiable; the guard: the engine's own path, with
whatever it does around the network). It returns ``(sum, weight)`` over the pixels whose ``weights`` are
1, so the guard can keep pixels out of training and measure on them alone. Batches are 2D ``(B, 1, h, w)`` or 3D
``(B, 1, d, h, w)`` images; randomness comes from a NumPy generator (determinism).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import numpy as np

LOSSES = ("n2s", "n2v", "nb2nb", "r2r")
#: the blind-spot losses (what the guard may measure)
BLIND_SPOT = ("n2s", "n2v")
#: Neighbor2Neighbor's regulariser weight (the paper's value for Gaussian noise)
NB2NB_GAMMA = 2.0
#: Recorrupted-to-Recorrupted's recorruption strength
R2R_ALPHA = 0.5
#: blind-spot grid: one masked pixel per cell of this side
MASK_CELL = 4
_SQRT_3_2 = math.sqrt(1.5)


def _torch():
    import torch

    return torch


class Domain:
    """A batch's way into and out of the network: ``prepare_input`` and ``finish_output`` in torch.

    ``params`` is ``(B, 5)``: per patch ``a, b`` (the Poisson-Gaussian model of its scan, see
    :func:`~..models.spec.vst_parameters`), the VST frame ``offset, span`` and the Gaussian ``sigma``.
    """

    def __init__(self, params: Any, input_config: Dict[str, Any], spatial: int) -> None:
        shape = (params.shape[0],) + (1,) * (spatial + 1)
        self.a, self.b, self.offset, self.span, self.sigma = (params[:, i].reshape(shape) for i in range(5))
        self.vst = bool(input_config.get("vst"))
        self.noise_map = bool(input_config.get("noise_map"))
        self.unbiased = input_config.get("vst_inverse", "unbiased") == "unbiased"
        torch = _torch()
        self.poisson = self.a > 0  # per patch: Poisson-Gaussian, or Gaussian only (a = 0)
        self.a_safe = torch.where(self.poisson, self.a, torch.ones_like(self.a))
        # sqrt(b) of the Gaussian-only branch; torch.where differentiates both branches, so a NaN there (b < 0,
        # where a > 0 takes the other branch) would turn the gradient into NaN
        self.gaussian_sigma = torch.sqrt(torch.clamp(self.b, min=0.0))

    def forward(self, y: Any) -> Any:
        """Normalised image -> the network's image channel (the rescaled generalised Anscombe transform)."""
        if not self.vst:
            return y
        torch = _torch()
        a = self.a_safe
        gat = (2.0 / a) * torch.sqrt(torch.clamp(a * y + 0.375 * a ** 2 + self.b, min=1e-12))
        t = torch.where(self.poisson, gat, y / self.gaussian_sigma)
        return (t - self.offset) / self.span

    def inverse(self, out: Any) -> Any:
        """The network's output -> normalised units (the model's own inverse: algebraic or unbiased)."""
        if not self.vst:
            return out
        torch = _torch()
        a = self.a_safe
        d = out * self.span + self.offset
        if self.unbiased:
            valid = d >= 2.0 * math.sqrt(0.375)
            dv = torch.where(valid, d, torch.ones_like(d))
            photons = (0.25 * dv ** 2 + 0.25 * _SQRT_3_2 / dv - 1.375 / dv ** 2 + 0.625 * _SQRT_3_2 / dv ** 3
                       - 0.125)
            # as vst.inverse_generalized_anscombe: below the zero-photon value, -b/a^2 (0 when b >= 0)
            x = a * torch.clamp(torch.where(valid, photons, torch.zeros_like(photons)) - self.b / a ** 2, min=0.0)
        else:
            x = a * (0.25 * d * d) - 0.375 * a - self.b / a
        return torch.where(self.poisson, x, d * self.gaussian_sigma)

    def network_input(self, y: Any) -> Any:
        """``(B, 1, *s)`` normalised image -> ``(B, C, *s)`` network input (image channel, noise map)."""
        torch = _torch()
        channels = [self.forward(y)]
        if self.noise_map:
            if self.vst:
                channels.append(torch.ones_like(y) / self.span)
            else:
                pg = torch.sqrt(torch.clamp(self.a * y + self.b, min=1e-12))
                use_pg = (self.a > 0) | (self.b > 0)
                channels.append(torch.where(use_pg, pg, self.sigma * torch.ones_like(y)))
        return torch.cat(channels, dim=1)

    def variance(self, x: Any) -> Any:
        """Noise variance at clean value ``x`` in normalised units (``a x + b``, at least ``sigma^2`` without a fit).

        ``x`` is clamped at the photon-zero level: 0, or ``-b / a`` where ``b < 0`` (the estimate's zero lies above
        0 in normalised units), so the variance is never negative and :meth:`weight` stays at most ``8 / (3 a^2)``.
        """
        torch = _torch()
        fitted = (self.a > 0) | (self.b > 0)
        low = torch.where(self.b < 0, -self.b / self.a_safe, torch.zeros_like(self.b))
        return torch.where(fitted, self.a * torch.maximum(x, low) + self.b, self.sigma ** 2 + 0 * x)

    def weight(self, x: Any) -> Any:
        """``1 / (a x + 3a^2/8 + b)``: the squared slope of the VST at ``x`` (how the VST domain weighs an error)."""
        return 1.0 / (self.variance(x) + 0.375 * self.a ** 2).clamp_min(1e-12)

    def denoise(self, network: Any, y: Any) -> Any:
        """The model's output for ``y`` in normalised units."""
        return self.inverse(network(self.network_input(y)))


class NetworkModel:
    """A network between its domain's input and inverse: ``model(y)`` is its output for normalised ``y``,
    differentiable (what training uses)."""

    def __init__(self, network: Any, domain: Domain) -> None:
        self.network = network
        self.domain = domain

    def __call__(self, y: Any) -> Any:
        return self.domain.denoise(self.network, y)


def _normal(rng: np.random.Generator, like: Any) -> Any:
    """Standard normal noise shaped like tensor ``like``, drawn by ``rng`` (reproducible)."""
    torch = _torch()
    return torch.from_numpy(rng.standard_normal(tuple(like.shape)).astype(np.float32)).to(like.device)


def donut_mean(image: Any) -> Any:
    """Mean of each pixel's 8 in-plane neighbours (itself excluded), edges mirrored; ``(B, 1, *spatial)``."""
    torch = _torch()
    shape = image.shape
    planes = image.reshape(-1, 1, shape[-2], shape[-1])
    kernel = torch.ones(1, 1, 3, 3, dtype=image.dtype, device=image.device) / 8.0
    kernel[0, 0, 1, 1] = 0.0
    padded = torch.nn.functional.pad(planes, (1, 1, 1, 1), mode="reflect")
    return torch.nn.functional.conv2d(padded, kernel).reshape(shape)


def blind_spot_mask(shape: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Boolean ``(B, 1, *spatial)``: one pixel per 4 x 4 in-plane cell, a random phase per sample and slice.

    Masked pixels are never neighbours of each other, so every replacement uses unmasked values.
    """
    mask = np.zeros(shape, dtype=bool)
    for plane in mask.reshape(-1, shape[-2], shape[-1]):
        dy, dx = (int(v) for v in rng.integers(0, MASK_CELL, size=2))
        plane[dy::MASK_CELL, dx::MASK_CELL] = True
    return mask


def random_neighbour(image: Any, rng: np.random.Generator) -> Any:
    """Each pixel replaced by one of its 8 in-plane neighbours, drawn at random by ``rng`` (edges mirrored);
    ``(B, 1, *spatial)``."""
    torch = _torch()
    shape = image.shape
    planes = image.reshape(-1, 1, shape[-2], shape[-1])
    padded = torch.nn.functional.pad(planes, (1, 1, 1, 1), mode="reflect")
    h, w = shape[-2], shape[-1]
    shifted = torch.stack([padded[:, 0, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    pick = torch.from_numpy(rng.integers(0, 8, size=(1,) + tuple(shifted.shape[1:]))).to(image.device)
    return torch.gather(shifted, 0, pick)[0].reshape(shape)


def _blind_spot(model: Any, y: Any, weights: Any, rng: np.random.Generator, replace: Any,
                per_sample: bool) -> Tuple[Any, Any]:
    torch = _torch()
    mask = torch.from_numpy(blind_spot_mask(tuple(y.shape), rng)).to(y.device)
    out = model(torch.where(mask, replace(y), y))
    w = weights * mask * model.domain.weight(out.detach())
    values, counts = (out - y) ** 2 * w, weights * mask
    if per_sample:
        return values.flatten(1).sum(1), counts.flatten(1).sum(1)
    return values.sum(), counts.sum()


def n2s_loss(model: Any, y: Any, weights: Any, rng: np.random.Generator,
             per_sample: bool = False) -> Tuple[Any, Any]:
    """Blind-spot loss (sum, weight): masked pixels replaced by their neighbours' mean, predicted from the rest.

    ``model(y)`` is the output in normalised units (:class:`NetworkModel`, or the engine's own path).
    ``per_sample``: the sums per patch (``(B,)`` tensors), for the guard's uncertainty."""
    return _blind_spot(model, y, weights, rng, donut_mean, per_sample)


def n2v_loss(model: Any, y: Any, weights: Any, rng: np.random.Generator,
             per_sample: bool = False) -> Tuple[Any, Any]:
    """Blind-spot loss (sum, weight) with Noise2Void's replacement: each masked pixel takes a random neighbour's
    noisy value (:func:`random_neighbour`); otherwise as :func:`n2s_loss`."""
    return _blind_spot(model, y, weights, rng, lambda image: random_neighbour(image, rng), per_sample)


#: the ordered pairs of different, edge-adjacent pixels of a 2 x 2 cell (index = 2 * row + column)
_NEIGHBOUR_PAIRS = ((0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (2, 3), (3, 2))


def neighbour_subsample(t: Any, choice: Any) -> Any:
    """The pixel ``choice`` (0-3, one index per 2 x 2 cell) of every cell of ``(B, C, *s, h, w)``."""
    h, w = t.shape[-2], t.shape[-1]
    cells = t.reshape(*t.shape[:-2], h // 2, 2, w // 2, 2).movedim(-3, -2)
    cells = cells.reshape(*cells.shape[:-2], 4)
    return cells.gather(-1, choice.unsqueeze(-1).expand(*cells.shape[:-1], 1))[..., 0]


def neighbour_choices(shape: Tuple[int, ...], rng: np.random.Generator, device: Any) -> Tuple[Any, Any]:
    """Two sub-sampler index maps ``(B, 1, *s, h/2, w/2)``: different, adjacent pixels of each cell."""
    torch = _torch()
    sub = tuple(shape[:-2]) + (shape[-2] // 2, shape[-1] // 2)
    pairs = np.asarray(_NEIGHBOUR_PAIRS)[rng.integers(0, len(_NEIGHBOUR_PAIRS), size=sub)]
    return torch.from_numpy(pairs[..., 0]).to(device), torch.from_numpy(pairs[..., 1]).to(device)


def nb2nb_loss(model: Any, y: Any, weights: Any, rng: np.random.Generator) -> Tuple[Any, Any]:
    """Neighbor2Neighbor loss (sum, weight) with its regulariser, weighted at the target pixels."""
    torch = _torch()
    first, second = neighbour_choices(tuple(y.shape), rng, y.device)
    target = neighbour_subsample(y, second)
    with torch.no_grad():
        full = model(y)
    gap = neighbour_subsample(full, first) - neighbour_subsample(full, second)
    out = model(neighbour_subsample(y, first))
    held = neighbour_subsample(weights, second)
    w = held * model.domain.weight(out.detach())
    values = (out - target) ** 2 + NB2NB_GAMMA * (out - target - gap) ** 2
    return (values * w).sum(), held.sum()


def r2r_loss(model: NetworkModel, y: Any, weights: Any, rng: np.random.Generator) -> Tuple[Any, Any]:
    """Recorrupted-to-Recorrupted loss (sum, weight) in the network's domain: input ``u + a s n``,
    target ``u - s n / a`` (``s``: the domain's noise level); a noise-map channel is told the higher level."""
    domain = model.domain
    u = domain.network_input(y)
    std = (1.0 / domain.span) if domain.vst else domain.variance(y).sqrt()
    n = _normal(rng, y) * std
    noisier = u.clone()
    noisier[:, :1] = u[:, :1] + R2R_ALPHA * n
    if u.shape[1] > 1:
        noisier[:, 1:] = u[:, 1:] * math.sqrt(1.0 + R2R_ALPHA ** 2)
    out = model.network(noisier)
    values = (out - (u[:, :1] - n / R2R_ALPHA)) ** 2 / std ** 2
    return (values * weights).sum(), weights.sum()


def sure_risk(model: Any, y: Any, weights: Any, rng: np.random.Generator,
              variance: Any = None, epsilon: float = 0.05) -> Tuple[Any, Any]:
    """Monte-Carlo SURE of the full output's squared error in normalised units (sum, weight):
    ``(h - y)^2 - v + 2 v dh/dy`` at each pixel, ``v`` the noise variance there (``variance``, or ``a x + b``
    at the output), the divergence from one probe ``b . (h(y + e b) - h(y)) / e`` with ``e = epsilon * sqrt(v)``."""
    out = model(y)
    v = model.domain.variance(out.detach()) if variance is None else variance
    step = epsilon * v.clamp_min(1e-12).sqrt()
    b = _normal(rng, y)
    divergence = b * (model(y + step * b) - out) / step
    values = (out - y) ** 2 - v + 2.0 * v * divergence
    return (values * weights).sum(), weights.sum()


def loss_function(name: str) -> Any:
    """The loss called ``name`` (one of :data:`LOSSES`)."""
    return {"n2s": n2s_loss, "n2v": n2v_loss, "nb2nb": nb2nb_loss, "r2r": r2r_loss}[name]
