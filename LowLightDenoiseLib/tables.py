"""Result rows (a list of dicts) as text: an aligned console table, CSV, JSON or Markdown, written atomically.

Every table the project writes (``denoise --metrics``, ``compare``, ``evaluate``, the benchmark,
training evaluation, batch runs) goes through here, so a number looks the same everywhere and no
reader ever sees a half-written file.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

Row = Dict[str, Any]
#: the number format of known columns in console tables (others: 4 significant digits)
COLUMN_FORMATS = {"psnr": ".2f", "ssim": ".4f", "ssim_3d": ".4f", "edge_preservation": ".4f",
                  "noise_reduction": ".2f", "contrast_improvement": ".3f", "seconds": ".2f"}
TABLE_FORMATS = ("csv", "json")


def columns(rows: Sequence[Row]) -> List[str]:
    """Every key of every row, in order of first appearance."""
    cols: List[str] = []
    for row in rows:
        cols.extend(k for k in row if k not in cols)
    return cols


def cell(key: str, value: Any) -> str:
    """One console cell: ``-`` for a missing value, ``inf``/``nan`` spelled out, known columns formatted."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
        return format(value, COLUMN_FORMATS.get(key, ".4g"))
    return str(value)


def format_table(rows: Sequence[Row]) -> str:
    """Rows as an aligned plain-text table (``-`` where a value is missing or undefined)."""
    cols = columns(rows)
    cells = [[cell(c, row.get(c)) for c in cols] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def plain(value: Any) -> Any:
    """JSON/CSV-safe value: infinite floats become the strings ``inf``/``-inf``, NaN becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def table_text(rows: Sequence[Row], fmt: str) -> str:
    """Rows as ``csv`` (header + one line per row, empty cells for missing values) or ``json`` (a list)."""
    if fmt == "json":
        return json.dumps([plain(dict(r)) for r in rows], indent=2) + "\n"
    if fmt != "csv":
        raise ValueError(f"Unknown table format {fmt!r}; use one of {', '.join(TABLE_FORMATS)}.")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else plain(v)) for k, v in row.items()})
    return buf.getvalue()


def number(value: Any, digits: int = 2) -> str:
    """A Markdown cell: ``-`` for missing, yes/no for booleans, fixed digits (tiny values in e-notation)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return cell("", value)
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells are written as given (format them with :func:`number`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(str(c) for c in r) + " |" for r in rows)
    return "\n".join(lines)


def table_format(path: Union[str, Path]) -> str:
    """``csv`` or ``json`` from a table file's extension, or one sentence."""
    from .errors import InputError

    suffix = Path(path).suffix.lower()
    if suffix[1:] not in TABLE_FORMATS:
        raise InputError(f"The table file {path} must end in .csv or .json.")
    return suffix[1:]


def stage_text(path: Union[str, Path], text: str, staging: Any, *, replace: bool = True) -> Path:
    """Write ``text`` to a temporary file beside ``path`` and register it with ``staging`` (a
    :class:`~.files.Staging`), which publishes it: over an existing file only with ``replace``."""
    target = Path(path)
    fd, tmp = staging.temp_file(target)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    staging.add(tmp, target, replace)
    return target


def write_text_atomic(path: Union[str, Path], text: str, *, replace: bool = True) -> Path:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place (readers never see a part).

    The file gets the permissions the umask gives a new file, like every other output. With
    ``replace=False`` an existing file is never replaced, even one another process created meanwhile
    (:class:`~.errors.InputError` "already exists").
    """
    from .files import Staging

    with Staging() as staging:
        stage_text(path, text, staging, replace=replace)
        staging.commit()
    return Path(path)


def write_table(path: Union[str, Path], rows: Sequence[Row], fmt: Optional[str] = None, *,
                replace: bool = True) -> Path:
    """Write ``rows`` as CSV or JSON (``fmt``, else from the extension), atomically."""
    return write_text_atomic(path, table_text(rows, fmt or table_format(path)), replace=replace)
