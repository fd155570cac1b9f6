"""Jobs in a child process: how the Slicer module runs its work without blocking Slicer.

Inside Slicer a Python thread barely runs (PythonQt keeps the GIL while the main thread idles in
the Qt event loop), so every job of the module runs in a child process of Slicer's own Python
(``PythonSlicer``), which imports this same library:

* :mod:`.spec` - :class:`JobSpec`, the job as JSON (kind, methods, :class:`RunOptions`, calibration,
  simulation, the inputs' exact geometry), and :class:`SimulationSettings`
* :mod:`.protocol` - the child's stdout: one JSON object a line (started, progress, warning, result, error)
* :mod:`.child` - ``python -m LowLightDenoiseLib.jobs JOB.json``: reads the job, runs it, writes NRRD outputs
  and the metrics rows into the job's private folder
* :mod:`.work` - the work itself, shared by the child and the in-process path (so both give the same voxels)
* :mod:`.launcher` - :class:`JobProcess`: start, non-blocking :meth:`~JobProcess.poll` for a GUI timer,
  cancel by process id, result, clean-up, a log file per job; the worker process is kept warm for the
  next job (:func:`shutdown_workers` ends it)
* :mod:`.files` - volumes as uncompressed NRRD files of the job's folder

Nothing here touches MRML: :mod:`LowLightDenoiseLib.mrml` turns nodes into jobs and results into nodes.
"""
from __future__ import annotations

from .launcher import (CANCELLED, FAILED, RUNNING, SUCCEEDED, JobOutput, JobProcess, JobResult, find_python,
                       job_environment, package_root, shutdown_workers)
from .spec import KINDS, JobSpec, SimulationSettings

__all__ = ["CANCELLED", "FAILED", "JobOutput", "JobProcess", "JobResult", "JobSpec", "KINDS", "RUNNING", "SUCCEEDED",
           "SimulationSettings", "find_python", "job_environment", "package_root", "shutdown_workers"]
