"""Every method behind one interface (:mod:`.base`), found by name (:mod:`.loading`).

:mod:`.classical` holds the classical filters, :mod:`.learned` runs a trained network, :mod:`.wrappers`
the cross-cutting features that wrap any method (test-time flip averaging) and :mod:`.peers` the
comparison-only methods that are never shipped (BM3D, when a user installed it).
"""
from __future__ import annotations

from .base import Method, MethodContext
from .loading import classical_method_names, get_method, list_methods, load_model

__all__ = ["Method", "MethodContext", "get_method", "list_methods", "load_model", "classical_method_names"]
