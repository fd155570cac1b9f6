"""``auto``: classify the noise of the image once, then run the method that suits it.

The noise-type classifier (:func:`~..noise.classify_noise`) reads the image once per volume, before the
engine runs anything (:meth:`AutoMethod.for_volume`); the engine then runs the chosen method as it runs any
other, so flip averaging, strength, tiling, progress and cancellation are the chosen method's own. Routes
(:data:`ROUTES`), measured on the validation and test splits by ``train/routing_report.py``
(``train/reports/routing*.md``):

* photon-limited (``poisson``), Gaussian and Rician noise -> ``DEFAULT_MODEL`` (default-2d), the learned model
  trained for photon noise (on Gaussian and Rician noise it beat NLM and median on the test split too);
* salt-and-pepper -> ``median``: the learned model keeps impulses it never saw in training (the classifier
  never gave photon noise more than 0.01 for it on the validation scans, so its label is enough);
* speckle (multiplicative) -> the default model in the log domain (:mod:`.logdomain`), where speckle is
  additive, only when the classifier's probability reaches the route's ``min_probability``, else the default
  model: the classifier of the time read photon noise as speckle with up to 0.56 on the validation scans (3 of
  24 cases, at 30 and 10 photons), where the log domain would have cost 1.25-1.66 dB; today's (issue 12's
  curvature feature) reads all 24 as photon noise, speckle at most 0.44 (``train/reports/routing-photon-val.md``);
* ``low_noise`` (a clean scan: the noise small for its range, decided from the noise estimate) -> the default
  model, which changes such a scan least of the methods measured; no warning, since nothing is wrong.

The thresholds belong to the classifier they were measured with (``Resources/NoiseClassifier.json``, its sha256
recorded in ``train/reports/routing.json``): a new classifier means running ``train/routing_report.py`` again.

A colour image is classified channel by channel and the probabilities averaged, so all channels take one
route. A label the classifier knows but this table does not (a newer classifier), or an image it cannot
classify, runs the default model with a sentence saying so in the run's warnings. What was chosen goes into
the results table: ``route`` (the method run), ``noise_type`` and ``noise_probability``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .. import DEFAULT_MODEL
from ..errors import InputError, LowLightDenoiseError
from ..volume import Volume
from .base import Method, MethodContext
from .wrappers import MethodWrapper

AUTO_NAME = "auto"
#: what the module's drop-down shows for ``auto``
AUTO_LABEL = "Automatic"
#: a route name with this prefix is the named method run in the log domain (:class:`~.logdomain.LogDomain`)
LOG_PREFIX = "log:"
#: slices of a volume the classifier reads: up to this many, evenly spaced (as classify_noise samples a volume)
CLASSIFY_SLICES = 8


@dataclasses.dataclass(frozen=True)
class Route:
    """The method for one noise type, and how sure the classifier must be to take it."""

    method: str
    min_probability: float = 0.0


#: the classifier's label -> the method run (see the module docstring for how each was chosen)
ROUTES: Dict[str, Route] = {
    "gaussian": Route(DEFAULT_MODEL),
    "poisson": Route(DEFAULT_MODEL),
    "rician": Route(DEFAULT_MODEL),
    "salt_pepper": Route("median"),
    "speckle": Route(LOG_PREFIX + DEFAULT_MODEL, 0.65),
    "low_noise": Route(DEFAULT_MODEL),
}


@dataclasses.dataclass(frozen=True)
class Choice:
    """What :func:`choose_route` decided for one image: the label, its probability, the route and why."""

    label: str
    probability: float
    route: str
    note: Optional[str] = None


def volume_samples(volume: Volume, axis: int = 0) -> List[np.ndarray]:
    """Per channel: up to :data:`CLASSIFY_SLICES` evenly spaced slices along ``axis`` (the run's slice axis),
    normalised by the engine's map fitted on the whole channel, so no copy of the volume is made (the classifier
    reads no more of a volume)."""
    from ..normalize import Normalizer

    out = []
    for c in range(volume.channels):
        channel = volume.array[..., c] if volume.is_color else volume.array
        depth = channel.shape[axis]
        index = np.unique(np.linspace(0, depth - 1, num=min(depth, CLASSIFY_SLICES)).astype(int))
        sample = np.moveaxis(np.take(channel, index, axis=axis), axis, 0)
        out.append(Normalizer.fit(channel).forward(np.ascontiguousarray(sample)))
    return out


def classify_channels(samples: List[np.ndarray],
                      classifier_path: Optional[Path] = None) -> Tuple[str, Dict[str, float]]:
    """The label and the probabilities, averaged over the channels' samples (one label for the whole image)."""
    from ..noise import classify_noise

    total: Dict[str, float] = {}
    for sample in samples:
        for label, p in classify_noise(sample, classifier_path).probabilities.items():
            total[label] = total.get(label, 0.0) + float(p) / len(samples)
    label = max(total, key=lambda k: total[k])
    return label, total


def choose_route(label: str, probability: float, routes: Optional[Dict[str, Route]] = None) -> Choice:
    """The route for ``label`` at ``probability``; the default model, with a sentence, when there is none."""
    routes = ROUTES if routes is None else routes
    route = routes.get(label)
    if route is None:
        return Choice(label, probability, DEFAULT_MODEL,
                      f"auto: the noise classifier's label {label!r} has no route, so {DEFAULT_MODEL} ran.")
    if probability < route.min_probability:
        return Choice(label, probability, DEFAULT_MODEL,
                      f"auto: the noise looks like {label} with probability {probability:.2f}, under the "
                      f"{route.min_probability:.2f} needed for {route.method}, so {DEFAULT_MODEL} ran.")
    return Choice(label, probability, route.method)


class RoutedMethod(MethodWrapper):
    """The method ``auto`` chose for one volume, under the name ``auto``, with the choice as table columns."""

    def __init__(self, inner: Method, choice: Choice) -> None:
        super().__init__(inner)
        self.name = AUTO_NAME
        self.title = f"Automatic: {choice.route} for {choice.label} noise"
        self.choice = choice
        # auto is slice-wise (its learned routes are 2D models), whichever route it takes
        self.spatial_dims = tuple(d for d in inner.spatial_dims if d in AutoMethod.spatial_dims)
        self.preferred_dims = 2

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        if self.choice.note and self.choice.note not in context.warnings:
            context.warnings.append(self.choice.note)
        return self.inner.apply(block, context)

    def describe(self) -> dict:
        return dict(self.inner.describe(), name=AUTO_NAME, title=self.title, **self.columns())

    def columns(self) -> dict:
        row = {"route": self.choice.route, "noise_type": self.choice.label,
               "noise_probability": round(float(self.choice.probability), 3)}
        row.update(self.inner.columns())
        return row


class AutoMethod(Method):
    """Classify the noise of each volume, then run the matched method (see the module docstring)."""

    name = AUTO_NAME
    title = ("Automatic: classifies the noise and runs the matched method (photon, Gaussian, Rician: "
             f"{DEFAULT_MODEL}; salt-and-pepper: median; speckle: {DEFAULT_MODEL} in the log domain)")
    kind = "automatic"
    category = "denoise"
    spatial_dims = (2,)
    preferred_dims = 2
    uses_device = True

    def __init__(self, device: str = "cpu", *, loader: Optional[Callable[..., Method]] = None,
                 classifier_path: Optional[Path] = None, routes: Optional[Dict[str, Route]] = None,
                 **options: Any) -> None:
        if options:
            raise InputError(f"Method {AUTO_NAME!r} has no option {sorted(options)[0]!r}; it takes the engine's "
                             "options (strength, flips, device) like every method.")
        self.device = device
        #: ``loader(name, device=...)`` gives a route's method: :func:`~.loading.get_method`, which builds ``auto``
        self.loader = loader
        self.classifier_path = classifier_path
        self.routes = dict(ROUTES if routes is None else routes)
        self._loaded: Dict[str, Method] = {}  # a cache of the routes' methods (a model loads once), not state

    def _method(self, name: str) -> Method:
        if self.loader is None:
            raise InputError(f"Method {AUTO_NAME!r} needs a loader for its routes; build it with get_method('auto').")
        if name not in self._loaded:
            self._loaded[name] = self.loader(name, device=self.device)
        return self._loaded[name]

    def choose(self, volume: Volume, axis: int = 0) -> Choice:
        """What runs on ``volume``: its noise classified once on slices along ``axis`` (every channel,
        probabilities averaged)."""
        return self._choose(volume_samples(volume, axis))

    def _choose(self, samples: List[np.ndarray]) -> Choice:
        try:
            label, probabilities = classify_channels(samples, self.classifier_path)
        except LowLightDenoiseError as error:
            reason = str(error).rstrip(".")
            return Choice("unknown", 0.0, DEFAULT_MODEL,
                          f"auto: the noise could not be classified ({reason}), so {DEFAULT_MODEL} ran.")
        return choose_route(label, probabilities[label], self.routes)

    def for_volume(self, volume: Volume, axis: int = 0) -> Method:
        from .logdomain import LogDomain, log_sigma

        samples = volume_samples(volume, axis)
        choice = self._choose(samples)
        if choice.route.startswith(LOG_PREFIX):
            # one log-domain noise level per volume (speckle's is the same whatever the intensity or channel)
            sigma = float(np.median([log_sigma(sample) for sample in samples]))
            return RoutedMethod(LogDomain(self._method(choice.route[len(LOG_PREFIX):]), sigma), choice)
        return RoutedMethod(self._method(choice.route), choice)

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        raise InputError(f"Method {AUTO_NAME!r} chooses per volume; run it through the engine (denoise_volume).")

    def describe(self) -> dict:
        row = super().describe()
        row["routes"] = {label: route.method for label, route in self.routes.items()}
        return row
