"""Adapt a learned denoiser to the scan in front of the user, with no clean reference (self-supervised).

:func:`adapt` fine-tunes a copy of a learned model's network on the noisy scan itself for a bounded
time, with a self-supervised loss (:mod:`.selfsupervised`) in the network's own domain, and returns an
:class:`AdaptedMethod`: a wrapper (like :class:`~.wrappers.FlipAveraging`) that the engine, the command
line, the evaluation and batch runs use like any method, and whose table columns record the adaptation.

The network sees exactly what the engine will give it (:mod:`.adaptation_data`): each channel normalised and its noise estimated
on the whole channel (:func:`~..normalize.Normalizer.fit`, :func:`~..noise.estimate_noise`), the input
built by :func:`~..models.spec.prepare_input`. Patches come from every slice of the scan, with the
augmentations that keep pixel noise independent (in-plane flips and quarter turns; the rotations by
small angles, zooms and intensity changes of training interpolate or reshape the noise, which every
self-supervised loss must not see).

The guard: a share of the scan's pixels (random 8 x 8 blocks of every slice) is held out. Those
pixels are never a training target. On them alone, with fixed masks, the guard measures the blind-spot
loss of the model exactly as the engine runs it (:meth:`LearnedMethod.apply`, whatever the engine does
around the network), before adaptation and every ``eval_every`` steps, and on the held-out patches how much
the residual of the full output follows the image's edges (:func:`~.adaptation_guard.residual_edges`: anatomy in the
residual; it may not rise by more than :data:`~.adaptation_guard.EDGE_TOLERANCE`: measured, on the real PD MR a lower blind-spot
loss came with the scalp's rim in the residual). Training stops early when nothing got better for
``patience`` measurements; the best weights are kept, and when their loss did not fall below the un-adapted
model's by ``confidence`` standard errors of that fall (:func:`~.adaptation_guard.fall_error`: the same masks and
pixels before and after, a paired estimate over the held-out patches) and by ``min_gain`` noise variances, the
un-adapted model is used and the record says so (the measurements: :mod:`.adaptation_guard`).

How much evidence the guard asks for depends on the scan's noise (:func:`~.adaptation_guard.novelty`, from the
engine's noise estimate and the noise classifier): noise like the training's (photon noise of 4 photons and more at
the top of the image, read noise up to 4.5 photons, not speckle nor impulses) gets
:data:`~.adaptation_guard.FAMILIAR_RULE` (the training weights judged, a fall of 0.01 noise variances and half a
standard error: the model already fits such noise, and smaller falls lost on the test split); noise new to the model
gets :data:`~.adaptation_guard.NOVEL_RULE` (a running average of the weights, decay 0.99, judged and kept on a fall
of half a standard error: it gained out of distribution on validation, fresh and test cases). Explicit
``AdaptSettings.average`` / ``min_gain`` / ``confidence`` override the rule (docs/adaptation.md). The Monte-Carlo
SURE estimate of the full output's error (:func:`~.selfsupervised.sure_risk`) is recorded before and after; it
does not decide, because it assumes the estimated Poisson-Gaussian noise (measured: it rose while the PSNR rose with
speckle, and went negative at 2 photons). ``AdaptSettings.guard`` / ``loss`` = ``"n2v"`` (Noise2Void's
random-neighbour replacement for the blind spot) are measured options, not the default.

Deterministic with a seed: the patches, masks and draws come from NumPy generators seeded by it, so a
run limited by ``max_steps`` gives the same weights every time; a run limited by time follows the same
sequence and stops where the machine's speed puts it.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import InputError
from ..options import RunOptions, resolve_device
from ..progress import CancelToken, ProgressCallback, RunControl
from ..volume import Volume, validate_values
from .adaptation_data import _Batch, _batch, _patch_shape, _picks, _Source, _sources, scan_novelty
from .adaptation_guard import (FAMILIAR_RULE, NOVEL_RULE, _fix_variance, _heldout_loss, _residual_edges, fall_error,
                               heldout_terms, improves, worth_keeping)
from .adapted import ADAPTED_SUFFIX, AdaptationRecord, AdaptedMethod
from .learned import LearnedMethod
from .selfsupervised import BLIND_SPOT, LOSSES, NetworkModel, loss_function
from .wrappers import unwrap



@dataclasses.dataclass(frozen=True)
class AdaptSettings:
    """How :func:`adapt` trains and guards; the defaults are the measured choice (docs/adaptation.md)."""

    loss: str = "n2s"  #: training loss, one of :data:`~.selfsupervised.LOSSES`
    lr: float = 1e-4  #: Adam learning rate
    batch: int = 8  #: patches per step
    patch: int = 64  #: in-plane patch side (smaller for small images)
    depth: int = 8  #: patch depth of a 3D model
    holdout: float = 0.2  #: share of 8 x 8 blocks held out for the guard
    eval_patches: int = 32  #: held-out patches the guard measures
    eval_every: int = 40  #: steps between guard measurements
    patience: int = 5  #: measurements without improvement before stopping early
    guard: str = "n2s"  #: the blind-spot loss the guard measures, one of :data:`~.selfsupervised.BLIND_SPOT`
    #: decay of the running average of the weights the guard judges and keeps (0: none); the next two: the held-out
    #: blind-spot loss must fall by ``min_gain`` noise variances and ``confidence`` standard errors of its fall
    #: (paired over the held-out patches). None: by the scan's noise, :data:`~.adaptation_guard.FAMILIAR_RULE` or
    #: :data:`~.adaptation_guard.NOVEL_RULE` (:func:`~.adaptation_guard.novelty`)
    average: Optional[float] = None
    min_gain: Optional[float] = None
    confidence: Optional[float] = None
    max_steps: Optional[int] = None  #: stop after this many steps (with no time budget: the only limit)
    threads: Optional[int] = None  #: torch threads while adapting (None: as they are)

    def validated(self) -> "AdaptSettings":
        """The settings, checked (one sentence per bad value)."""
        if self.loss not in LOSSES:
            raise InputError(f"Unknown adaptation loss {self.loss!r}; use one of {', '.join(LOSSES)}.")
        if self.guard not in BLIND_SPOT:
            raise InputError(f"Unknown guard loss {self.guard!r}; use one of {', '.join(BLIND_SPOT)}.")
        positive = {"lr": self.lr, "batch": self.batch, "patch": self.patch, "depth": self.depth,
                    "eval_patches": self.eval_patches, "eval_every": self.eval_every, "patience": self.patience}
        for key, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InputError(f"The adaptation setting {key} must be a positive number, not {value!r}.")
        if int(self.eval_patches) < 2:
            raise InputError(f"The guard needs at least 2 held-out patches, not {self.eval_patches!r}.")
        if not 0.0 < float(self.holdout) < 1.0:
            raise InputError(f"The held-out share must be between 0 and 1, not {self.holdout!r}.")
        ranges = {"min_gain": (1.0, "The minimum gain must be in [0, 1) noise variances"),
                  "average": (1.0, "The weight average's decay must be in [0, 1)"),
                  "confidence": (10.0, "The confidence must be between 0 and 10 standard errors")}
        for key, (top, words) in ranges.items():
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= top \
                    or (key != "confidence" and float(value) == top):
                raise InputError(f"{words}, not {value!r}.")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or int(self.max_steps) < 1):
            raise InputError(f"The number of adaptation steps must be at least 1, not {self.max_steps!r}.")
        return self

    def for_noise(self, new: str) -> "AdaptSettings":
        """The settings with the keep rule's unset fields taken from the rule for a scan whose noise is ``new`` to
        the model (:func:`~.adaptation_guard.novelty`'s words) or familiar (``''``)."""
        rule = NOVEL_RULE if new else FAMILIAR_RULE
        return dataclasses.replace(self, **{k: getattr(rule, k) for k in ("average", "min_gain", "confidence")
                                            if getattr(self, k) is None})


# --------------------------------------------------------------------------------------------------
# adaptation


def _learned(method: Any, device: str) -> LearnedMethod:
    """The learned model to adapt (a name, a weights file or a method, wrappers removed), or one sentence."""
    from .ensemble import MethodAverage
    from .loading import get_method

    found = unwrap(get_method(method, device=device))
    if isinstance(found, MethodAverage):
        members = ", ".join(m.name for m in found.members)
        raise InputError(f"{found.name!r} is an average of several models ({members}); adapt one of them to the "
                         "scan instead.")
    if not isinstance(found, LearnedMethod):
        article = "an" if found.kind[:1] in "aeiou" else "a"
        raise InputError(f"Only a learned model can be adapted to a scan; {found.name!r} is {article} {found.kind} "
                         "method.")
    if found.category != "denoise":
        raise InputError(f"Only a denoising model can be adapted to a scan; {found.name!r} changes brightness on "
                         "purpose (an enhancement model).")
    return found


def _budget(budget_seconds: Any, settings: AdaptSettings) -> Optional[float]:
    if budget_seconds is None:
        if settings.max_steps is None:
            raise InputError("Give the adaptation a time budget in seconds or a number of steps.")
        return None
    try:
        budget = float(budget_seconds)
    except (TypeError, ValueError):
        budget = float("nan")
    if isinstance(budget_seconds, bool) or not np.isfinite(budget) or budget <= 0:
        raise InputError(f"The adaptation budget must be a positive number of seconds, not {budget_seconds!r}.")
    return budget


class _Training:
    """The fine-tuning loop and its guard, measured every ``eval_every`` steps on the model as the engine runs
    it: the weights with the lowest held-out blind-spot loss so far are kept, among those whose residual does
    not follow the image's edges more than the un-adapted model's (:func:`residual_edges`)."""

    def __init__(self, learned: LearnedMethod, sources: List[_Source], shape: Tuple[int, ...], spec: Any,
                 held: List[_Batch], settings: AdaptSettings, device: str, seed: int) -> None:
        import torch

        self.network = copy.deepcopy(learned.network).to(device).eval()  # eval: no normalisation statistics change
        for p in self.network.parameters():
            p.requires_grad_(True)
        # the weights the guard judges and keeps: the training network's, or their running average
        self.judged = self.network if not settings.average else copy.deepcopy(self.network).requires_grad_(False)
        # ... as the engine runs them (weights shared, updated in place); one window per patch and a batch of
        # them per call (the engine's plan would pad a patch to a big tile)
        whole = dataclasses.replace(learned.settings, tile=int(shape[-1]), sw_batch_size=int(settings.batch))
        self.method = LearnedMethod(spec, self.judged, device=device, settings=whole)
        self.sources, self.shape, self.spec, self.held = sources, shape, spec, held
        self.settings, self.device, self.seed = settings, device, seed
        self.optimiser = torch.optim.Adam(self.network.parameters(), lr=float(settings.lr))
        self.rng = np.random.default_rng([seed, 3])
        self.loss = loss_function(settings.loss)
        self.step, self.bad, self.best_step, self.stopped = 0, 0, 0, "budget"
        self.best_state: Optional[Dict[str, Any]] = None
        _fix_variance(self.method, sources, held)
        self.risk_before = self.risk()
        t = time.perf_counter()
        self.before, self.edges_before, self.terms_before = self.guard()
        self.best, self.edges_best, self.terms_best = self.before, self.edges_before, self.terms_before
        self.eval_seconds = time.perf_counter() - t

    def guard(self) -> Tuple[float, float, Tuple[np.ndarray, np.ndarray]]:
        """(blind-spot loss over the held-out pixels in noise variances, :func:`residual_edges` of the output,
        the loss's :func:`heldout_terms` per patch)."""
        sums, weights = heldout_terms(self.method, self.sources, self.held, self.seed, self.settings.guard)
        loss = float(sums.sum()) / max(float(weights.sum()), 1e-12)
        return loss, _residual_edges(self.method, self.sources, self.held), (sums, weights)

    def fall_error(self) -> float:
        """Standard error of the fall from the un-adapted loss to the best one (:func:`fall_error`)."""
        return fall_error(self.terms_before[0], self.terms_best[0], self.terms_before[1])

    def significant(self) -> bool:
        """Whether the best weights are better than the un-adapted model by the settings' margins."""
        return self.best_state is not None and worth_keeping(self.before - self.best, self.fall_error(),
                                                             self.settings.min_gain, self.settings.confidence)

    def risk(self) -> float:
        """Monte-Carlo SURE of the full output's error over the held-out pixels (noise variances): recorded only."""
        return _heldout_loss(self.method, self.sources, self.held, "sure", self.seed)

    def risk_of_best(self) -> float:
        """:meth:`risk` of the kept weights (the network is left holding them)."""
        if self.best_state is None:
            return self.risk_before
        self.judged.load_state_dict(self.best_state)
        return self.risk()

    def update_average(self) -> None:
        """Move the averaged weights towards the training network's (an exponential moving average, Polyak-
        style: it smooths the step-to-step noise of a small batch; buffers are copied)."""
        import torch

        if self.judged is self.network:
            return
        decay = float(self.settings.average)
        with torch.no_grad():
            for mine, theirs in zip(self.judged.parameters(), self.network.parameters()):
                mine.mul_(decay).add_(theirs.detach(), alpha=1.0 - decay)
            for mine, theirs in zip(self.judged.buffers(), self.network.buffers()):
                mine.copy_(theirs)

    def measure(self, monitor: Optional[Callable[[int, float, Any], None]]) -> None:
        current, edges, terms = self.guard()
        if monitor is not None:
            monitor(self.step, current, self.judged)
        if improves(current, edges, self.best, self.edges_before):
            self.best, self.edges_best, self.terms_best, self.best_step, self.bad = current, edges, terms, self.step, 0
            self.best_state = {k: t.detach().to("cpu", copy=True) for k, t in self.judged.state_dict().items()}
        else:
            self.bad += 1

    def done(self, elapsed: float, budget: Optional[float]) -> bool:
        if budget is not None and elapsed + self.eval_seconds >= budget:
            self.stopped = "budget"
        elif self.settings.max_steps is not None and self.step >= self.settings.max_steps:
            self.stopped = "steps"
        elif self.bad >= self.settings.patience:
            self.stopped = "early stop"
        else:
            return False
        return True

    def train(self, t0: float, budget: Optional[float], control: RunControl,
              monitor: Optional[Callable[[int, float, Any], None]]) -> None:
        import torch

        s = self.settings
        while not self.done(time.perf_counter() - t0, budget):
            fractions = [(time.perf_counter() - t0) / budget if budget else 0.0,
                         self.step / s.max_steps if s.max_steps else 0.0]
            control.step(max(fractions), f"adapting {self.spec.name}: step {self.step}, held-out loss "
                                         f"{self.best:.4f} (before {self.before:.4f})")
            b = _batch(self.sources, _picks(self.sources, self.shape, s.batch, self.rng), self.shape, self.spec,
                       False, self.device)
            total, weight = self.loss(NetworkModel(self.network, b.domain), b.y, b.weights, self.rng)
            if float(weight) > 0:
                self.optimiser.zero_grad(set_to_none=True)
                (total / weight).backward()
                torch.nn.utils.clip_grad_norm_(self.network.parameters(), 1.0)
                self.optimiser.step()
                self.update_average()
            self.step += 1
            if self.step % s.eval_every == 0:
                self.measure(monitor)
        if self.step % s.eval_every:
            self.measure(monitor)


def _scan_name(volume: Volume) -> str:
    path = volume.metadata.get("path")
    shape = " x ".join(str(s) for s in volume.array.shape)
    return f"{Path(str(path)).name}, {shape}" if path else f"an image of {shape}"


def adapt(volume: Volume, method: Any = "default-2d", budget_seconds: Optional[float] = 60.0,
          options: Optional[RunOptions] = None, *, settings: Optional[AdaptSettings] = None,
          progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
          monitor: Optional[Callable[[int, float, Any], None]] = None) -> AdaptedMethod:
    """Fine-tune ``method`` (a learned denoiser: name, weights file or method) on ``volume`` for ``budget_seconds``.

    ``options`` are the run options the result will be used with (its ``axis`` for a 2D model, ``device``,
    ``seed``). Returns an :class:`AdaptedMethod` for :func:`~..pipeline.denoise_volume`; its ``record``
    says what happened and whether the adapted weights are used (see the module docstring for the guard).
    ``monitor(step, heldout_loss, network)`` is called after every held-out measurement (measurements only:
    its time counts against the budget).
    """
    import torch

    if not isinstance(volume, Volume):
        raise InputError(f"adapt needs a Volume (see io.read_volume or Volume(array)), not {type(volume).__name__}.")
    settings = (settings if settings is not None else AdaptSettings()).validated()
    budget = _budget(budget_seconds, settings)
    if options is not None and not isinstance(options, RunOptions):
        raise InputError(f"options must be a RunOptions, not {type(options).__name__}.")
    opts = (options or RunOptions()).validated(resolve=False)
    control = RunControl(progress, cancel)
    control.step(0.0, "adapt: loading the model")
    learned = _learned(method, opts.device)
    device = resolve_device(opts.device)
    validate_values(volume.array)
    spec = learned.spec
    if spec.spatial_dims == 2 and opts.mode == "3d":
        raise InputError(f"Model {spec.name!r} is a 2D model; it adapts and runs slice by slice (--mode 2d or auto).")
    if spec.spatial_dims == 3 and (volume.is_2d or opts.mode == "2d"):
        raise InputError(f"Model {spec.name!r} is a 3D model; it adapts to a volume, not to 2D slices.")

    t0 = time.perf_counter()
    sources = _sources(volume, spec.spatial_dims, 0 if volume.is_2d else opts.axis, settings.holdout,
                       np.random.default_rng([opts.seed, 0]), learned.noise_fit)
    new = scan_novelty(sources)
    settings = settings.for_noise(new)
    shape = _patch_shape(sources, spec, settings)
    picks = _picks(sources, shape, settings.eval_patches, np.random.default_rng([opts.seed, 1]))
    held = [_batch(sources, picks[i:i + settings.batch], shape, spec, True, device)
            for i in range(0, len(picks), settings.batch)]
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    try:
        run = _Training(learned, sources, shape, spec, held, settings, device, opts.seed)
        run.train(t0, budget, control, monitor)
        kept = run.significant()
        risk_after = run.risk_of_best() if kept else run.risk_before
    finally:
        torch.set_num_threads(threads)
    record = AdaptationRecord(
        model=spec.name, version=spec.version, loss=settings.loss, budget_seconds=budget,
        seconds=round(time.perf_counter() - t0, 2), steps=run.step, best_step=run.best_step if kept else 0,
        risk_before=run.risk_before, risk_after=risk_after, loss_before=run.before, loss_after=run.best,
        edges_before=run.edges_before, edges_after=run.edges_best, loss_error=run.fall_error(),
        kept=bool(kept), stopped=run.stopped, seed=int(opts.seed), scan=_scan_name(volume),
        settings=dataclasses.asdict(settings), novelty=new)
    inner = learned
    if kept:
        network = spec.build_network()
        network.load_state_dict(run.best_state)
        name = spec.name if spec.name.endswith(ADAPTED_SUFFIX) else spec.name + ADAPTED_SUFFIX
        adapted = dataclasses.replace(spec, name=name, title=f"{spec.name} {spec.version} adapted to {record.scan}")
        inner = LearnedMethod(adapted, network, device=learned.device, settings=learned.settings)
    control.step(1.0, record.sentence())
    return AdaptedMethod(inner, record)
