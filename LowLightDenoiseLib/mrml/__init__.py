"""The library on 3D Slicer MRML nodes: volume node in, new volume node and metrics table out.

Imports neither Qt nor the Slicer application, only MRML classes and :mod:`slicer.util` array
helpers, and those only inside functions, so ``import LowLightDenoiseLib.mrml`` works without Slicer
and costs nothing heavy (the Slicer module imports it at start-up). The same code runs inside
Slicer, in ``Slicer --no-main-window --python-script`` and in plain Python with ``slicer-core``.

* :mod:`.geometry` - volume nodes <-> :class:`~LowLightDenoiseLib.volume.Volume`, exact IJK-to-RAS
* :mod:`.nodes` - result rows <-> table nodes, bar chart nodes; the module's view layout
* :mod:`.jobs` - settings, and denoise / compare / simulate on nodes, split in main-thread and worker steps
* :mod:`.process` - the same jobs in a child process (:mod:`LowLightDenoiseLib.jobs`), as the module runs them
* :mod:`.dependencies` - what the module pip-installs and what it must never replace
* :mod:`.selftest` - the module's self-test (run inside Slicer and in CI)
"""
from __future__ import annotations

from typing import Any

from ..options import AXES, DEVICES, MODES
from .dependencies import (LEARNED_REQUIREMENTS, PROTECTED_DISTRIBUTIONS, REQUIREMENTS, TORCH_REQUIREMENT,
                           install_failed_message, install_requirements,
                           missing_requirements, needs_torch, protected_pins, torch_problem)
from .geometry import (SCALAR_NODE, SUPPORTED_NODE_CLASSES, VECTOR_NODE, ijk_to_ras, node_from_volume,
                       node_ijk_to_ras, volume_from_node)
from .jobs import (DenoiseJob, DenoiseSettings, SimulationSettings, compare_nodes, denoise_node, method_choices,
                   models_table, noise_types, prepare_denoise, publish_denoise, publish_simulation, run_job,
                   simulate_node)
from .nodes import (LAYOUT_ID, LAYOUT_XML, NOTICE, default_plot_column, metrics_plot_node, metrics_table_node,
                    output_name, register_layout, table_rows)
from .process import (SimulationJob, publish_simulated, run_in_child, start_denoise, start_download,
                      start_simulation)
from .samples import SAMPLES, load_sample_nodes
from .selftest import add_self_test_volumes, self_test_child_process, self_test_compare, self_test_denoise


def __getattr__(name: str) -> Any:
    """``DenoiseOutcome``: the former name of :class:`~LowLightDenoiseLib.evaluation.MethodOutcome`
    (imported on first use: the evaluation module pulls in the methods)."""
    if name == "DenoiseOutcome":
        from ..evaluation import MethodOutcome

        return MethodOutcome
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AXES", "DEVICES", "DenoiseJob", "LEARNED_REQUIREMENTS", "TORCH_REQUIREMENT", "install_failed_message", "install_requirements",
    "needs_torch", "torch_problem", "DenoiseOutcome", "DenoiseSettings", "LAYOUT_ID", "LAYOUT_XML", "MODES",
    "NOTICE", "PROTECTED_DISTRIBUTIONS", "REQUIREMENTS", "SAMPLES", "SCALAR_NODE", "SUPPORTED_NODE_CLASSES",
    "SimulationJob", "SimulationSettings", "VECTOR_NODE", "add_self_test_volumes", "compare_nodes",
    "default_plot_column", "denoise_node", "ijk_to_ras", "load_sample_nodes", "method_choices", "metrics_plot_node",
    "metrics_table_node", "missing_requirements", "models_table", "node_from_volume", "node_ijk_to_ras", "noise_types",
    "output_name", "prepare_denoise", "protected_pins", "publish_denoise", "publish_simulated",
    "publish_simulation", "register_layout", "run_in_child", "run_job", "self_test_child_process",
    "self_test_compare", "self_test_denoise", "simulate_node", "start_denoise", "start_download",
    "start_simulation", "table_rows", "volume_from_node",
]
