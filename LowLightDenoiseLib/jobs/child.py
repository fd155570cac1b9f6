"""The child process: ``python -m LowLightDenoiseLib.jobs JOB.json``.

Reads the job description, runs it through the library (:mod:`.work`), writes the output volumes
and the metrics rows into the job's folder (the folder of ``JOB.json``) and reports on stdout in the
line protocol of :mod:`.protocol`. Everything else that would reach stdout (a library's print, a C
library's output) is sent to stderr, the job's log, so the protocol stream stays clean.
Exit codes: 0 done, 1 failed (an ``error`` event says why), 2 bad command line.
"""
from __future__ import annotations

import logging
import os
import platform
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

from .. import __version__
from ..errors import LowLightDenoiseError
from . import protocol
from .files import read_volume_file, write_volume_file
from .spec import VOLUME_KINDS, JobSpec, geometry_of, with_geometry
from .work import run_denoise, run_download, run_simulation

#: at most this many progress lines a second (a message change or the end is always sent)
_PROGRESS_INTERVAL = 0.1


class Emitter:
    """Writes protocol lines; progress is throttled and never goes backwards."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._fraction = 0.0
        self._message = ""
        self._last = 0.0

    def __call__(self, event: str, **fields: Any) -> None:
        self._stream.write(protocol.encode(event, **fields) + "\n")
        self._stream.flush()

    def progress(self, fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), self._fraction), 1.0)
        now = time.monotonic()
        if message == self._message and fraction < 1.0 and now - self._last < _PROGRESS_INTERVAL:
            self._fraction = fraction
            return
        self._fraction, self._message, self._last = fraction, message, now
        self("progress", fraction=fraction, message=message)


def _protocol_stream() -> IO[str]:
    """A private copy of stdout for the protocol; file descriptor 1 then points at stderr."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(fd, "w", encoding="utf-8", buffering=1)


def _watch_parent(interval: float = 0.5) -> None:
    """End this process when the one that started it is gone (POSIX: we are then re-parented)."""
    if os.name != "posix":
        return
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _read_input(folder: Path, key: str, spec: JobSpec) -> Any:
    geometry = spec.inputs.get(key)
    if geometry is None:
        return None
    return with_geometry(read_volume_file(folder / f"{key}.nrrd"), geometry, node_name=spec.input_name)


def _plain_metadata(metadata: Dict[str, Any]) -> Dict[str, Any]:
    return {str(k): v for k, v in metadata.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _output(folder: Path, index: int, volume: Any, method: str, category: str, warnings: List[str],
            row: Optional[int]) -> Dict[str, Any]:
    name = f"output-{index}.nrrd"
    write_volume_file(volume, folder / name)
    return {"file": name, "method": method, "category": category, "warnings": list(warnings), "row": row,
            "geometry": geometry_of(volume), "metadata": _plain_metadata(volume.metadata)}


def run(spec: JobSpec, folder: Path, emit: Emitter) -> Dict[str, Any]:
    """Run ``spec`` with its files in ``folder``; the fields of the ``result`` event."""
    if spec.kind == "download":
        path = run_download(spec.model, emit.progress)
        return {"kind": spec.kind, "outputs": [], "table": None, "warnings": [], "path": path}
    volume = _read_input(folder, "input", spec)
    if volume is None:
        raise LowLightDenoiseError("The job has no input volume.")
    if spec.kind == "simulate":
        noisy = run_simulation(volume, spec.simulation, emit.progress)
        return {"kind": spec.kind, "outputs": [_output(folder, 0, noisy, "simulate", "simulate", [], None)],
                "table": None, "warnings": [], "path": None}
    comparison = run_denoise(volume, spec.methods, spec.options, calibrate=spec.calibrate,
                             reference=_read_input(folder, "reference", spec), progress=emit.progress,
                             adapt_seconds=spec.adapt_seconds)
    for sentence in comparison.warnings:
        emit("warning", message=sentence)
    outputs = []
    for i, outcome in enumerate(comparison.outcomes):
        row = next((r for r, candidate in enumerate(comparison.rows) if candidate is outcome.row), None)
        outputs.append(_output(folder, i, outcome.volume, outcome.method, outcome.category, outcome.warnings, row))
        for sentence in outcome.warnings:
            emit("warning", message=f"{outcome.method}: {sentence}")
    (folder / "metrics.json").write_text(protocol.dumps_rows(comparison.rows), encoding="utf-8")
    return {"kind": spec.kind, "outputs": outputs, "table": "metrics.json", "warnings": list(comparison.warnings),
            "path": None}


def run_job_file(job_file: Path, emit: Emitter) -> int:
    """One job, reported through ``emit``: 0 done (a ``result`` event), 1 failed (an ``error`` event)."""
    emit("started", pid=os.getpid(), library=__version__, python=platform.python_version())
    started = time.perf_counter()
    try:
        spec = JobSpec.read(job_file).validated()
        logging.info("job %s: %s", job_file, spec.to_dict())
        if spec.kind in VOLUME_KINDS and "input" not in spec.inputs:
            raise LowLightDenoiseError("The job has no input volume.")
        result = run(spec, job_file.parent, emit)
        emit.progress(1.0, "Done")
        emit("result", seconds=time.perf_counter() - started, **result)
        return 0
    except LowLightDenoiseError as error:
        logging.info("job failed: %s", error)
        emit("error", message=str(error), type=type(error).__name__, expected=True)
    except MemoryError:
        traceback.print_exc()
        emit("error", message="Not enough memory for this volume; try 2D mode, the CPU or a cropped volume.",
             type="MemoryError", expected=True)
    except Exception as error:  # reported to the parent with the traceback in the log
        traceback.print_exc()
        emit("error", message=f"Unexpected error ({type(error).__name__}: {error}).", type=type(error).__name__,
             expected=False)
    return 1


def serve(stdin: IO[str]) -> int:
    """A worker that stays warm between jobs (imports, torch's kernels): one job a line of ``stdin``,
    ``JOB.json<TAB>LOG``; each job's events go to ``events.jsonl`` beside its JOB.json and its output
    (stderr, and stdout, which points there too) to LOG. Ends at the end of ``stdin``."""
    os.dup2(2, 1)
    for line in stdin:
        job, _, log = line.rstrip("\n").partition("\t")
        if not job:
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        with open(log or os.devnull, "ab") as target:
            os.dup2(target.fileno(), 2)
            os.dup2(target.fileno(), 1)
        job_file = Path(job).resolve()
        with open(job_file.parent / "events.jsonl", "a", encoding="utf-8", buffering=1) as events:
            run_job_file(job_file, Emitter(events))
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m LowLightDenoiseLib.jobs JOB.json   (one job; JSON lines on stdout)\n"
                         "       python -m LowLightDenoiseLib.jobs --serve    (jobs named on stdin, see serve())\n")
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _watch_parent()
    if args[0] == "--serve":
        return serve(sys.stdin)
    return run_job_file(Path(args[0]).resolve(), Emitter(_protocol_stream()))
