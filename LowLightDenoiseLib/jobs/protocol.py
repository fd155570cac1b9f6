"""The line protocol from the child to its parent: one JSON object a line on the child's stdout.

Every line has ``"event"``; the child writes, in order:

* ``{"event": "started", "pid": 123, "kind": "denoise", "library": "0.2.0", "python": "3.12.1"}`` once,
  first: ``pid`` is the process that does the work (behind Slicer's ``PythonSlicer`` launcher it is
  not the launcher's), the one Cancel ends;
* ``{"event": "progress", "fraction": 0.42, "message": "tv: slice 12 of 40"}``, fractions never
  decreasing, the last one 1.0;
* ``{"event": "warning", "message": "..."}``, a sentence to show the user;
* ``{"event": "result", ...}`` last on success (exit code 0), with ``outputs`` (one per output
  volume: ``file``, ``method``, ``category``, ``warnings``, ``geometry``, ``metadata``), ``table``
  (the metrics rows' JSON file, or null), ``warnings`` and, for a download, ``path``;
* ``{"event": "error", "message": "one sentence", "type": "InputError", "expected": true}`` last on a
  failure the library foresaw (exit code 1); an unforeseen one also has ``expected: false`` and its
  traceback is in the log (the child's stderr).

Anything else the child or its libraries print goes to stderr, that is the job's log, never to
this stream. A line that is not valid JSON (a crash mid-line) is ignored by :func:`parse_line`.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Optional

EVENTS = ("started", "progress", "warning", "result", "error")


def _plain(value: Any) -> Any:
    """numpy scalars and paths as plain JSON values (floats exactly: a float32 becomes the same double)."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def encode(event: str, **fields: Any) -> str:
    """One protocol line (without the newline)."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    return json.dumps(dict(event=event, **fields), default=_plain, allow_nan=True)


def parse_line(line: str) -> Optional[Dict[str, Any]]:
    """The event of one line, or None for an empty, partial or foreign line."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("event") not in EVENTS:
        return None
    if data["event"] == "progress":
        fraction = data.get("fraction")
        if not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
            return None
    return data


def dumps_rows(rows: Any) -> str:
    """Result rows (dicts of numbers, text, None, NaN) as JSON that :func:`json.loads` reads back exactly."""
    return json.dumps(rows, default=_plain, allow_nan=True, indent=1)
