"""Every method behind one interface, found by name.

``get_method(name)`` returns a classical method by its short name or a learned model from the
registry; ``list_methods()`` tells what exists.
"""
from __future__ import annotations

from typing import Any, Dict, List

from ..errors import InputError
from .base import Method, MethodContext

__all__ = ["Method", "MethodContext", "get_method", "list_methods", "classical_method_names"]


def classical_method_names() -> List[str]:
    from .classical import CLASSICAL_METHODS

    return sorted(CLASSICAL_METHODS)


def get_method(name: str, *, device: str = "auto", **options: Any) -> Method:
    """Return the method called ``name``: a classical method or a model from the registry."""
    from .classical import CLASSICAL_METHODS

    if isinstance(name, Method):
        return name
    key = str(name).strip()
    if key in CLASSICAL_METHODS:
        return CLASSICAL_METHODS[key](**options)
    from .. import registry

    if registry.is_registered(key):
        return registry.load_method(key, device=device, **options)
    known = ", ".join(classical_method_names() + registry.registered_names())
    raise InputError(f"Unknown method {key!r}; choose one of: {known}.")


def list_methods() -> List[Dict[str, Any]]:
    """Descriptions of all classical methods and registered models (installed or not)."""
    from .. import registry
    from .classical import CLASSICAL_METHODS

    rows = [cls().describe() for _, cls in sorted(CLASSICAL_METHODS.items())]
    rows.extend(registry.describe_models())
    return rows
