"""The library on 3D Slicer MRML nodes: volume node in, new volume node and metrics table out.

This module imports neither Qt nor the Slicer application, only MRML classes and
:mod:`slicer.util` array helpers, and only inside functions, so ``import LowLightDenoiseLib.mrml``
works without Slicer. The same code runs inside Slicer, in ``Slicer --no-main-window
--python-script`` and in plain Python with the ``slicer-core`` wheel.

Geometry: MRML stores spacing, origin and IJK-to-RAS directions; the library's
:class:`~LowLightDenoiseLib.volume.Volume` uses ITK's LPS. The conversion only negates the first two
rows (RAS = diag(-1, -1, 1) LPS), which is exact in floating point, so an output node has
bit-for-bit the IJK-to-RAS matrix of its input.

Threads: a GUI must touch the scene only on the main thread. Every operation is therefore split in
three steps, which the one-call functions (:func:`denoise_node`, :func:`compare_nodes`,
:func:`simulate_node`) simply chain::

    job = prepare_denoise(input_node, settings, reference_node)   # main thread: copy arrays out
    outcomes = run_job(job, progress, cancel)                      # any thread: no MRML at all
    output_node, table_node = publish_denoise(scene, job, outcomes)  # main thread: new nodes
"""
from __future__ import annotations

import dataclasses
import importlib.util
import threading
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import DEFAULT_METHOD
from .errors import CancelledError, InputError, LowLightDenoiseError
from .progress import CancelToken, ProgressCallback, RunControl
from .volume import Volume

#: RAS = FLIP @ LPS (and LPS = FLIP @ RAS).
_FLIP = np.diag([-1.0, -1.0, 1.0])

SCALAR_NODE = "vtkMRMLScalarVolumeNode"
VECTOR_NODE = "vtkMRMLVectorVolumeNode"
#: Volume node classes whose voxels are intensities this library can process.
SUPPORTED_NODE_CLASSES = (SCALAR_NODE, VECTOR_NODE)

MODES = ("auto", "2d", "3d")
DEVICES = ("auto", "cuda", "cpu")
#: Slice axes in array order (k, j, i); for an axial acquisition k is the axial direction.
AXES = (0, 1, 2)

#: Table columns in display order; any other metric follows them.
_FIRST_COLUMNS = ("method", "mode", "axis", "device", "seconds")
_UNITS = {"seconds": "s", "psnr": "dB"}


# ------------------------------------------------------------------------------------------- geometry


def ijk_to_ras(volume: Volume) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of ``volume`` (Slicer's convention) from its LPS geometry."""
    direction = np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = _FLIP @ direction @ np.diag(volume.spacing)
    m[:3, 3] = _FLIP @ np.asarray(volume.origin, dtype=np.float64)
    return m


def node_ijk_to_ras(node: Any) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of a volume node as a numpy array."""
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _check_volume_node(node: Any, what: str) -> None:
    if node is None:
        raise InputError(f"No {what} volume was selected.")
    cls = node.GetClassName() if hasattr(node, "GetClassName") else type(node).__name__
    if cls == "vtkMRMLLabelMapVolumeNode":
        raise InputError(f"{node.GetName()!r} is a label map (segment labels, not intensities); "
                         f"pick a scalar or RGB volume as {what}.")
    if cls not in SUPPORTED_NODE_CLASSES:
        raise InputError(f"{what.capitalize()} volume must be a scalar or RGB (vector) volume, "
                         f"not a {cls}.")
    if node.GetImageData() is None:
        raise InputError(f"Volume {node.GetName()!r} has no image data.")


def volume_from_node(node: Any, what: str = "input") -> Volume:
    """Copy a scalar or RGB volume node into a :class:`Volume` (LPS geometry, own array).

    The array is a copy, so later changes to the node do not reach the volume (and a worker thread
    can use it while the user edits the scene). A parent transform is not applied: the geometry is
    the node's own IJK-to-RAS, as for Slicer's own filters.
    """
    import slicer.util

    _check_volume_node(node, what)
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    if node.GetClassName() == VECTOR_NODE and array.ndim == 3:  # a one-component vector volume
        array = array[..., np.newaxis]
    spacing, origin, direction = _node_geometry(node)
    return Volume(array=array, spacing=spacing, origin=origin, direction=direction,
                  source_dtype=str(array.dtype),
                  metadata={"node_name": node.GetName(), "node_id": node.GetID() or ""})


def _array_for_node(volume: Volume) -> np.ndarray:
    """Voxel array to store: colour goes back to its stored integer type, scalars stay as computed.

    Slicer shows a vector volume as colour only for unsigned 8-bit components, so an RGB result is
    rounded and clipped to its source type; a scalar result keeps the sub-integer precision the
    denoiser produced (a CT in int16 HU comes back in float32 HU).
    """
    a = np.asarray(volume.array)
    dtype = np.dtype(volume.source_dtype or a.dtype)
    if volume.is_color and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(a), info.min, info.max).astype(dtype)
    return a


def _node_geometry(node: Any) -> Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]:
    """``(spacing, origin, direction)`` of a volume node in the library's LPS convention."""
    import vtk

    dirs = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(dirs)
    ras_dirs = np.array([[dirs.GetElement(r, c) for c in range(3)] for r in range(3)])
    origin = _FLIP @ np.asarray(node.GetOrigin(), dtype=np.float64)
    return tuple(node.GetSpacing()), tuple(origin), tuple((_FLIP @ ras_dirs).ravel())


def node_from_volume(volume: Volume, scene: Any, name: str, like: Any = None,
                     window_level_from_like: bool = True) -> Any:
    """Add a new volume node holding ``volume`` to ``scene`` and return it.

    Scalar volumes become ``vtkMRMLScalarVolumeNode``, colour volumes ``vtkMRMLVectorVolumeNode``.
    The geometry is written as spacing, origin and directions (only signs change from LPS), so a
    volume read by :func:`volume_from_node` comes back with the bit-identical IJK-to-RAS matrix.
    With ``like`` (the input node) the output takes its window/level (``window_level_from_like``)
    so both show the same contrast side by side.
    """
    import slicer.util
    import vtk

    if scene is None:
        raise InputError("No MRML scene was given to add the result to.")
    node_class = VECTOR_NODE if volume.is_color else SCALAR_NODE
    node = scene.AddNewNodeByClass(node_class, scene.GenerateUniqueName(str(name)))
    slicer.util.updateVolumeFromArray(node, _array_for_node(volume))
    node.SetSpacing(*volume.spacing)
    node.SetOrigin(*(_FLIP @ np.asarray(volume.origin, dtype=np.float64)))
    ras_dirs = _FLIP @ np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)
    m = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, float(ras_dirs[r, c]))
    node.SetIJKToRASDirectionMatrix(m)
    node.CreateDefaultDisplayNodes()
    _copy_window_level(like, node, window_level_from_like)
    for key in ("method", "mode", "device", "degradation"):
        if key in volume.metadata:
            node.SetAttribute(f"LowLightDenoise.{key}", str(volume.metadata[key]))
    return node


def _copy_window_level(source: Any, target: Any, enabled: bool) -> None:
    if not enabled or source is None or target.GetClassName() != SCALAR_NODE:
        return
    src, dst = source.GetDisplayNode(), target.GetDisplayNode()
    if src is None or dst is None or not hasattr(src, "GetWindow"):
        return
    if src.GetAutoWindowLevel():
        return
    dst.SetAutoWindowLevel(0)
    dst.SetWindowLevel(src.GetWindow(), src.GetLevel())


# ------------------------------------------------------------------------------------------- tables


def _ordered_columns(rows: Sequence[Dict[str, Any]]) -> List[str]:
    keys: List[str] = []
    for row in rows:
        for k in row:
            if k not in keys:
                keys.append(k)
    first = [k for k in _FIRST_COLUMNS if k in keys]
    return first + [k for k in keys if k not in first]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def metrics_table_node(scene: Any, rows: Sequence[Dict[str, Any]], name: str = "LowLightDenoise metrics",
                       table_node: Any = None) -> Any:
    """A table node with one row per dict of ``rows`` (numbers as double columns, the rest text).

    Columns are the union of the rows' keys (method, mode, device, seconds first); a value missing
    from a row is NaN (or empty text). ``table_node`` is refilled instead of creating a new node.
    """
    import vtk

    if scene is None:
        raise InputError("No MRML scene was given to add the table to.")
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(str(name)))
    table_node.RemoveAllColumns()
    table = table_node.GetTable()
    for col in _ordered_columns(rows):
        values = [row.get(col) for row in rows]
        numeric = all(v is None or _is_number(v) for v in values)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(col)
        for v in values:
            if numeric:
                array.InsertNextValue(float("nan") if v is None else float(v))
            else:
                array.InsertNextValue("" if v is None else str(v))
        table.AddColumn(array)
        if col.lower() in _UNITS:
            table_node.SetColumnUnitLabel(col, _UNITS[col.lower()])
    table_node.Modified()
    return table_node


def table_rows(table_node: Any) -> List[Dict[str, Any]]:
    """Read a table node back as a list of dicts (numbers as float, text as str)."""
    table = table_node.GetTable()
    rows: List[Dict[str, Any]] = [{} for _ in range(table.GetNumberOfRows())]
    for c in range(table.GetNumberOfColumns()):
        column = table.GetColumn(c)
        numeric = column.IsNumeric()
        for r in range(len(rows)):
            rows[r][column.GetName()] = (float(column.GetValue(r)) if numeric
                                         else str(column.GetValue(r)))
    return rows


def metrics_plot_node(scene: Any, table_node: Any, column: str, name: Optional[str] = None) -> Any:
    """A bar chart node (one bar per table row, labelled by ``method``) of one metric column."""
    if table_node.GetTable().GetColumnByName(column) is None:
        raise InputError(f"The metrics table has no column {column!r}.")
    title = name or f"{table_node.GetName()} {column}"
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(f"{title} series"))
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetPlotType(series.PlotTypeBar)
    series.SetLabelColumnName("method")
    series.SetYColumnName(column)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(title))
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(title)
    chart.SetXAxisTitle("method")
    unit = _UNITS.get(column.lower())
    chart.SetYAxisTitle(f"{column} ({unit})" if unit else column)
    chart.SetLegendVisibility(False)
    return chart


# ------------------------------------------------------------------------------------------- settings


@dataclasses.dataclass
class DenoiseSettings:
    """What the module's controls choose; :meth:`validated` turns bad values into one sentence.

    ``strength`` ``None`` is automatic; otherwise a multiplier of the automatic strength
    (1 = automatic, larger smooths more, 0 leaves a denoiser's input unchanged).
    """

    method: str = DEFAULT_METHOD
    mode: str = "auto"
    axis: int = 0
    device: str = "auto"
    strength: Optional[float] = None
    ensemble: int = 1  # learned models: outputs averaged over this many flips/rotations (1, 2, 4, 8)

    def validated(self) -> "DenoiseSettings":
        method = str(self.method or "").strip()
        if not method:
            raise InputError("No method was selected.")
        mode = str(self.mode).lower()
        if mode not in MODES:
            raise InputError(f"Unknown mode {self.mode!r}; use one of {', '.join(MODES)}.")
        device = str(self.device).lower()
        if device not in DEVICES and not device.startswith("cuda:"):
            raise InputError(f"Unknown device {self.device!r}; use one of {', '.join(DEVICES)}.")
        try:
            axis = int(self.axis)
        except (TypeError, ValueError):
            raise InputError(f"Slice axis must be 0, 1 or 2 (k, j, i), not {self.axis!r}.") from None
        if axis not in AXES:
            raise InputError(f"Slice axis must be 0, 1 or 2 (k, j, i), not {self.axis!r}.")
        strength = self.strength
        if strength is not None:
            strength = float(strength)
            if not np.isfinite(strength) or strength < 0:
                raise InputError(f"Strength must be a non-negative number, not {self.strength!r}.")
        from .models.inference import ENSEMBLE_SIZES

        if self.ensemble not in ENSEMBLE_SIZES:
            raise InputError(f"Averaging over flips/rotations takes {', '.join(map(str, ENSEMBLE_SIZES))} "
                             f"passes, not {self.ensemble!r}.")
        return DenoiseSettings(method, mode, axis, device, strength, int(self.ensemble))


@dataclasses.dataclass
class SimulationSettings:
    """Low-light simulation controls: the photon-limited model, or another noise type at ``level``.

    ``noise="lowlight"`` uses ``brightness``, ``gamma``, ``peak`` (photons at full scale) and
    ``read_noise`` (photons); any other type of :data:`LowLightDenoiseLib.degrade.DEGRADATIONS`
    uses ``level`` as its main parameter (``sigma``, or ``amount`` for salt-and-pepper).
    """

    noise: str = "lowlight"
    brightness: float = 0.5
    gamma: float = 1.0
    peak: float = 100.0
    read_noise: float = 1.0
    level: float = 0.05
    seed: int = 0

    def degradation(self) -> Any:
        """The :class:`~LowLightDenoiseLib.degrade.Degradation` these settings describe."""
        from . import degrade

        noise = str(self.noise).strip().lower()
        if noise == "lowlight":
            return degrade.make_degradation(noise, brightness=self.brightness, gamma=self.gamma,
                                            peak=self.peak, read_noise=self.read_noise)
        if noise == "salt_pepper":
            return degrade.make_degradation(noise, amount=self.level)
        return degrade.make_degradation(noise, sigma=self.level)


def noise_types() -> List[str]:
    """Names of the simulated noise types, low light first."""
    from .degrade import DEGRADATIONS

    return ["lowlight"] + sorted(k for k in DEGRADATIONS if k != "lowlight")


def method_choices() -> List[Tuple[str, str]]:
    """``(name, label)`` of every method for a drop-down: learned models first, then classical."""
    from .methods import list_methods

    rows = list_methods()
    learned = [r for r in rows if r.get("kind") == "learned"]
    classical = [r for r in rows if r.get("kind") != "learned"]
    choices = []
    for r in learned + classical:
        label = f"{r['name']} - {r.get('title') or r['name']}"
        if r.get("kind") == "learned" and r.get("installed") is False:
            label += " (download)"
        choices.append((str(r["name"]), label))
    return choices


# ------------------------------------------------------------------------------------------- jobs


@dataclasses.dataclass
class DenoiseJob:
    """Everything a worker thread needs: copies of the arrays, the settings and the methods."""

    input: Volume
    settings: DenoiseSettings
    methods: List[str]
    reference: Optional[Volume] = None
    input_name: str = "volume"
    input_node_id: str = ""


@dataclasses.dataclass
class DenoiseOutcome:
    """The result of one method on the job's input, with its metrics row."""

    method: str
    volume: Volume
    row: Dict[str, Any]
    category: str = "denoise"
    #: sentences to show the user (e.g. out of GPU memory: retried with smaller tiles, finished on the CPU)
    warnings: List[str] = dataclasses.field(default_factory=list)


def prepare_denoise(input_node: Any, settings: DenoiseSettings, reference_node: Any = None,
                    methods: Optional[Sequence[str]] = None) -> DenoiseJob:
    """Main thread: validate the choices and copy the input (and reference) out of the scene."""
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
    names = [settings.method] if methods is None else [str(m).strip() for m in methods if str(m).strip()]
    if not names:
        raise InputError("No method was selected to compare.")
    return DenoiseJob(volume, settings, names, reference, input_node.GetName(), input_node.GetID() or "")


def _quality(output: Volume, job: DenoiseJob) -> Dict[str, Any]:
    """Full-reference figures when the job has a reference, and always the no-reference ones."""
    from . import metrics

    row: Dict[str, Any] = {}
    if job.reference is not None:
        row.update(metrics.reference_metrics(output, job.reference))
    row.update(metrics.no_reference_metrics(job.input, output))
    return row


def _baseline_row(job: DenoiseJob) -> Dict[str, Any]:
    """The input itself measured against the reference: the row every method must beat."""
    row: Dict[str, Any] = {"method": "input (unprocessed)", "mode": "", "device": "", "seconds": 0.0}
    row.update(_quality(job.input, job))
    return row


def run_job(job: DenoiseJob, progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelToken] = None) -> List[DenoiseOutcome]:
    """Any thread: run every method of ``job`` on its input; touches no MRML node.

    Progress is one fraction over all methods; :class:`CancelledError` stops between steps.
    """
    from .methods import classical_method_names, get_method
    from .pipeline import denoise_volume, resolve_device

    control = RunControl(progress, cancel)
    s = job.settings
    outcomes: List[DenoiseOutcome] = []
    n = len(job.methods)
    for i, name in enumerate(job.methods):
        sub = control.sub(i / n, (i + 1) / n)
        sub.step(0.0, f"{name}: loading")
        options = {"ensemble": s.ensemble} if s.ensemble != 1 and name not in classical_method_names() else {}
        method = get_method(name, device=resolve_device(s.device), **options)
        result = denoise_volume(job.input, method, mode=s.mode, axis=s.axis, device=s.device,
                                strength=s.strength, progress=sub.step, cancel=control.cancel)
        row: Dict[str, Any] = dict(result.summary())
        warnings = [str(w) for w in getattr(result, "warnings", [])]
        row.pop("warnings", None)
        row.update(_quality(result.volume, job))
        if options:
            row["ensemble"] = s.ensemble
        if warnings:
            row["warnings"] = " ".join(warnings)
        outcomes.append(DenoiseOutcome(result.method, result.volume, row, method.category, warnings))
        sub.step(1.0, f"{name}: done in {result.seconds:.1f} s on {result.device}")
    return outcomes


def publish_denoise(scene: Any, job: DenoiseJob, outcomes: Sequence[DenoiseOutcome], *,
                    keep_outputs: bool = True, table_name: Optional[str] = None,
                    like: Any = None) -> Tuple[List[Any], Any]:
    """Main thread: add the output volume node(s) and one metrics table node to ``scene``.

    Returns ``(output_nodes, table_node)``; with ``keep_outputs=False`` only the table is added.
    With a reference, the first table row is the unprocessed input, the baseline to beat.
    """
    if like is None and job.input_node_id:
        like = scene.GetNodeByID(job.input_node_id)
    nodes = []
    if keep_outputs:
        for o in outcomes:
            nodes.append(node_from_volume(o.volume, scene, f"{job.input_name} {o.method}", like=like,
                                          window_level_from_like=o.category != "enhance"))
    rows = ([_baseline_row(job)] if job.reference is not None else []) + [o.row for o in outcomes]
    table = metrics_table_node(scene, rows, table_name or f"{job.input_name} metrics")
    return nodes, table


def denoise_node(scene: Any, input_node: Any, method: str, *, reference_node: Any = None,
                 mode: str = "auto", axis: int = 0, device: str = "auto",
                 strength: Optional[float] = None, ensemble: int = 1, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> Tuple[Any, Any]:
    """Denoise ``input_node`` with ``method`` into a new node; returns ``(output_node, table_node)``.

    The input node is not modified; the output has the input's geometry and units. The table has
    the run's time and device and PSNR/SSIM/MSE against ``reference_node``, or no-reference
    figures without one. ``ensemble`` > 1 averages a learned model over that many flips/rotations of the input.
    """
    job = prepare_denoise(input_node, DenoiseSettings(method, mode, axis, device, strength, ensemble), reference_node)
    nodes, table = publish_denoise(scene, job, run_job(job, progress, cancel), like=input_node)
    return nodes[0], table


def compare_nodes(scene: Any, input_node: Any, methods: Sequence[str], *, reference_node: Any = None,
                  mode: str = "auto", axis: int = 0, device: str = "auto",
                  strength: Optional[float] = None, ensemble: int = 1, keep_outputs: bool = False,
                  plot_column: Optional[str] = None, progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None) -> Tuple[Any, List[Any], Any]:
    """Run several methods on one input into ONE table; returns ``(table_node, output_nodes, chart)``.

    ``plot_column`` (default: PSNR with a reference, else the first metric) is drawn as a bar
    chart node; ``keep_outputs`` also adds every output volume to the scene.
    """
    methods = list(methods)
    settings = DenoiseSettings(methods[0] if methods else "", mode, axis, device, strength, ensemble)
    job = prepare_denoise(input_node, settings, reference_node, methods=methods)
    nodes, table = publish_denoise(scene, job, run_job(job, progress, cancel), keep_outputs=keep_outputs,
                                   table_name=f"{job.input_name} comparison", like=input_node)
    chart = metrics_plot_node(scene, table, plot_column or default_plot_column(table))
    return table, nodes, chart


def default_plot_column(table_node: Any) -> str:
    """PSNR when the table has it, else the noise reduction, else the first numeric metric."""
    table = table_node.GetTable()
    names = [table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())]
    for candidate in ("psnr", "noise_reduction"):
        if candidate in names:
            return candidate
    for c, col in enumerate(names):
        if col not in _FIRST_COLUMNS and table.GetColumn(c).IsNumeric():
            return col
    return "seconds"


def simulate_node(scene: Any, input_node: Any, settings: Optional[SimulationSettings] = None, *,
                  name: Optional[str] = None) -> Any:
    """Simulate a low-light (or other noisy) acquisition of ``input_node`` into a new node."""
    from .degrade import simulate_volume

    settings = settings or SimulationSettings()
    volume = volume_from_node(input_node, "input")
    noisy = simulate_volume(volume, settings.degradation(), seed=int(settings.seed))
    label = name or f"{input_node.GetName()} {str(settings.noise).lower()}"
    return node_from_volume(noisy, scene, label, like=input_node, window_level_from_like=True)


def add_self_test_volumes(scene: Any) -> Tuple[Any, Any]:
    """The module self-test's input, shared with CI: ``(noisy_node, clean_node)``.

    A 16 x 48 x 48 CT-like phantom in HU (air -800, soft tissue 40, bone 300) on an oblique,
    anisotropic grid, and its simulated low-light acquisition (30 photons at full scale, read noise 1).
    """
    z, y, x = np.mgrid[0:16, 0:48, 0:48]
    clean = np.full((16, 48, 48), -800.0, dtype=np.float32)
    clean[(z - 8) ** 2 / 36 + (y - 24) ** 2 / 200 + (x - 24) ** 2 / 200 < 1] = 40.0
    clean[4:12, 30:40, 28:40] = 300.0
    direction = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # LPS; i and j swapped: oblique to the array
    volume = Volume(clean, spacing=(0.8, 0.7, 2.5), origin=(-12.5, 30.0, 101.0), direction=direction)
    reference = node_from_volume(volume, scene, "clean")
    noisy = simulate_node(scene, reference, SimulationSettings(brightness=1.0, peak=30.0, read_noise=1.0, seed=1),
                          name="noisy")
    return noisy, reference


# ------------------------------------------------------------------------------------------- threads


class BackgroundTask:
    """Run ``fn(progress, cancel)`` in a daemon thread; a GUI timer polls its state.

    The latest progress (fraction, message) is kept under a lock; the result or the exception is
    kept for the main thread, which alone touches the scene. A cancelled run ends with
    ``cancelled`` true and ``error`` set to the :class:`CancelledError`.
    """

    def __init__(self, fn: Callable[[ProgressCallback, CancelToken], Any]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self.cancel_token = CancelToken()
        self.fraction = 0.0
        self.message = ""
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.error_details = ""
        self._thread = threading.Thread(target=self._run, name="LowLightDenoise", daemon=True)

    def start(self) -> "BackgroundTask":
        self._thread.start()
        return self

    def _progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self.fraction = max(self.fraction, float(fraction))
            self.message = message

    def _run(self) -> None:
        try:
            self.result = self._fn(self._progress, self.cancel_token)
        except BaseException as exc:  # handed to the main thread, which shows it
            self.error = exc
            self.error_details = traceback.format_exc()

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def status(self) -> Tuple[float, str]:
        with self._lock:
            return self.fraction, self.message

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the thread; True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, CancelledError)

    def user_message(self) -> str:
        """One sentence for the user: the library's own message, or a generic one with the type."""
        if self.error is None:
            return ""
        if isinstance(self.error, LowLightDenoiseError):
            return str(self.error)
        if isinstance(self.error, MemoryError):
            return "Not enough memory for this volume; try 2D mode, the CPU, or a cropped volume."
        return f"Unexpected error ({type(self.error).__name__}: {self.error}); see the Python console."


# ------------------------------------------------------------------------------------------- dependencies

#: import name -> pip requirement of what the module needs besides PyTorch (which the PyTorch
#: extension installs) and what Slicer ships (numpy, scipy, SimpleITK).
REQUIREMENTS: Dict[str, str] = {
    "monai": "monai>=1.3",
    "safetensors": "safetensors>=0.4",
    "skimage": "scikit-image>=0.21",
    "pywt": "PyWavelets>=1.4",
    "tqdm": "tqdm>=4.60",
}
#: Distributions Slicer itself ships that a dependency install must never replace.
PROTECTED_DISTRIBUTIONS = ("numpy", "SimpleITK", "requests", "torch")


def missing_requirements(requirements: Optional[Dict[str, str]] = None) -> List[str]:
    """Pip requirements whose module cannot be imported (nothing is imported to check)."""
    reqs = REQUIREMENTS if requirements is None else requirements
    return [req for module, req in reqs.items() if importlib.util.find_spec(module) is None]


def protected_pins() -> List[str]:
    """``name==version`` of the installed protected distributions, to pass to pip beside the
    requirements so that pip keeps Slicer's own numpy, SimpleITK, requests and torch."""
    from importlib import metadata

    pins = []
    for dist in PROTECTED_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


__all__ = [
    "AXES", "BackgroundTask", "DEVICES", "DenoiseJob", "DenoiseOutcome", "DenoiseSettings", "MODES",
    "PROTECTED_DISTRIBUTIONS", "REQUIREMENTS", "SimulationSettings", "compare_nodes", "default_plot_column",
    "denoise_node", "ijk_to_ras", "method_choices", "metrics_plot_node", "metrics_table_node",
    "missing_requirements", "node_from_volume", "node_ijk_to_ras", "noise_types", "prepare_denoise",
    "protected_pins", "publish_denoise", "run_job", "simulate_node", "table_rows", "volume_from_node",
]
