"""The adaptation guard's measurements (:mod:`.adaptation`): the model exactly as the engine runs it, judged on the
held-out patches of the scan.

* :func:`heldout_terms` - the blind-spot (Noise2Self) loss per held-out patch, with the same masks at every call;
  the guard's loss is their sum over their weight, in noise variances.
* :func:`fall_error` - the standard error of that loss's fall between two sets of weights (the same masks and
  pixels: a paired ratio estimate over the patches).
* :func:`residual_edges` - how much a residual follows the output's edges (anatomy left in it).
* :func:`novelty` - whether a scan's noise is unlike what the project's models were trained on, which decides
  how much evidence the guard asks for (:data:`FAMILIAR_RULE`, :data:`NOVEL_RULE`).
* :func:`_heldout_loss` - any candidate guard (``n2s``, ``nb2nb``, Monte-Carlo ``sure``) in one number, for the
  choice scripts of ``train/`` and the SURE estimate the record keeps.

Sources and batches are :mod:`.adaptation`'s ``_Source`` (normalised stack, noise, held-out pixels) and ``_Batch``
(patches, their :class:`~.selfsupervised.Domain`, weights, channels, the guard's fixed noise variance).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence, Tuple

import numpy as np

from ..noise import NoiseProfile
from .base import MethodContext
from .learned import LearnedMethod
from .selfsupervised import loss_function, sure_risk

GUARDS = ("n2s", "n2v", "nb2nb", "sure")  # held-out measures the choice script compares (r2r needs the raw network)
#: how much more the residual of the output may follow the image's edges than the un-adapted model's did
EDGE_TOLERANCE = 0.02


@dataclasses.dataclass(frozen=True)
class KeepRule:
    """How the guard judges and when it keeps adapted weights (see :func:`worth_keeping`)."""

    average: float  #: decay of the running average of the weights the guard judges and keeps (0: the weights)
    min_gain: float  #: the held-out loss must fall by this many noise variances ...
    confidence: float  #: ... and by this many standard errors of its fall


#: for a scan whose noise the model was trained on: the model already fits it, so the guard asks for a clear fall
#: of the training weights' loss (on the test split: in distribution, worst change +0.00 dB; docs/adaptation.md)
FAMILIAR_RULE = KeepRule(average=0.0, min_gain=0.01, confidence=0.5)
#: for noise the model never saw: a running average of the weights, kept on a fall of half a standard error (with
#: the familiar rule beside it, out of distribution: +0.42 / +0.54 / +0.56 dB mean on validation, fresh and test
#: cases, in distribution never below +0.00; docs/adaptation.md)
NOVEL_RULE = KeepRule(average=0.99, min_gain=0.0, confidence=0.5)
#: the project's learned models were trained on photon noise of 10-1000 photons at full scale times a brightness
#: of 0.4-1 (train/configs/shipped), so at least 4 photons at the top of the image: fewer, with this margin, is new
FAMILIAR_PHOTONS = 4.0
#: ... and on read noise of 0-3 photons: more than this (a margin of 1.5) is new, ...
FAMILIAR_READ_NOISE = 4.5
#: ... when the read noise is clearly measured: its standard deviation at least this share of the engine's window
#: (at many photons a small error of the estimated ``b`` reads as several photons of read noise)
READ_NOISE_MEASURABLE = 0.05
#: noise types of the classifier (:func:`~..noise.classify_noise`) that were rare or absent in training
NOVEL_TYPES = ("speckle", "salt_pepper")


def novelty(noise: NoiseProfile, label: str) -> str:
    """Why a channel's noise is unlike what the project's learned models were trained on, in words ('' when it is
    like it): fewer photons than :data:`FAMILIAR_PHOTONS` at the top of the engine's window (``1 / a`` in normalised
    units), more read noise than :data:`FAMILIAR_READ_NOISE` photons (``sqrt(b) / a``, when ``sqrt(b)`` is at least
    :data:`READ_NOISE_MEASURABLE`), or a noise type of :data:`NOVEL_TYPES` (the classifier's ``label``)."""
    if noise.a > 0:
        photons = 1.0 / float(noise.a)
        if photons < FAMILIAR_PHOTONS:
            return (f"about {photons:.1f} photons at the top of the image, fewer than the model was trained on "
                    f"({FAMILIAR_PHOTONS:g} and more)")
        gaussian = float(np.sqrt(max(float(noise.b), 0.0)))
        if gaussian >= READ_NOISE_MEASURABLE and gaussian * photons > FAMILIAR_READ_NOISE:
            return (f"read noise of about {gaussian * photons:.0f} photons, more than the model was trained on "
                    "(up to 3)")
    if label in NOVEL_TYPES:
        words = {"salt_pepper": "impulse (salt-and-pepper)"}.get(label, label)
        return f"the noise classifier reads {words} noise, which the model was trained on rarely or never"
    return ""


class _EngineModel:
    """The model exactly as the engine runs it (:meth:`LearnedMethod.apply`, with whatever it does around the
    network), on a batch of patches, without gradients: what the guard judges."""

    def __init__(self, method: LearnedMethod, sources: Sequence[Any], batch: Any) -> None:
        self.method, self.sources, self.batch, self.domain = method, sources, batch, batch.domain

    def __call__(self, y: Any) -> Any:
        import torch

        patches = y[:, 0].detach().cpu().numpy()
        out = np.empty_like(patches)
        dims = self.method.spec.spatial_dims
        for channel in sorted(set(self.batch.channels)):
            index = [i for i, c in enumerate(self.batch.channels) if c == channel]
            context = MethodContext(spatial_dims=dims, noise=self.sources[channel].noise, device=self.method.device)
            if dims == 2:  # 2D patches of one channel: one block of slices
                out[index] = self.method.apply(np.ascontiguousarray(patches[index]), context)
            else:
                for i in index:
                    out[i] = self.method.apply(np.ascontiguousarray(patches[i]), context)
        return torch.from_numpy(out[:, np.newaxis]).to(y.device)


def _heldout_loss(method: LearnedMethod, sources: Sequence[Any], batches: Sequence[Any], guard: str,
                  seed: int) -> float:
    """The guard loss over the held-out pixels, with the same masks and draws at every call, in noise variances."""
    import torch

    rng = np.random.default_rng([seed, 2])
    total, weight, scale = 0.0, 0.0, 0.0
    with torch.no_grad():
        for b in batches:
            model = _EngineModel(method, sources, b)
            if guard == "sure":
                s, n = sure_risk(model, b.y, b.weights, rng, variance=b.variance)
            else:
                s, n = loss_function(guard)(model, b.y, b.weights, rng)
            total, weight = total + float(s), weight + float(n)
            scale += float((b.variance * b.weights).sum())
    if guard == "sure":  # unweighted squared error: in units of the mean noise variance of the held-out pixels
        return total / max(scale, 1e-30)
    return total / max(weight, 1e-12)


def heldout_terms(method: LearnedMethod, sources: Sequence[Any], batches: Sequence[Any],
                  seed: int, loss: str = "n2s") -> Tuple[np.ndarray, np.ndarray]:
    """The guard's blind-spot loss (``loss``: one of :data:`~.selfsupervised.BLIND_SPOT`) per held-out patch:
    ``(sums, weights)``, each ``(patches,)``; the loss is ``sums.sum() / weights.sum()`` (:func:`_heldout_loss`),
    with the same masks (and replacements) at every call."""
    import torch

    rng = np.random.default_rng([seed, 2])
    sums, weights = [], []
    with torch.no_grad():
        for b in batches:
            s, n = loss_function(loss)(_EngineModel(method, sources, b), b.y, b.weights, rng, per_sample=True)
            sums.append(s.double().cpu().numpy())
            weights.append(n.double().cpu().numpy())
    return np.concatenate(sums), np.concatenate(weights)


def fall_error(before: np.ndarray, after: np.ndarray, weights: np.ndarray) -> float:
    """Standard error of the fall of the held-out loss from per-patch sums ``before`` to ``after`` (same masks,
    same pixels: a paired ratio estimate over the patches)."""
    total = float(weights.sum())
    if len(weights) < 2 or total <= 0:
        return float("inf")
    d = before - after
    fall = float(d.sum()) / total
    spread = (d - fall * weights) ** 2
    return float(np.sqrt(spread.sum() * len(d) / (len(d) - 1))) / total


def improves(loss: float, edges: float, best_loss: float, edges_before: float) -> bool:
    """Whether a measurement is a new best: a lower held-out loss, and a residual that does not follow the edges
    more than the un-adapted model's did (by :data:`EDGE_TOLERANCE`)."""
    return loss < best_loss and edges <= edges_before + EDGE_TOLERANCE


def worth_keeping(fall: float, error: float, min_gain: float, confidence: float) -> bool:
    """Whether the best weights are kept: the held-out loss fell by ``min_gain`` noise variances and by
    ``confidence`` standard errors (``error``, :func:`fall_error`) of its fall."""
    return fall >= float(min_gain) and fall > float(confidence) * error


def _fix_variance(method: LearnedMethod, sources: Sequence[Any], batches: Sequence[Any]) -> None:
    """The guard's noise variance at each held-out pixel: ``a x + b`` at the un-adapted model's output."""
    for b in batches:
        b.variance = b.domain.variance(_EngineModel(method, sources, b)(b.y))


def residual_edges(output: np.ndarray, residual: np.ndarray) -> float:
    """How much a residual ``input - output`` follows the output's edges (``(n, h, w)`` or ``(n, d, h, w)``
    patches, in-plane): the correlation of its local energy (Gaussian, 2 px) with the output's gradient
    magnitude (after a 1 px Gaussian). Noise alone gives about 0; anatomy left in the residual, more."""
    from scipy import ndimage

    spatial = (0,) * (output.ndim - 2)
    energy = ndimage.gaussian_filter(np.abs(residual.astype(np.float64)), sigma=spatial + (2.0, 2.0))
    smooth = ndimage.gaussian_filter(output.astype(np.float64), sigma=spatial + (1.0, 1.0))
    gradient = np.hypot(ndimage.sobel(smooth, axis=-1), ndimage.sobel(smooth, axis=-2))
    e, g = energy.ravel() - energy.mean(), gradient.ravel() - gradient.mean()
    denominator = float(np.sqrt(np.dot(e, e) * np.dot(g, g)))
    return float(np.dot(e, g) / denominator) if denominator > 0 else 0.0


def _residual_edges(method: LearnedMethod, sources: Sequence[Any], batches: Sequence[Any]) -> float:
    """:func:`residual_edges` of the model's full output (as the engine runs it) on the held-out patches."""
    import torch

    outputs, residuals = [], []
    with torch.no_grad():
        for b in batches:
            out = _EngineModel(method, sources, b)(b.y)[:, 0].cpu().numpy()
            outputs.append(out)
            residuals.append(b.y[:, 0].cpu().numpy() - out)
    return residual_edges(np.concatenate(outputs), np.concatenate(residuals))
