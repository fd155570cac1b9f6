"""Every method found by name: ``auto``, classical methods by their short name, averages of methods
(:mod:`.ensemble`), learned models from the registry, weights files by path.

This is where a registered model becomes a method (its weights found or downloaded, its network
built); the registry itself is only a catalogue.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..errors import InputError
from ..options import resolve_device
from ..progress import ProgressCallback
from .base import Method


def classical_method_names() -> List[str]:
    from .classical import CLASSICAL_METHODS

    return sorted(CLASSICAL_METHODS)


def method_names() -> List[str]:
    """Every name :func:`get_method` takes (besides aliases and weights files), in the order they are listed."""
    from .. import registry as catalogue
    from .auto import AUTO_NAME
    from .ensemble import ensemble_names

    return [AUTO_NAME] + classical_method_names() + list(ensemble_names()) + catalogue.registered_names()


def load_model(name: str, device: str = "cpu", *, registry: Any = None, download: bool = True,
               progress: Optional[ProgressCallback] = None, **settings: Any) -> Method:
    """The :class:`~.learned.LearnedMethod` of registered model ``name`` on ``device`` (``auto``, ``cpu``, ``cuda:N``).

    Its weights are downloaded (and verified) when not installed and ``download`` allows; ``settings`` are
    :class:`~..models.inference.InferenceSettings` fields (``tile``, ``overlap``, ``amp``...).
    """
    from .. import registry as catalogue
    from ..models.inference import InferenceSettings
    from .learned import LearnedMethod

    device = resolve_device(device)
    entry = catalogue.get_entry(name, registry)
    path = catalogue.weights_path(entry.name, progress, registry=registry, download=download)
    try:
        inference = InferenceSettings(**settings)
    except (TypeError, ValueError) as error:
        raise InputError(f"Invalid option for model {entry.name!r}: {error}") from error
    return LearnedMethod.from_weights(entry.spec, path, device=device, settings=inference)


def get_method(name: Any, *, device: str = "cpu", **options: Any) -> Method:
    """The method called ``name`` (case-insensitive): ``auto`` (:mod:`.auto`), a classical method, an average
    of methods (:mod:`.ensemble`), a registered model, or the path of a ``.safetensors`` weights file that names
    its model (e.g. weights adapted to a scanner by :func:`~.adaptation.adapt`; see
    :func:`~.adapted.load_weights_file`).

    ``options`` go to the classical method's constructor (``strength``, ``calibrate``, its parameters)
    or to :func:`load_model`. A :class:`Method` is returned as it is.
    """
    from .. import registry as catalogue
    from .auto import AUTO_NAME, AutoMethod
    from .classical import CLASSICAL_METHODS
    from .ensemble import ENSEMBLES, load_ensemble

    if isinstance(name, Method):
        return name
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"A method name must be a non-empty text, not {name!r}.")
    key = name.strip().lower()
    if key.endswith(".safetensors"):
        from .adapted import load_weights_file

        return load_weights_file(name.strip(), device=device, **options)
    if key == AUTO_NAME:
        return AutoMethod(device, loader=get_method, **options)
    if key in CLASSICAL_METHODS:
        return CLASSICAL_METHODS[key](**options)
    if key in ENSEMBLES:
        return load_ensemble(key, get_method, device=device, **options)
    canonical = catalogue.canonical_name(key)
    if canonical is not None:
        return load_model(canonical, device=device, **options)
    known = ", ".join(method_names())
    raise InputError(f"Unknown method {name.strip()!r}; choose one of: {known}.")


def list_methods() -> List[Dict[str, Any]]:
    """Descriptions of ``auto``, all classical methods, the averages and registered models (installed or not)."""
    from .. import registry as catalogue
    from .auto import AutoMethod
    from .classical import CLASSICAL_METHODS
    from .ensemble import describe_ensemble, ensemble_names

    rows = [AutoMethod().describe()] + [cls().describe() for _, cls in sorted(CLASSICAL_METHODS.items())]
    models = catalogue.describe_models()
    installed = {r["name"]: bool(r["installed"]) for r in models}
    for name in ensemble_names():
        row = describe_ensemble(name, models)
        rows.append(dict(row, installed=all(installed.get(m, False) for m in row["members"])))
    rows.extend(models)
    return rows
