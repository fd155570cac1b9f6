"""Strict construction of the training config dataclasses from the JSON files in ``train/configs``.

Every field is checked against its annotation before the dataclass is built, so that a value of the
wrong JSON type is refused in one sentence naming the field (``"lr": "1e-3"`` must not train with a
text as learning rate, nor fail later with a message about something else):

- ``int``: a whole number (not ``true``/``false``, not ``2.0``); ``float``: any number (not a boolean);
- ``bool``: ``true`` or ``false``; ``str``: a text;
- ``List[X]``: a list whose items are each an ``X``; ``Dict[str, X]``: an object whose values are each an ``X``;
- ``Optional[X]``: ``null`` or an ``X``; ``Any``: anything.

Ranges and allowed values (``optim.keep``, ``data.slice_step``...) stay with each dataclass.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Mapping, Type, TypeVar

T = TypeVar("T")


def from_config_dict(cls: Type[T], values: Dict[str, Any], section: str) -> T:
    """``cls(**values)``, refusing unknown keys and values of the wrong type with one sentence each."""
    if not isinstance(values, dict):
        raise ValueError(f"Config field {section} must be {describe_type(dict)}, not {describe_value(values)}.")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown {section} option(s) {unknown}; known: {sorted(known)}.")
    check_fields(values, field_types(cls), section)
    return cls(**values)


def field_types(cls: type) -> Dict[str, Any]:
    """The resolved annotation of each field of the dataclass ``cls``."""
    return typing.get_type_hints(cls)


def check_fields(values: Mapping[str, Any], types: Mapping[str, Any], section: str = "") -> None:
    """Check each of ``values`` whose key has a type in ``types``; ``section`` prefixes the field names."""
    for key, value in values.items():
        if key in types:
            check_value(value, types[key], f"{section}.{key}" if section else key)


def check_value(value: Any, expected: Any, field: str) -> None:
    """Raise ValueError ``Config field <field> must be <expected>, not <value>.`` when ``value`` does not fit."""
    problem = _mismatch(value, expected, field)
    if problem is not None:
        where, wanted, got = problem
        raise ValueError(f"Config field {where} must be {wanted}, not {describe_value(got)}.")


def _mismatch(value: Any, expected: Any, field: str):
    """None when ``value`` fits ``expected``, else (field or item path, expected in words, offending value)."""
    if expected is Any or expected is object:
        return None
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is typing.Union:
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        inner = options[0] if len(options) == 1 else Any
        if not _fits_outer(value, inner):  # wrong at this level: name the whole Optional type
            return field, describe_type(expected), value
        return _mismatch(value, inner, field)
    if origin in (list, tuple):
        if not isinstance(value, list):
            return field, describe_type(expected), value
        item = args[0] if args else Any
        for i, v in enumerate(value):
            problem = _mismatch(v, item, f"{field}[{i}]")
            if problem is not None:
                return problem
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return field, describe_type(expected), value
        item = args[1] if len(args) == 2 else Any
        for k, v in value.items():
            if not isinstance(k, str):
                return field, describe_type(expected), value
            problem = _mismatch(v, item, f"{field}.{k}")
            if problem is not None:
                return problem
        return None
    if not _fits_outer(value, expected):
        return field, describe_type(expected), value
    return None


def _fits_outer(value: Any, expected: Any) -> bool:
    """Whether ``value`` has the right JSON kind for ``expected`` (items of a list or object not looked at)."""
    origin = typing.get_origin(expected) or expected
    if expected is Any or origin is typing.Union:
        return True
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, origin)


def describe_type(expected: Any, plural: bool = False) -> str:
    """A type annotation in JSON words: ``float`` -> "a number", ``List[int]`` -> "a list of whole numbers"."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is typing.Union:
        options = [a for a in args if a is not type(None)]
        words = " or ".join(describe_type(a, plural) for a in options) if options else "anything"
        return f"{words} or null" if len(options) < len(args) else words
    if origin in (list, tuple) or expected in (list, tuple):
        item = args[0] if args else Any
        return ("lists" if plural else "a list") + ("" if item is Any else f" of {describe_type(item, True)}")
    if origin is dict or expected is dict:
        item = args[1] if len(args) == 2 else Any
        return ("objects" if plural else "an object") + ("" if item is Any else f" of {describe_type(item, True)}")
    words = {bool: ("true or false", "true or false"), int: ("a whole number", "whole numbers"),
             float: ("a number", "numbers"), str: ("a text", "texts")}
    if expected in words:
        return words[expected][plural]
    if expected is Any:
        return "anything"
    return getattr(expected, "__name__", str(expected))


def describe_value(value: Any) -> str:
    """A JSON value in words, for the error: "the text '1e-3'", "true", "a list [1, 2]"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, int):
        return f"the whole number {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return f"the list {value!r}"
    if isinstance(value, dict):
        return f"the object {value!r}"
    return f"{value!r} ({type(value).__name__})"
