"""A cohort run: which scans are already done, the rest as one Dask task each, one results table.

:func:`run_cohort` is the one code path of the command line's ``batch`` and of the Slicer batch
example. Before any worker starts it checks every choice (method names, output names and formats)
and skips each scan whose sidecar shows it done with the same input, method, model and options
(:mod:`.sidecar`), so a finished cohort starts no cluster at all. Each remaining scan is one task
(:func:`.task.process_scan`); results are collected as they finish, and the table is written at the
end, also when the run is interrupted (the unfinished scans as ``not run``).
"""
from __future__ import annotations

import dataclasses
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import InputError
from . import results, sidecar
from .cluster import ClusterSettings, open_runner
from .manifest import Scan, check_unique_outputs, output_extension
from .task import ScanTask, process_scan

Log = Callable[[str], None]


@dataclasses.dataclass
class CohortResult:
    """What a run did: the table rows (manifest order) and where the table went."""

    rows: List[Dict[str, Any]]
    tables: List[Path]

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.get("status") == status)

    @property
    def failed(self) -> List[Dict[str, Any]]:
        return [r for r in self.rows if r.get("status") == "failed"]


def _job(scan: Scan, calibrate: bool) -> Any:
    from ..jobs.spec import JobSpec

    name = scan.method if isinstance(scan.method, str) else scan.method.name
    return JobSpec(kind="denoise", methods=[name], options=scan.options, calibrate=calibrate,
                   input_name=scan.name).validated()


def plan_tasks(scans: Sequence[Scan], out_dir: Path, *, fmt: Optional[str] = None, dtype: Optional[str] = None,
               data_range: Optional[float] = None, force_reference: bool = False,
               calibrate: bool = False) -> List[ScanTask]:
    """One task per scan with its output path and sidecar key; every choice checked first (one sentence)."""
    from ..io import check_output

    extensions = [output_extension(s.input, fmt) for s in scans]
    check_unique_outputs(scans, extensions)
    identities: Dict[str, Dict[str, Any]] = {}
    settings = {"dtype": dtype, "data_range": data_range, "force_reference": bool(force_reference)}
    tasks = []
    checked: set = set()
    for i, (scan, ext) in enumerate(zip(scans, extensions)):
        ident_key = scan.method if isinstance(scan.method, str) else id(scan.method)
        if ident_key not in identities:
            identities[ident_key] = sidecar.method_identity(scan.method)
        output = out_dir / f"{scan.name}{ext}"
        if ext not in checked:
            check_output(output, overwrite=True, dtype=dtype)  # the format and the pixel type, once per format
            checked.add(ext)
        job = _job(scan, calibrate)
        key = sidecar.run_key(job.to_dict(), identities[ident_key], output.name, settings)
        tasks.append(ScanTask(index=i, name=scan.name, input=scan.input, output=str(output), job=job,
                              method=scan.method, key=key, reference=scan.reference, dtype=dtype,
                              data_range=data_range, force_reference=force_reference, columns=dict(scan.columns)))
    return tasks


def _ensure_weights(tasks: Sequence[ScanTask], log: Log) -> None:
    """Download missing weights once, here, instead of once per worker."""
    from .. import DEFAULT_MODEL, registry
    from ..methods.auto import AUTO_NAME
    from ..methods.ensemble import ENSEMBLES

    names = set()
    for name in {t.job.methods[0].lower() for t in tasks if isinstance(t.method, str)}:
        names.update(ENSEMBLES[name][1] if name in ENSEMBLES else [DEFAULT_MODEL if name == AUTO_NAME else name])
    for name in sorted(names):
        canonical = registry.canonical_name(name)
        if canonical is not None and not registry.installed(canonical):
            log(f"Downloading the weights of {canonical} ...")
            registry.weights_path(canonical)


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def _progress(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="scans", unit="scan", file=sys.stderr, leave=False)


def _dask_failure(task: ScanTask, error: BaseException, retries: Optional[int]) -> Dict[str, Any]:
    from .task import error_sentence

    row: Dict[str, Any] = dict({"scan": task.name}, **task.columns)
    row.update(status="failed", input=task.input, reference=task.reference, output=task.output,
               method=task.job.methods[0])
    if type(error).__name__ == "KilledWorker":
        died = f"{retries + 1} worker processes" if retries is not None else "The worker processes"
        row["error"] = (f"{died} died while running this scan (out of memory beyond the worker's limit, see "
                        "--memory-limit, or killed); it was not finished.")
    else:
        row["error"] = f"Dask could not run this scan: {error_sentence(error)}"
    return row


def run_cohort(scans: Sequence[Scan], out_dir: Any, *, cluster: Optional[ClusterSettings] = None,
               fmt: Optional[str] = None, dtype: Optional[str] = None, data_range: Optional[float] = None,
               force_reference: bool = False, calibrate: bool = False, force: bool = False,
               log: Optional[Log] = None, progress: bool = False) -> CohortResult:
    """Denoise every scan into ``out_dir`` on Dask workers; returns the rows and the table files.

    ``force``: run every scan again, even those whose sidecar shows them done. ``log`` gets one
    sentence per event worth telling (what runs where, the dashboard link); ``progress`` draws a
    tqdm bar on stderr. On an interrupt (:class:`KeyboardInterrupt`) the table is written with the
    scans not finished marked ``not run``, the workers are stopped, and the interrupt goes on.
    """
    say = log or (lambda message: None)
    cluster = (cluster or ClusterSettings()).checked()
    if not scans:
        raise InputError("There are no scans to denoise.")
    out = Path(out_dir).absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"The output folder {out} is a file.")
    out.mkdir(parents=True, exist_ok=True)
    tasks = plan_tasks(scans, out, fmt=fmt, dtype=dtype, data_range=data_range, force_reference=force_reference,
                       calibrate=calibrate)
    rows: List[Optional[Dict[str, Any]]] = [None] * len(tasks)
    todo: List[ScanTask] = []
    for task in tasks:
        done = None if force else sidecar.up_to_date(task.output, task.key, task.input, task.reference)
        if done is not None:
            rows[task.index] = dict(done.get("row") or {}, status="skipped")
        else:
            todo.append(task)
    extra = list(dict.fromkeys(c for s in scans for c in s.columns))
    skipped = len(tasks) - len(todo)
    if not todo:
        say(f"All {len(tasks)} scan(s) are already done (their sidecars match); nothing to run.")
        return CohortResult(rows, results.write_results(out, rows, extra))  # type: ignore[arg-type]
    _ensure_weights(todo, say)
    say(f"{len(todo)} scan(s) to run" + (f", {skipped} already done" if skipped else "") + ".")
    started = completed = False
    bar = None
    try:
        with open_runner(cluster) as runner:
            started = True
            say(f"Running on {runner.description}.")
            if runner.dashboard:
                say(f"Dask dashboard: {runner.dashboard}" + ("" if _has_bokeh() else " (install bokeh>=3.1 to see it)"))
            bar = _progress(len(todo), progress)
            token = uuid.uuid4().hex[:8]

            def on_result(i: int, result: Any) -> None:
                task = todo[i]
                rows[task.index] = (_dask_failure(task, result, runner.retries) if isinstance(result, BaseException)
                                    else result["row"])
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{task.name}: {rows[task.index]['status']}", refresh=False)

            runner.run(process_scan, todo, [f"denoise-{t.index}-{token}" for t in todo], on_result)
            completed = True
    finally:
        if bar is not None:
            bar.close()
        if started:  # a run that could not get its workers has one sentence to say, and no table
            tables = _finish(out, tasks, rows, extra)
            if not completed:  # interrupted (Ctrl-C, SIGTERM) or the scheduler was lost
                finished = sum(1 for r in rows if r and r.get("status") in ("done", "skipped"))
                say(f"Stopped: {finished} of {len(tasks)} scan(s) are done; the same command finishes the rest. "
                    f"Table so far: {tables[0]}")
    return CohortResult(rows, tables)  # type: ignore[arg-type]


def _finish(out: Path, tasks: Sequence[ScanTask], rows: List[Optional[Dict[str, Any]]],
            extra: Sequence[str]) -> List[Path]:
    """Fill in the scans without a result and write the table: ``done`` when their sidecar says so (a worker
    finished it while the run was being stopped), else ``not run``."""
    for task in tasks:
        if rows[task.index] is None:
            done = sidecar.up_to_date(task.output, task.key, task.input, task.reference)
            if done is not None:
                rows[task.index] = dict(done.get("row") or {}, status="done")
                continue
            rows[task.index] = dict({"scan": task.name}, **task.columns, status="not run", input=task.input,
                                    reference=task.reference, output=task.output, method=task.job.methods[0])
    return results.write_results(out, rows, extra)  # type: ignore[arg-type]
