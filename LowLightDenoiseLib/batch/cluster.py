"""Where the scans run: a Dask cluster (local or at an address) or Dask's local process pool.

* ``local`` (default): a :class:`distributed.LocalCluster` of worker processes sized for the machine
  (one single-threaded worker per core unless told otherwise), each under a nanny with a memory
  limit: a worker that grows past 95 % of it is killed and restarted, and its scan is run again on
  another worker (``retries`` times, default :data:`RETRIES`; then it is a failed scan), so one huge
  scan cannot take the machine down. ``gpus=N`` starts N workers instead, one per GPU (``CUDA_VISIBLE_DEVICES``), each
  holding the Dask resource ``GPU=1``.
* ``tcp://HOST:PORT`` (or ``tls://``): a running Dask scheduler (e.g. started by dask-jobqueue on
  SLURM/PBS, see ``docs/batch.md``); its workers, threads and memory limits are its own. With
  ``gpus``, every task asks for the resource ``GPU=1``: start the GPU workers with ``--resources GPU=1``.
* ``processes``: Dask's local multiprocessing scheduler (no nanny: no memory limit, no dashboard, and
  a worker that dies ends the run; rerun to resume).

Every runner has the same :meth:`Runner.run`: it submits every task and calls ``on_result(index,
result)`` in the calling thread as each finishes (a :class:`BaseException` when Dask could not run it).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import InputError

SCHEDULERS = ("local", "processes")
#: how often the local cluster runs a task again after the worker running it died (Dask's ``allowed-failures``)
RETRIES = 3
_ADDRESS = re.compile(r"^(tcp|tls)://[^\s/:]+:\d+/?$")

OnResult = Callable[[int, Any], None]


@dataclasses.dataclass
class ClusterSettings:
    """How to get workers; ``None`` means "the default" (an explicit value that does not apply is refused)."""

    scheduler: str = "local"
    workers: Optional[int] = None
    threads_per_worker: Optional[int] = None
    memory_limit: Optional[str] = None
    gpus: int = 0
    retries: Optional[int] = None  #: local cluster: runs of a scan again after its worker died (default RETRIES)
    dashboard_address: str = ":0"  #: the local dashboard's address (``:0`` any free port)
    quiet: bool = False

    def checked(self) -> "ClusterSettings":
        """A copy with every choice checked (one sentence per problem)."""
        scheduler = str(self.scheduler).strip()
        remote = _ADDRESS.match(scheduler) is not None
        if scheduler.lower() in SCHEDULERS:
            scheduler = scheduler.lower()
        elif not remote:
            raise InputError(f"Unknown scheduler {self.scheduler!r}; use local, processes or the address of a "
                             "running Dask scheduler such as tcp://HOST:8786.")
        for value, what, least in ((self.workers, "number of workers", 1),
                                   (self.threads_per_worker, "threads per worker", 1), (self.retries, "retries", 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise InputError(f"The {what} must be a whole number of at least {least}, not {value!r}.")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise InputError(f"The number of GPUs must be a whole number of at least 0, not {self.gpus!r}.")
        if remote:
            given = [flag for flag, value in (("--workers", self.workers), ("--threads-per-worker",
                     self.threads_per_worker), ("--memory-limit", self.memory_limit), ("--retries", self.retries))
                     if value is not None]
            if given:
                raise InputError(f"{', '.join(given)} only apply to the local cluster; the cluster at {scheduler} "
                                 "has its own workers.")
        if scheduler == "processes":
            if self.gpus:
                raise InputError("--gpus needs a Dask cluster (--scheduler local or tcp://...), not the process pool.")
            if self.memory_limit is not None or self.threads_per_worker is not None or self.retries is not None:
                raise InputError("--memory-limit, --threads-per-worker and --retries need a Dask cluster (--scheduler "
                                 "local or tcp://...); the process pool has none of them.")
        if scheduler == "local" and self.gpus and self.workers is not None and self.workers != self.gpus:
            raise InputError(f"--gpus {self.gpus} starts one worker per GPU; drop --workers {self.workers}.")
        memory = self.memory_limit
        if memory is not None:
            memory = str(memory).strip()
            if memory.lower() != "auto":
                try:
                    from dask.utils import parse_bytes

                    if parse_bytes(memory) <= 0:
                        raise ValueError(memory)
                except (ValueError, TypeError):
                    raise InputError(f"The memory limit {self.memory_limit!r} is not a size such as 4GB or 500MiB "
                                     "(or auto).") from None
        return dataclasses.replace(self, scheduler=scheduler, memory_limit=memory)

    @property
    def remote(self) -> bool:
        return self.scheduler not in SCHEDULERS


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_workers(settings: ClusterSettings) -> int:
    """How many workers the local cluster (or process pool) starts: one per GPU, else the cores / threads."""
    if settings.gpus:
        return settings.gpus
    if settings.workers is not None:
        return settings.workers
    return max(1, cpu_count() // (settings.threads_per_worker or 1))


def memory_per_worker(settings: ClusterSettings, workers: int) -> int:
    """Bytes each local worker may use: ``--memory-limit``, else the machine's memory shared out."""
    from dask.utils import parse_bytes
    from distributed.system import MEMORY_LIMIT

    if settings.memory_limit is not None and settings.memory_limit.lower() != "auto":
        return int(parse_bytes(settings.memory_limit))
    return int(MEMORY_LIMIT // max(1, workers))


def gpu_worker_specs(gpus: int, threads: int, memory_limit: int) -> Dict[str, Dict[str, Any]]:
    """The :class:`distributed.SpecCluster` workers of a GPU machine: worker ``gpu-i`` sees GPU ``i`` only,
    as ``cuda``, and holds ``GPU=1``, so the scheduler runs one task per GPU at a time."""
    from distributed import Nanny

    return {f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": threads, "memory_limit": memory_limit,
                                                      "resources": {"GPU": 1},
                                                      "env": {"CUDA_VISIBLE_DEVICES": str(i)}}}
            for i in range(gpus)}


def task_resources(settings: ClusterSettings) -> Optional[Dict[str, float]]:
    """What each task asks of a worker: one GPU when running on GPUs, else nothing."""
    return {"GPU": 1} if settings.gpus else None


def _visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def open_runner(settings: ClusterSettings) -> "Runner":
    """Start or connect to the workers (one sentence when that is impossible)."""
    settings = settings.checked()
    try:
        import dask  # noqa: F401
        if settings.scheduler != "processes":
            import distributed  # noqa: F401
    except ImportError:
        raise InputError("Batch runs need Dask: pip install 'dask[distributed]' (or the lowlightdenoise[batch] "
                         "extra).") from None
    if settings.scheduler == "processes":
        return ProcessPoolRunner(local_workers(settings))
    return DistributedRunner(settings)


class Runner:
    """Submit tasks, hand results back as they finish, close."""

    description = ""
    dashboard: Optional[str] = None
    #: runs of a task again after its worker died (None: the remote scheduler's own setting, or no retries)
    retries: Optional[int] = None

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any], keys: Sequence[str], on_result: OnResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class DistributedRunner(Runner):
    """A :class:`distributed.Client` of a local cluster started here, or of a running scheduler."""

    def __init__(self, settings: ClusterSettings) -> None:
        import dask
        from distributed import Client, LocalCluster, Scheduler, SpecCluster

        self.settings = settings
        self.cluster: Any = None
        level = logging.CRITICAL if settings.quiet else logging.WARNING
        logging.getLogger("distributed").setLevel(level)
        self.retries = None if settings.remote else (RETRIES if settings.retries is None else settings.retries)
        self._config = (None if self.retries is None  # a running scheduler keeps its own setting
                        else dask.config.set({"distributed.scheduler.allowed-failures": self.retries}))
        try:
            if settings.remote:
                try:
                    self.client = Client(settings.scheduler, timeout="20s")
                except (OSError, TimeoutError) as error:
                    raise InputError(f"Cannot reach the Dask scheduler at {settings.scheduler} ({error}).") from None
                workers = self.client.scheduler_info().get("workers", {})
                if settings.gpus and not any((w.get("resources") or {}).get("GPU") for w in workers.values()):
                    self.client.close()
                    raise InputError(f"No worker of the cluster at {settings.scheduler} has the resource GPU; start "
                                     "the GPU workers with --resources GPU=1, or drop --gpus.")
                self.description = f"the Dask cluster at {settings.scheduler} ({len(workers)} workers now)"
            else:
                n = local_workers(settings)
                threads = settings.threads_per_worker or 1
                memory = memory_per_worker(settings, n)
                if settings.gpus:
                    visible = _visible_gpus()
                    if visible < settings.gpus:
                        raise InputError(f"--gpus {settings.gpus} asks for {settings.gpus} GPU(s) but this machine "
                                         f"has {visible} that torch can use.")
                    self.cluster = SpecCluster(workers=gpu_worker_specs(n, threads, memory), scheduler={
                        "cls": Scheduler, "options": {"dashboard_address": settings.dashboard_address}},
                        silence_logs=level)
                else:
                    self.cluster = LocalCluster(n_workers=n, threads_per_worker=threads, processes=True,
                                                memory_limit=memory, dashboard_address=settings.dashboard_address,
                                                silence_logs=level)
                self.client = Client(self.cluster)
                from dask.utils import format_bytes

                self.description = (f"a local Dask cluster of {n} worker process(es), {threads} thread(s) and "
                                    f"{format_bytes(memory)} memory limit each"
                                    + (", one GPU each" if settings.gpus else ""))
        except BaseException:
            self.close()
            raise
        services = self.client.scheduler_info().get("services", {})
        self.dashboard = self.client.dashboard_link if "dashboard" in services else None

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any], keys: Sequence[str], on_result: OnResult) -> None:
        from distributed import as_completed

        resources = task_resources(self.settings)
        futures = [self.client.submit(fn, task, key=key, pure=False, resources=resources)
                   for task, key in zip(tasks, keys)]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in as_completed(futures):
                if future.status == "finished":
                    result = future.result()
                else:  # Dask could not run it (e.g. KilledWorker: its workers kept dying)
                    result = future.exception() if future.status == "error" else RuntimeError(future.status)
                on_result(index[future.key], result)
                future.release()
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        for thing in (getattr(self, "client", None), self.cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing after an interrupt may find things half gone
                    pass
        self.cluster = None
        config = getattr(self, "_config", None)
        if config is not None:
            config.__exit__(None, None, None)
            self._config = None


class ProcessPoolRunner(Runner):
    """Dask's local scheduler over a pool of worker processes (``--scheduler processes``)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.description = f"Dask's local process pool of {workers} worker process(es)"

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any], keys: Sequence[str], on_result: OnResult) -> None:
        import dask
        from dask.callbacks import Callback

        index = {key: i for i, key in enumerate(keys)}
        delayed = [dask.delayed(fn, pure=False)(task, dask_key_name=key) for task, key in zip(tasks, keys)]

        class Collect(Callback):
            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
                if key in index:
                    on_result(index[key], result)

        with Collect():
            dask.compute(*delayed, scheduler="processes", num_workers=self.workers)


__all__: List[str] = ["ClusterSettings", "Runner", "open_runner", "local_workers", "memory_per_worker",
                      "gpu_worker_specs", "task_resources", "RETRIES", "SCHEDULERS"]
