"""``lowlightdenoise benchmark``: quality, speed and memory of every method on real scans, as one report folder.

:func:`add_arguments` and :func:`run` are what the command line wires; :class:`Benchmark` is one run:
the scans of ``--data`` (:mod:`.scans`), the quality loop over :func:`..evaluation.evaluate`
(:mod:`.quality`), the child-process speed runs (:mod:`.speed`), the table files and ``report.md``
(:mod:`.report`) and the figures (:mod:`.plots`).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .config import BenchmarkConfig, add_arguments

__all__ = ["Benchmark", "BenchmarkConfig", "add_arguments", "run", "main"]


class Benchmark:
    """One benchmark run: quality loop, speed loop, tables, figures, report."""

    def __init__(self, config: BenchmarkConfig) -> None:
        from .quality import Examples

        self.config = config.check()
        self.quality: List[Dict[str, Any]] = []
        self.speed: List[Dict[str, Any]] = []
        self.notes: List[str] = []
        self.examples = Examples(config)
        self.models: Dict[str, Dict[str, Any]] = {}
        self.figure_files: List[Tuple[str, Path]] = []
        self.speed_note = ""
        self.quality_seconds = 0.0
        self.quality_device = "cpu"

    def log(self, message: str) -> None:
        if not self.config.quiet:
            print(f"[benchmark] {message}", file=sys.stderr, flush=True)

    def run(self) -> Path:
        """Run everything and write the report folder; returns ``report.md``."""
        import torch

        from ..tables import write_text_atomic
        from .plots import make_figures
        from .quality import benchmark_levels, installed_models, resolve_methods
        from .report import machine_info, render_report, write_tables
        from .scans import find_scans

        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.methods = resolve_methods(cfg.methods)
        self.speed_methods = resolve_methods(cfg.speed_methods) if cfg.speed_methods else list(self.methods)
        self.models = {m["name"]: m for m in installed_models() if m["name"] in self.methods}
        self.levels = benchmark_levels(cfg)
        self.scans, self.data_note = find_scans(cfg.data)
        if cfg.quick:
            self.scans = self.scans[:2]
        self.machine = machine_info(cfg.threads or None)
        cfg.out.mkdir(parents=True, exist_ok=True)
        self.log(f"{len(self.scans)} scan(s) from {self.data_note}; methods: {', '.join(self.methods)}")
        t0 = time.perf_counter()
        self.run_quality()
        self.quality_seconds = time.perf_counter() - t0
        if cfg.speed:
            self.run_speed()
        else:
            self.notes.append("Speed and memory were not measured in this run (`--no-speed`).")
        self.summary = write_tables(self)
        if cfg.figures:
            self.figure_files = make_figures(self)
        return write_text_atomic(cfg.out / "report.md", render_report(self))

    def run_quality(self) -> None:
        from ..options import resolve_device
        from .quality import make_method, run_quality
        from .scans import evaluation_scans

        cfg = self.config
        self.quality_device = resolve_device(cfg.device)
        methods = {name: make_method(name, self.quality_device) for name in self.methods}
        scans = evaluation_scans(self.scans, cfg.max_slices, cfg.crop, cfg.resolutions, on_error=self.notes.append)
        self.quality = run_quality(scans, methods, cfg, self.quality_device, observers=[self.examples],
                                   log=self.log, on_error=self.notes.append)

    def run_speed(self) -> None:
        from .speed import run_speed, speed_devices

        cfg = self.config
        devices = speed_devices(cfg.speed_devices)
        assert cfg.speed_source is not None  # checked by BenchmarkConfig.check
        self.speed, self.speed_note = run_speed(cfg.speed_source, cfg.speed_shape, self.speed_methods, devices,
                                                cfg.out / "_work", cfg.threads, cfg.speed_timeout, log=self.log)
        if "cuda" not in devices:
            self.notes.append("GPU speed and memory: not measured: no GPU.")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``args``; writes the report folder, returns 0."""
    config = BenchmarkConfig.from_args(args)
    report = Benchmark(config).run()
    if not config.quiet:
        print(f"Report written to {report}", file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m LowLightDenoiseLib.bench ...`` (the same as ``lowlightdenoise benchmark ...``)."""
    from ..errors import LowLightDenoiseError

    parser = argparse.ArgumentParser(prog="python -m LowLightDenoiseLib.bench",
                                     description="Quality, speed and memory of every method.")
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except LowLightDenoiseError as error:
        print(f"benchmark: error: {error}", file=sys.stderr)
        return 2
