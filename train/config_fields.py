"""Strict construction of the training config dataclasses from the JSON files in ``train/configs``."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Type, TypeVar

T = TypeVar("T")


def from_config_dict(cls: Type[T], values: Dict[str, Any], section: str) -> T:
    """``cls(**values)``, refusing unknown keys with one sentence (a typo must not be ignored)."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown {section} option(s) {unknown}; known: {sorted(known)}.")
    return cls(**values)
