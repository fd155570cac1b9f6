"""The benchmark: quality, speed and memory of every method on real scans, as one report folder.

``lowlightdenoise benchmark --data DIR --speed-source CT_FILE --out REPORT_DIR`` (or
``python -m LowLightDenoiseLib.bench ...``). Every location it reads is an argument; see
``docs/benchmark.md``.

* :mod:`.config` - the command line and the validated :class:`BenchmarkConfig`
* :mod:`.scans` - which files to evaluate, their modality, their clean (cropped or resized) references
* :mod:`.quality` - methods, degradation levels and the quality loop over :func:`..evaluation.evaluate`
* :mod:`.speed` - the speed volume and the child-process speed and memory runs
* :mod:`.report` - the machine, table files, grouped means and ``report.md``; :mod:`.plots` the figures
* :mod:`.command` - :func:`run` (what the command line calls) and :class:`Benchmark`, one run
"""
from __future__ import annotations

from .command import Benchmark, main, run
from .config import BenchmarkConfig, add_arguments

__all__ = ["Benchmark", "BenchmarkConfig", "add_arguments", "run", "main"]
