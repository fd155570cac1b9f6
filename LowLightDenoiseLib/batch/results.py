"""The cohort's one results table: ``results.csv`` (and ``results.parquet`` when pyarrow is installed).

One row per scan of the manifest, in its order: the scan's name and the manifest's own extra
columns, ``status`` (``done`` in this run, ``skipped`` already done by an earlier run, whose sidecar
gives the row, ``failed`` with its sentence in ``error``, or ``not run`` when the run was
interrupted), ``seconds`` (the whole scan on its worker), ``worker``, the paths, then the run
(method, mode, axis, device, ``denoise_seconds``, non-default options) and the metrics: full-reference
ones when the scan has a reference, no-reference figures always.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Sequence

from ..tables import columns, table_text, write_text_atomic

Row = Dict[str, Any]
CSV_NAME = "results.csv"
PARQUET_NAME = "results.parquet"
#: columns that come first (after the scan and its manifest columns) and last, whatever a row holds
LEADING = ("status", "seconds", "worker", "input", "reference", "output", "method")
TRAILING = ("warnings", "error")


def ordered(rows: Sequence[Row], extra: Sequence[str] = ()) -> List[Row]:
    """The rows with one column order: scan, manifest columns, :data:`LEADING`, the rest, :data:`TRAILING`."""
    seen = columns(rows)
    head = ["scan", *extra, *LEADING]
    order = head + [c for c in seen if c not in head and c not in TRAILING] + list(TRAILING)
    order = [c for c in order if c in seen]
    return [{c: row.get(c) for c in order} for row in rows]


def _parquet_column(values: List[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):  # mixed types: as text
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def write_parquet(path: Path, rows: Sequence[Row]) -> Path:
    """``rows`` as a Parquet file, written beside and renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..files import publish, temp_file

    table = pa.table({c: _parquet_column([r.get(c) for r in rows]) for c in columns(rows)})
    fd, tmp = temp_file(path)
    os.close(fd)
    try:
        pq.write_table(table, str(tmp))
        publish(tmp, path, replace=True)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_results(out_dir: Path, rows: Sequence[Row], extra: Sequence[str] = ()) -> List[Path]:
    """Write the table files into ``out_dir``; returns their paths (Parquet only when pyarrow imports)."""
    table = ordered(rows, extra)
    written = [write_text_atomic(out_dir / CSV_NAME, table_text(table, "csv"))]
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return written
    written.append(write_parquet(out_dir / PARQUET_NAME, table))
    return written
