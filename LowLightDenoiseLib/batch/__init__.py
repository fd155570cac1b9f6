"""Cohorts: denoise many scans on a Dask cluster, resumable, with one results table.

``lowlightdenoise batch MANIFEST OUT_DIR --method M`` (or ``python -m LowLightDenoiseLib.batch``);
see ``docs/batch.md``. Dask (``pip install 'lowlightdenoise[batch]'``) is imported only when a run
starts its workers.

* :mod:`.manifest` - the scans of a manifest CSV or a folder, their output names
* :mod:`.sidecar` - the JSON sidecar beside each output (checksums, method, options...): what is done
* :mod:`.task` - one scan on a worker (:func:`~.task.process_scan`), the per-worker method cache
* :mod:`.cluster` - the workers: a local Dask cluster, a scheduler's address, or Dask's process pool
* :mod:`.runner` - :func:`run_cohort`, the one path of the command line and the Slicer batch example
* :mod:`.results` - the results table (CSV, and Parquet with pyarrow)
* :mod:`.command` - the command line's arguments and :func:`run`
"""
from __future__ import annotations

from .cluster import ClusterSettings
from .command import DESCRIPTION, add_arguments, run
from .manifest import Scan, folder_scans, read_manifest
from .runner import CohortResult, run_cohort

__all__ = ["ClusterSettings", "CohortResult", "DESCRIPTION", "Scan", "add_arguments", "folder_scans",
           "read_manifest", "run", "run_cohort"]
