"""One scan, as a Dask task runs it on a worker: read, denoise, measure, write output and sidecar.

:func:`process_scan` never raises for a scan's own problem: a bad file, a reference on another grid,
a method that cannot run on the image, even an unexpected error all become a ``failed`` row with one
sentence, so the other scans go on. Only the death of the worker process itself (killed, out of
memory) is left to Dask, which runs the task again on another worker.

Methods are loaded once per worker process (:func:`cached_method`): a learned model's weights are
read and its network built by the first scan a worker runs, not by every scan.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from typing import Any, Dict, Optional, Tuple

from ..errors import LowLightDenoiseError
from . import sidecar

#: (method name, device) -> the loaded method, per worker process
_METHODS: Dict[Tuple[str, str], Any] = {}
_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ScanTask:
    """What a worker needs for one scan (small and picklable: paths, not volumes)."""

    index: int
    name: str
    input: str
    output: str
    job: Any  #: a validated :class:`~..jobs.spec.JobSpec` (kind ``denoise``, one method)
    method: Any  #: the method's name, or a :class:`~..methods.Method` instance
    key: Dict[str, Any]  #: :func:`.sidecar.run_key` of this scan
    reference: Optional[str] = None
    dtype: Optional[str] = None
    data_range: Optional[float] = None
    force_reference: bool = False
    columns: Dict[str, str] = dataclasses.field(default_factory=dict)


def cached_method(name: Any, device: str) -> Tuple[Any, float, bool]:
    """The method called ``name`` on ``device``, loaded at most once per process: ``(method, seconds, cached)``."""
    from ..methods import Method, get_method

    if isinstance(name, Method):
        return name, 0.0, True
    key = (str(name).strip().lower(), device)
    with _LOCK:  # a second thread of this worker waits for the first one's load instead of loading again
        if key in _METHODS:
            return _METHODS[key], 0.0, True
        t0 = time.perf_counter()
        method = get_method(name, device=device)
        _METHODS[key] = method
        return method, time.perf_counter() - t0, False


def worker_name() -> str:
    """The Dask worker's address, or ``host:pid`` outside a distributed worker."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def error_sentence(error: BaseException) -> str:
    """One line for the results table."""
    if isinstance(error, LowLightDenoiseError):
        text = str(error)
    elif isinstance(error, MemoryError):
        text = ("Out of memory while processing this scan; give each worker more memory (--memory-limit) "
                "or run fewer workers.")
    elif isinstance(error, OSError):
        where = f": {error.filename}" if getattr(error, "filename", None) else ""
        text = f"{error.strerror or error}{where}."
    else:
        text = f"Unexpected error {type(error).__name__}: {error}"
    return " ".join(text.split())


def _methods(task: ScanTask, device: str) -> Tuple[list, float, bool, list]:
    """The job's methods (self-calibrated classical ones built per scan, names from the cache)."""
    from ..jobs.work import methods_for

    job = task.job
    if isinstance(task.method, str):
        names, warnings = methods_for(job.methods, job.options, job.calibrate)
    else:
        names, warnings = [task.method], []
    loaded, seconds, cached = [], 0.0, True
    for m in names:
        if isinstance(m, str):
            m, s, c = cached_method(m, device)
            seconds, cached = seconds + s, cached and c
        loaded.append(m)
    return loaded, seconds, cached, warnings


def process_scan(task: ScanTask) -> Dict[str, Any]:
    """Run one scan; returns ``{"row": ..., "sidecar": ... or None}`` (never raises for the scan's problems)."""
    from ..evaluation import run_methods
    from ..io import read_volume, write_volume

    started = time.time()
    t0 = time.perf_counter()
    timings: Dict[str, Any] = {}
    row: Dict[str, Any] = dict({"scan": task.name}, **task.columns)
    row.update(status="failed", seconds=None, worker=worker_name(), input=task.input, reference=task.reference,
               output=task.output, method=task.job.methods[0])
    try:
        mark = time.perf_counter()
        source = sidecar.fingerprint(task.input) if os.path.exists(task.input) else None
        reference_print = None
        if task.reference is not None:
            if not os.path.exists(task.reference):
                raise FileNotFoundError(2, "The reference does not exist", task.reference)
            reference_print = sidecar.fingerprint(task.reference)
        timings["checksum"] = time.perf_counter() - mark
        mark = time.perf_counter()
        volume = read_volume(task.input)
        reference = read_volume(task.reference) if task.reference is not None else None
        timings["read"] = time.perf_counter() - mark
        methods, timings["load"], cached, warnings = _methods(task, task.job.options.device)
        mark = time.perf_counter()
        done = run_methods(volume, methods, task.job.options, reference=reference, data_range=task.data_range,
                           force_reference=task.force_reference)
        outcome = done.outcomes[0]
        timings["denoise"] = outcome.result.seconds
        timings["metrics"] = time.perf_counter() - mark - outcome.result.seconds
        mark = time.perf_counter()
        sidecar.remove_sidecar(task.output)
        write_volume(outcome.volume, task.output, overwrite=True, dtype=task.dtype)
        timings["write"] = time.perf_counter() - mark
    except Exception as error:  # noqa: BLE001 - every problem of one scan is that scan's row, the rest go on
        row["error"] = error_sentence(error)
        row["seconds"] = round(time.perf_counter() - t0, 4)
        return {"row": row, "sidecar": None}
    result_row = dict(outcome.row)
    result_row["denoise_seconds"] = result_row.pop("seconds", None)
    notes = warnings + done.warnings
    if notes:
        result_row["warnings"] = " ".join(notes + ([result_row["warnings"]] if result_row.get("warnings") else []))
    row.update(result_row, status="done", seconds=round(time.perf_counter() - t0, 4))
    timings.update(total=row["seconds"], started=started, finished=time.time())
    content = {"key": task.key, "input": source, "reference": reference_print,
               "output": {"path": task.output, "bytes": os.path.getsize(task.output)},
               "worker": {"name": row["worker"], "host": socket.gethostname(), "pid": os.getpid()},
               "method_cached": cached, "timings": {k: round(v, 4) for k, v in timings.items()}, "row": row}
    try:
        sidecar.write_sidecar(task.output, content)
    except Exception as error:  # noqa: BLE001 - an output without its sidecar is simply redone next time
        row.update(status="failed", error=error_sentence(error))
        return {"row": row, "sidecar": None}
    return {"row": row, "sidecar": content}
