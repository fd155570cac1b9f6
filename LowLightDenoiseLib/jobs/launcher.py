"""Start a job in a child process, follow it without blocking, cancel it, collect its result.

:class:`JobProcess` is driven by its owner's timer (the Slicer module's ``qt.QTimer`` on the main
thread, or :meth:`JobProcess.wait` in a script): :meth:`~JobProcess.poll` reads whatever protocol
lines the child has written since the last call and returns at once. There is no thread: the child
writes its events to a file in the job's private folder, read from where the last poll stopped, and
its output to a log file that outlives the job (:attr:`JobProcess.log_path`).

The child is a worker (``python -m LowLightDenoiseLib.jobs --serve``) that is kept for the next job
while it is idle for less than :data:`WORKER_IDLE_SECONDS` (``reuse=True``, the default): the first
job pays Python's start-up, the imports (torch, MONAI) and the kernels' first calls, the next ones do
not. Cancel and a crash end the worker; the next job starts a fresh one.
"""
from __future__ import annotations

import atexit
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ..errors import InputError, LowLightDenoiseError
from ..volume import Volume
from . import protocol
from .files import read_volume_file, write_volume_file
from .spec import JobSpec, geometry_of, with_geometry

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
#: log files kept in the log folder (the oldest are removed)
KEEP_LOGS = 20
#: log lines shown with an unexpected failure
TAIL_LINES = 15
#: an idle worker older than this is ended instead of reused (it holds torch and a model in memory)
WORKER_IDLE_SECONDS = 600.0


def find_python(slicer_home: Optional[str] = None) -> str:
    """The Python to run jobs with: ``PythonSlicer`` inside Slicer (``slicer_home`` given), else this one.

    Inside Slicer ``sys.executable`` is the Slicer application, not Python; ``PythonSlicer`` is on the
    ``PATH`` Slicer sets and in ``<Slicer home>/bin`` (``Slicer.app/Contents/bin`` on macOS).
    """
    if slicer_home is None:
        return sys.executable
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    for candidate in (shutil.which("PythonSlicer"), os.path.join(str(slicer_home), "bin", name)):
        if candidate and os.path.isfile(candidate):
            return candidate
    raise LowLightDenoiseError(f"Slicer's Python ({name}) was not found in {os.path.join(str(slicer_home), 'bin')}; "
                               "reinstall Slicer.")


def package_root() -> str:
    """The folder that holds the ``LowLightDenoiseLib`` package (a source checkout, site-packages or
    Slicer's ``qt-scripted-modules``): the child imports the same library as its parent."""
    package = sys.modules[__name__.split(".")[0]]
    return os.path.dirname(os.path.dirname(os.path.abspath(package.__file__)))


def job_environment(base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """``base`` (default: this process's environment) with the library first on ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    paths = [package_root()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def default_log_dir() -> Path:
    from ..registry import cache_dir

    return cache_dir() / "logs"


class _Worker:
    """A child process serving jobs one at a time (``--serve``), and the pid of the Python doing the work."""

    def __init__(self, python: str, env: Mapping[str, str], cwd: str, log_path: Path) -> None:
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console window on Windows
        try:
            with open(log_path, "ab") as log:  # until its first job switches to that job's log
                self.proc = subprocess.Popen([python, "-u", "-m", "LowLightDenoiseLib.jobs", "--serve"],
                                             stdin=subprocess.PIPE, stdout=log, stderr=log, env=dict(env), cwd=cwd,
                                             creationflags=flags, text=True, encoding="utf-8")
        except OSError as error:
            raise LowLightDenoiseError(f"Could not start the job's Python ({python}): {error.strerror or error}.") \
                from error
        self.pid: Optional[int] = None  #: reported by the worker (behind PythonSlicer's launcher it differs)
        self.idle_since = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, job_file: Path, log_path: Path) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{job_file}\t{log_path}\n")
            self.proc.stdin.flush()
        except OSError:  # the worker already ended (it could not start): polling reports it, with its log
            pass

    def stop(self) -> None:
        """Let an idle worker end (end of its input)."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass

    def kill(self, timeout: float = 1.0) -> None:
        """End the worker now: the Python doing the work, then the process started (only those, by pid)."""
        if self.alive:
            if self.pid and self.pid != self.proc.pid:
                try:
                    os.kill(self.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
                except OSError:  # already gone
                    pass
            self.proc.kill()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.stop()


#: idle workers, at most one per (python, environment)
_IDLE: Dict[Any, _Worker] = {}


def _worker_for(python: str, env: Mapping[str, str], cwd: str, log_path: Path) -> _Worker:
    """An idle worker of this Python and environment that is still young enough, else a new one."""
    key = (python, tuple(sorted(env.items())))
    worker = _IDLE.pop(key, None)
    if worker is not None and worker.alive and time.monotonic() - worker.idle_since < WORKER_IDLE_SECONDS:
        return worker
    if worker is not None:
        worker.kill()
    return _Worker(python, env, cwd, log_path)


atexit.register(lambda: shutdown_workers())


def _release(python: str, env: Mapping[str, str], worker: _Worker) -> None:
    key = (python, tuple(sorted(env.items())))
    if not worker.alive:
        return
    previous = _IDLE.pop(key, None)
    if previous is not None and previous is not worker:
        previous.stop()
    worker.idle_since = time.monotonic()
    _IDLE[key] = worker


def shutdown_workers() -> None:
    """End every idle worker (the Slicer module does so when it is closed; also at exit)."""
    while _IDLE:
        _IDLE.popitem()[1].kill()


@dataclasses.dataclass
class JobOutput:
    """One output volume of a finished job (duck-types :class:`~LowLightDenoiseLib.evaluation.MethodOutcome`)."""

    method: str
    category: str
    volume: Volume
    warnings: List[str]
    row: Dict[str, Any]


@dataclasses.dataclass
class JobResult:
    """What a finished job produced: the metrics rows, the output volumes, warnings, a downloaded path."""

    rows: List[Dict[str, Any]]
    outputs: List[JobOutput]
    warnings: List[str]
    path: Optional[str] = None

    @property
    def outcomes(self) -> List[JobOutput]:
        """The outputs under :class:`~LowLightDenoiseLib.evaluation.Comparison`'s name."""
        return self.outputs


class JobProcess:
    """One job in a child process: ``start()``, then ``poll()`` from a timer until ``state`` is not running.

    ``volumes`` (``{"input": Volume, "reference": Volume}``) are written to the job's private folder
    (under ``temp_root``, default the system's temporary folder) before the child starts; ``python``
    (default :func:`find_python`) and ``env`` (default :func:`job_environment`) choose how it runs.
    After success :meth:`result` reads the outputs and removes the folder; after a failure or
    :meth:`cancel` nothing of the job is left but its log. ``reuse``: hand the worker to the next job.
    """

    def __init__(self, spec: JobSpec, volumes: Optional[Mapping[str, Volume]] = None, *,
                 python: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                 temp_root: Optional[str] = None, log_dir: Optional[str] = None, reuse: bool = True) -> None:
        self.spec = spec.validated()
        self.volumes = dict(volumes or {})
        self.python = python or find_python()
        self.env = dict(env) if env is not None else job_environment()
        self.temp_root = temp_root
        self.log_dir = Path(log_dir) if log_dir is not None else default_log_dir()
        self.reuse = reuse
        self.folder: Optional[Path] = None
        self.log_path: Optional[Path] = None
        self.state = RUNNING
        self.fraction = 0.0
        self.message = ""
        self.warnings: List[str] = []
        self.error = ""  #: one sentence after a failure
        self.error_details = ""  #: the log's last lines and its path
        self.exit_code: Optional[int] = None
        self.child_pid: Optional[int] = None
        self._worker: Optional[_Worker] = None
        self._events: Any = None
        self._pending = b""
        self._outcome: Optional[Dict[str, Any]] = None
        self._failure: Optional[Dict[str, Any]] = None
        self._result: Optional[JobResult] = None

    # ------------------------------------------------------------------------------------------ start

    def start(self) -> "JobProcess":
        self.folder = Path(tempfile.mkdtemp(prefix="LowLightDenoise-job-", dir=self.temp_root))
        try:
            spec = dataclasses.replace(self.spec, inputs={})
            for key, volume in self.volumes.items():
                write_volume_file(volume, self.folder / f"{key}.nrrd")
                spec.inputs[key] = geometry_of(volume)
            job_file = spec.write(self.folder / "job.json")
            self.log_path = self._new_log()
            with open(self.log_path, "w", encoding="utf-8") as log:
                log.write(f"LowLightDenoise {spec.kind} job, {time.strftime('%Y-%m-%d %H:%M:%S')}, "
                          f"{self.python} -m LowLightDenoiseLib.jobs --serve: {job_file}\n")
            (self.folder / "events.jsonl").touch()
            self._events = open(self.folder / "events.jsonl", "rb")
            self._worker = _worker_for(self.python, self.env, str(self.folder.parent), self.log_path)
            try:
                self._worker.submit(job_file, self.log_path)
            except OSError:  # the idle worker ended just now: a fresh one
                self._worker.kill()
                self._worker = _Worker(self.python, self.env, str(self.folder.parent), self.log_path)
                self._worker.submit(job_file, self.log_path)
        except BaseException:
            if self._worker is not None:
                self._worker.kill()
                self._worker = None
            self._close_events()
            self._remove_folder()
            raise
        return self

    def _new_log(self) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for old in sorted(self.log_dir.glob("job-*.log"))[:-(KEEP_LOGS - 1)]:
            try:
                old.unlink()
            except OSError:
                pass
        return self.log_dir / f"job-{time.strftime('%Y%m%d-%H%M%S')}-{self.spec.kind}-{uuid.uuid4().hex[:6]}.log"

    # ------------------------------------------------------------------------------------------ poll

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def poll(self) -> List[Dict[str, Any]]:
        """The protocol events the child wrote since the last call; returns at once.

        Updates :attr:`fraction`, :attr:`message`, :attr:`warnings` and, once the child has exited,
        :attr:`state` (and :attr:`error` after a failure).
        """
        if not self.running or self._worker is None:
            return []
        code = self._worker.proc.poll()  # before reading: every line written before an exit is then read
        events = self._read_events()
        if self._outcome is not None or self._failure is not None:
            self._finish(None)
        elif code is not None:
            self._finish(code)
        return events

    def _read_events(self) -> List[Dict[str, Any]]:
        if self._events is None:
            return []
        data = self._pending + self._events.read()
        lines = data.split(b"\n")
        self._pending = lines.pop()
        events = []
        for line in lines:
            event = protocol.parse_line(line.decode("utf-8", errors="replace"))
            if event is None:
                continue
            events.append(event)
            kind = event["event"]
            if kind == "started":
                self.child_pid = int(event.get("pid") or 0) or None
                if self._worker is not None:
                    self._worker.pid = self.child_pid
            elif kind == "progress":
                self.fraction = max(self.fraction, min(float(event["fraction"]), 1.0))
                self.message = str(event.get("message") or "")
            elif kind == "warning":
                self.warnings.append(str(event.get("message") or ""))
            elif kind == "result":
                self._outcome = event
            elif kind == "error":
                self._failure = event
        return events

    def _finish(self, code: Optional[int]) -> None:
        """The job is over: its final event arrived (``code`` None, the worker lives on) or the worker exited."""
        self.exit_code = code
        self._close_events()
        worker, self._worker = self._worker, None
        if code is None and worker is not None:
            if self.reuse:
                _release(self.python, self.env, worker)
            else:
                worker.stop()
        if self._outcome is not None:
            self.state = SUCCEEDED
            self.fraction = 1.0
            return
        self.state = FAILED
        kind = self.spec.kind
        if self._failure is not None:
            self.error = str(self._failure.get("message") or "The job failed.")
            expected = bool(self._failure.get("expected"))
        else:
            code = code if code is not None else 0
            how = f"was stopped by signal {-code}" if code < 0 else f"ended with exit code {code}"
            self.error = (f"The {kind} process {how} before finishing (the system may have run out of memory); "
                          "nothing was added to the scene.")
            expected = False
        self.error_details = f"Log: {self.log_path}\n{self.log_tail()}"
        if not expected:
            self.error += " See the log for details."
        if code is not None:
            self._append_log(f"[parent] the child exited with code {code}: {self.error}\n")
        self._remove_folder()

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines of the job's log."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait(self, timeout: Optional[float] = None, interval: float = 0.05) -> str:
        """Poll until the job is over (or ``timeout`` seconds have passed); the state."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.running and (end is None or time.monotonic() < end):
            self.poll()
            if self.running:
                time.sleep(interval)
        return self.state

    # ------------------------------------------------------------------------------------------ end

    def cancel(self, timeout: float = 1.0) -> None:
        """End the job's process (only it, by its process id, within ``timeout``) and remove the job's folder;
        the log stays."""
        if not self.running or self._worker is None:
            return
        self._read_events()  # the worker's pid, when a launcher (PythonSlicer) stands between
        worker, self._worker = self._worker, None
        worker.kill(timeout)
        self.exit_code = worker.proc.returncode
        self.state = CANCELLED
        self._close_events()
        self._append_log("[parent] cancelled by the user\n")
        self._remove_folder()

    def result(self) -> JobResult:
        """The outputs of a successful job (read once; the job's folder is then removed)."""
        if self._result is not None:
            return self._result
        if self.state != SUCCEEDED or self._outcome is None or self.folder is None:
            raise LowLightDenoiseError(self.error or f"The {self.spec.kind} job has not finished successfully.")
        try:
            event = self._outcome
            rows: List[Dict[str, Any]] = []
            if event.get("table"):
                rows = json.loads((self.folder / event["table"]).read_text(encoding="utf-8"))
            outputs = []
            for o in event.get("outputs") or []:
                volume = with_geometry(read_volume_file(self.folder / o["file"]), o["geometry"], **o["metadata"])
                row = rows[o["row"]] if o.get("row") is not None else {}
                outputs.append(JobOutput(o["method"], o["category"], volume, list(o.get("warnings") or []), row))
            self._result = JobResult(rows, outputs, list(event.get("warnings") or []), event.get("path"))
        except (OSError, KeyError, ValueError, IndexError) as error:
            raise InputError(f"The results of the {self.spec.kind} job could not be read ({error}).") from error
        finally:
            self._remove_folder()
        return self._result

    def close(self) -> None:
        """Cancel a running job; remove whatever is left of a finished one."""
        if self.running and self._worker is not None:
            self.cancel()
        self._close_events()
        self._remove_folder()

    def _close_events(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    def _append_log(self, text: str) -> None:
        if self.log_path is not None:
            try:
                with open(self.log_path, "a", encoding="utf-8") as log:
                    log.write(text)
            except OSError:
                pass

    def _remove_folder(self) -> None:
        if self.folder is not None and self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
