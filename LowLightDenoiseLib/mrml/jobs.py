"""Denoise, compare and simulate on MRML nodes: the module's logic, usable without Qt.

A GUI must touch the scene only on the main thread, so a run is three steps, which the one-call
functions (:func:`denoise_node`, :func:`compare_nodes`) simply chain::

    job = prepare_denoise(input_node, settings, reference_node)        # main thread: copy arrays out
    comparison = run_job(job, progress, cancel)                         # anywhere: no MRML at all
    output_nodes, table_node = publish_denoise(scene, job, comparison)  # main thread: new nodes

The middle step is :func:`LowLightDenoiseLib.evaluation.run_methods`, the path the command line and
batch runs take too, so a Slicer table has the same rows and numbers as ``lowlightdenoise compare``.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

from .. import DEFAULT_METHOD
from ..errors import InputError
from ..jobs.spec import SimulationSettings
from ..options import RunOptions, merged
from ..progress import CancelToken, ProgressCallback
from ..volume import Volume, geometry_difference
from .geometry import node_from_volume, volume_from_node
from .nodes import (default_plot_column, describe_output, method_label, metrics_plot_node, metrics_table_node,
                    output_name)

if TYPE_CHECKING:  # heavy (scipy, the methods): imported where a job runs
    from ..evaluation import Comparison

# ------------------------------------------------------------------------------------------- settings


@dataclasses.dataclass
class DenoiseSettings:
    """What the module's controls choose: the method and how it runs (one :class:`RunOptions`)."""

    method: str = DEFAULT_METHOD
    options: RunOptions = dataclasses.field(default_factory=RunOptions)
    #: classical denoisers choose their strength by J-invariant self-calibration (automatic strength only)
    calibrate: bool = False
    #: above 0: a learned denoiser is first adapted to the input for this many seconds ("Adapt to this scan")
    adapt_seconds: float = 0.0

    def validated(self) -> "DenoiseSettings":
        """A copy with every choice checked (one sentence per problem); the device is left for the engine
        to resolve, so nothing heavy (torch) is imported on the GUI's main thread."""
        method = str(self.method or "").strip()
        if not method:
            raise InputError("No method was selected.")
        if not isinstance(self.options, RunOptions):
            raise InputError(f"options must be a RunOptions, not {type(self.options).__name__}.")
        from ..jobs.spec import check_adapt_seconds

        return DenoiseSettings(method, self.options.validated(resolve=False), bool(self.calibrate),
                               check_adapt_seconds(self.adapt_seconds))


def _merge_options(options: Optional[RunOptions] = None, **fields: Any) -> RunOptions:
    """``options`` (default: all defaults) with ``fields`` replaced; unknown fields raise one sentence.

    ``ensemble=`` is the deprecated name of ``flips=``. Nothing is validated here (see
    :meth:`DenoiseSettings.validated`).
    """
    if "ensemble" in fields:
        warnings.warn("ensemble= is deprecated; use flips= (test-time flip averaging, for every method).",
                      DeprecationWarning, stacklevel=3)
        ensemble = fields.pop("ensemble")
        if fields.get("flips") is None:
            fields["flips"] = ensemble
    return merged(options, **fields)


def noise_types() -> List[str]:
    """Names of the simulated noise types, low light first."""
    from ..degrade import DEGRADATIONS

    return ["lowlight"] + sorted(k for k in DEGRADATIONS if k != "lowlight")


def method_choices() -> List[Tuple[str, str, str]]:
    """``(name, label, tooltip)`` of every method for a drop-down: "Automatic" (``auto``) first, then learned
    models, then classical.

    The label is the short name (a narrow panel), the tooltip the method's title and kind.
    """
    from ..methods import list_methods
    from ..methods.auto import AUTO_LABEL, AUTO_NAME

    rows = list_methods()
    automatic = [r for r in rows if r["name"] == AUTO_NAME]
    learned = [r for r in rows if r.get("kind") == "learned"]
    classical = [r for r in rows if r.get("kind") != "learned" and r["name"] != AUTO_NAME]
    choices = []
    for r in automatic + learned + classical:
        label = AUTO_LABEL if r["name"] == AUTO_NAME else str(r["name"])
        tooltip = f"{r.get('title') or r['name']} ({r.get('kind', 'classical')}, {r.get('category', 'denoise')})"
        if r.get("kind") == "learned" and r.get("installed") is False:
            label += " (download)"
            tooltip += "; its weights are downloaded on first use"
        choices.append((str(r["name"]), label, tooltip))
    return choices


def models_table() -> Tuple[List[str], List[List[str]]]:
    """``(headers, rows)`` of the registry's learned models, as the module's Models table shows them."""
    from ..registry import describe_models

    headers = ["Model", "Version", "Dims", "Installed", "Size (MB)", "Licence"]
    rows = [[m["name"], m.get("version", ""), "/".join(f"{d}D" for d in m.get("spatial_dims", [])),
             "yes" if m.get("installed") else "no", f"{m.get('size', 0) / 1e6:.1f}", m.get("licence", "")]
            for m in describe_models()]
    return headers, [[str(v) for v in row] for row in rows]


# ------------------------------------------------------------------------------------------- jobs


@dataclasses.dataclass
class DenoiseJob:
    """Everything a worker needs: copies of the arrays, the validated settings and the methods."""

    input: Volume
    settings: DenoiseSettings
    methods: List[str]
    reference: Optional[Volume] = None
    input_name: str = "volume"
    input_node_id: str = ""

    @property
    def options(self) -> RunOptions:
        return self.settings.options


def prepare_denoise(input_node: Any, settings: DenoiseSettings, reference_node: Any = None,
                    methods: Optional[Sequence[str]] = None) -> DenoiseJob:
    """Main thread: validate the choices and copy the input (and reference) out of the scene.

    ``methods`` (default: the settings' method) are run in this order by :func:`run_job`.
    """
    settings = settings.validated()
    volume = volume_from_node(input_node, "input")
    reference = None
    if reference_node is not None:
        if reference_node is input_node:
            raise InputError("The reference volume must be a different volume from the input.")
        reference = volume_from_node(reference_node, "reference")
        if reference.array.shape != volume.array.shape:
            raise InputError(
                f"The reference volume ({' x '.join(map(str, reference.array.shape))} voxels) must "
                f"have the same size as the input ({' x '.join(map(str, volume.array.shape))}).")
        difference = geometry_difference(volume, reference)
        if difference is not None:
            raise InputError(f"The reference volume does not lie on the input's voxel grid ({difference}); the "
                             "metrics compare voxel by voxel, so it must be the same scan (e.g. the original of "
                             "a simulated volume). Resample it onto the input first.")
    names = [settings.method] if methods is None else [str(m).strip() for m in methods if str(m).strip()]
    if not names:
        raise InputError("No method was selected to compare.")
    return DenoiseJob(volume, settings, names, reference, input_node.GetName(), input_node.GetID() or "")


def run_job(job: DenoiseJob, progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelToken] = None) -> "Comparison":
    """Anywhere (a worker): every method of ``job`` on its input; touches no MRML node.

    Returns :func:`~LowLightDenoiseLib.evaluation.run_methods`' :class:`Comparison`: the table's
    rows (the unprocessed input first when there is a reference) and each method's outcome (output
    volume, row, warnings). Progress is one fraction over all methods; :class:`CancelledError`
    stops between steps.
    """
    from ..jobs.work import run_denoise

    return run_denoise(job.input, job.methods, job.options, calibrate=job.settings.calibrate,
                       reference=job.reference, progress=progress, cancel=cancel,
                       adapt_seconds=job.settings.adapt_seconds)


def publish_denoise(scene: Any, job: DenoiseJob, comparison: "Comparison", *, keep_outputs: bool = True,
                    table_name: Optional[str] = None, like: Any = None) -> Tuple[List[Any], Any]:
    """Main thread: add the output volume node(s) and one metrics table node to ``scene``.

    Returns ``(output_nodes, table_node)``; with ``keep_outputs=False`` only the table is added.
    """
    if like is None and job.input_node_id:
        like = scene.GetNodeByID(job.input_node_id)
    nodes = []
    if keep_outputs:
        for o in comparison.outcomes:
            what = method_label(o.method) + (f" ({o.row['route']})" if o.row.get("route") else "")
            node = node_from_volume(o.volume, scene, output_name(job.input_name, what), like=like,
                                    window_level_from_like=o.category != "enhance")
            describe_output(node, f"{what} ({_run_text(job, o)})", job.input_name)
            nodes.append(node)
    table = metrics_table_node(scene, comparison.rows, table_name or f"{job.input_name} metrics")
    describe_output(table, f"{', '.join(map(method_label, job.methods))} ({_run_text(job)})", job.input_name)
    return nodes, table


def _run_text(job: DenoiseJob, outcome: Any = None) -> str:
    """How the run was made, for a node's description."""
    row = outcome.row if outcome is not None else {}
    opts = job.options
    strength = "automatic" if opts.strength is None else f"{opts.strength:g}"
    if job.settings.calibrate and opts.strength is None:
        strength += ", self-calibrated"
    adapted = f", adapted to this scan ({row.get('adapt_steps')} steps)" if row.get("adapt_kept") else ""
    routed = (f", chosen for {row.get('noise_type')} noise (probability {row.get('noise_probability')})"
              if row.get("route") else "")
    return (f"mode {row.get('mode') or opts.mode}, slice axis {opts.axis}, device {row.get('device') or opts.device}, "
            f"strength {strength}, flips {opts.flips}{adapted}{routed}")


def denoise_node(scene: Any, input_node: Any, method: str, *, reference_node: Any = None,
                 options: Optional[RunOptions] = None, calibrate: bool = False,
                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                 **option_fields: Any) -> Tuple[Any, Any]:
    """Denoise ``input_node`` with ``method`` into a new node; returns ``(output_node, table_node)``.

    How it runs is ``options`` (a :class:`RunOptions`) or its fields as keywords (``mode``, ``axis``,
    ``device``, ``strength``, ``seed``, ``flips``...), keywords winning. The input node is not
    modified; the output has the input's geometry and units. The table has the run (time, device,
    non-default strength and flips) and PSNR/SSIM/MSE against ``reference_node`` (2D SSIM along the
    run's slice axis) after a row for the unprocessed input, and the no-reference figures.
    """
    settings = DenoiseSettings(method, _merge_options(options, **option_fields), calibrate)
    job = prepare_denoise(input_node, settings, reference_node)
    nodes, table = publish_denoise(scene, job, run_job(job, progress, cancel), like=input_node)
    return nodes[0], table


def compare_nodes(scene: Any, input_node: Any, methods: Sequence[str], *, reference_node: Any = None,
                  options: Optional[RunOptions] = None, calibrate: bool = False, keep_outputs: bool = False,
                  plot_column: Optional[str] = None, progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None, **option_fields: Any) -> Tuple[Any, List[Any], Any]:
    """Run several methods on one input into ONE table; returns ``(table_node, output_nodes, chart)``.

    Options as for :func:`denoise_node`, the same for every method. ``plot_column`` (default: PSNR
    with a reference, else the noise reduction) is drawn as a bar chart node; ``keep_outputs`` also
    adds every output volume to the scene.
    """
    methods = list(methods)
    settings = DenoiseSettings(methods[0] if methods else "", _merge_options(options, **option_fields), calibrate)
    job = prepare_denoise(input_node, settings, reference_node, methods=methods)
    nodes, table = publish_denoise(scene, job, run_job(job, progress, cancel), keep_outputs=keep_outputs,
                                   table_name=f"{job.input_name} comparison", like=input_node)
    chart = metrics_plot_node(scene, table, plot_column or default_plot_column(table))
    return table, nodes, chart


def simulate_node(scene: Any, input_node: Any, settings: Optional[SimulationSettings] = None, *,
                  name: Optional[str] = None) -> Any:
    """Simulate a low-light (or other noisy) acquisition of ``input_node`` into a new node."""
    from ..jobs.work import run_simulation

    settings = settings or SimulationSettings()
    noisy = run_simulation(volume_from_node(input_node, "input"), settings)
    return publish_simulation(scene, input_node, settings, noisy, name=name)


def publish_simulation(scene: Any, input_node: Any, settings: SimulationSettings, noisy: Volume, *,
                       name: Optional[str] = None, input_name: Optional[str] = None) -> Any:
    """Main thread: the simulated volume as a new node, named and described as a simulation
    (displayed like ``input_node`` when given)."""
    noise = str(settings.noise).lower()
    source = input_name or (input_node.GetName() if input_node is not None else "volume")
    node = node_from_volume(noisy, scene, name or output_name(source, f"{noise} simulation"),
                            like=input_node, window_level_from_like=True)
    describe_output(node, f"a simulated {noise} acquisition (seed {int(settings.seed)}; not a real scan)", source)
    return node


__all__ = ["DenoiseJob", "DenoiseSettings", "SimulationSettings", "compare_nodes", "denoise_node",
           "method_choices", "models_table", "noise_types", "prepare_denoise", "publish_denoise", "publish_simulation",
           "run_job", "simulate_node"]
