"""Averages of methods: a method whose output is the mean of several methods' outputs on the same block.

Two networks trained apart on different data make errors that are partly independent, so their mean is
closer to the clean image than either (the oldest ensemble result). :data:`ENSEMBLES` names the averages
the library offers; each was chosen on the validation split and measured on the test split
(``train/reports/ensemble-2d-val.md``, ``train/reports/ensemble-2d.md``):

* ``ensemble-2d``: the mean of ``default-2d`` (this project's model, trained on medical scans with the
  photon-noise recipe) and ``oidn-2d`` (Intel Open Image Denoise's network, trained on far more images). On
  the validation scans it gained 0.33 / 0.43 / 0.53 dB over default-2d at peak 300 / 100 / 30, on the test
  scans 0.33 / 0.38 / 0.55 dB (level with BM3D given the true noise; within 0.1 dB of oidn-2d alone). It runs
  both networks, so it takes their two times added (about 5x default-2d on CPU).

An average is a wrapper like test-time flips (:mod:`.wrappers`): the engine, strength, flips, tiling,
progress and cancellation are the members' own; the members share the block and the noise estimate.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np

from ..errors import InputError
from ..registry import ENSEMBLES  # noqa: F401  (the catalogue of averages: name -> (title, members))
from .base import Method, MethodContext


class MethodAverage(Method):
    """The equal-weight mean of ``members``' outputs on each block (members of one category and kind)."""

    def __init__(self, name: str, title: str, members: Sequence[Method]) -> None:
        members = list(members)
        if len(members) < 2:
            raise InputError(f"An average of methods needs at least two methods, not {len(members)}.")
        categories = {m.category for m in members}
        if len(categories) != 1:
            raise InputError(f"{name}: the methods averaged must all denoise or all enhance, not "
                             f"{' and '.join(sorted(categories))}.")
        dims = set(members[0].spatial_dims).intersection(*(m.spatial_dims for m in members[1:]))
        if not dims:
            raise InputError(f"{name}: the methods averaged share no dimensionality (2D or 3D).")
        self.members = members
        self.name = name
        self.title = title
        self.kind = "learned" if any(m.kind == "learned" for m in members) else "classical"
        self.category = categories.pop()
        self.spatial_dims = tuple(sorted(dims))
        self.preferred_dims = members[0].preferred_dims if members[0].preferred_dims in dims else min(dims)
        self.min_size = max(m.min_size for m in members)
        self.uses_device = any(m.uses_device for m in members)

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        total = np.zeros(block.shape, dtype=np.float64)
        control = context.control
        n = len(self.members)
        for i, member in enumerate(self.members):
            sub = context.with_control(control.sub(i / n, (i + 1) / n))
            total += np.asarray(member.apply(block, sub), dtype=np.float64)
        return (total / n).astype(np.float32)

    def describe(self) -> dict:
        return dict(super().describe(), members=[m.name for m in self.members])

    def columns(self) -> dict:
        out: Dict[str, Any] = {"members": "+".join(m.name for m in self.members)}
        for m in self.members:
            out.update({k: v for k, v in m.columns().items() if k not in out})
        return out


def ensemble_names() -> Sequence[str]:
    return sorted(ENSEMBLES)


def describe_ensemble(name: str, models: Sequence[Dict[str, Any]]) -> dict:
    """What ``methods`` lists for an average, from its members' catalogue rows (``models``: the registry's
    :func:`~..registry.describe_models`), without loading them; as :meth:`MethodAverage.describe` would say."""
    title, members = ENSEMBLES[name]
    rows = {r["name"]: r for r in models}
    known = [rows[m] for m in members if m in rows]
    dims = sorted(set.intersection(*(set(r["spatial_dims"]) for r in known))) if known else []
    return {"name": name, "title": title, "kind": "learned",
            "category": known[0]["category"] if known else "denoise", "spatial_dims": dims,
            "preferred_dims": known[0]["preferred_dims"] if known else None,
            "min_size": max((int(r["min_size"]) for r in known), default=None), "members": list(members)}


def load_ensemble(name: str, get_method: Any, device: str = "cpu", **options: Any) -> MethodAverage:
    """The average called ``name`` with its members loaded by ``get_method`` (one sentence if one is missing)."""
    title, members = ENSEMBLES[name]
    return MethodAverage(name, title, [get_method(m, device=device, **options) for m in members])
