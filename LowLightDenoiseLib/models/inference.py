"""Run a torch network on a block of any size with bounded memory: tiles, retries, CPU fallback.

The network always sees windows ("tiles") of a size chosen from the memory it may use, stitched by
MONAI's :func:`~monai.inferers.sliding_window_inference` with overlapping, Gaussian-weighted
blending, so a 2000-slice CT costs no more GPU memory than a 64-slice one:

* 2D: a stack of slices ``(n, C, h, w)``; windows of all slices are batched together;
* 3D: one volume ``(1, C, d, h, w)``.

Memory: the budget is the free GPU memory (``torch.cuda.mem_get_info``), capped at 4 GiB by default
whatever the volume, or a quarter of the available RAM on the CPU (free memory, the container's and
``ulimit`` limits: :mod:`..memory`), capped at 2 GiB. The cost of one voxel is the sum of every layer's
output (an upper bound: all activations alive at once), worked out on PyTorch's ``meta`` device without computing anything.

A CUDA out-of-memory error retries with half the window batch, then half the tile, down to the
smallest tile; after that the run moves to the CPU. Each retry is logged as a warning and written
into the :class:`InferenceReport` that callers can show. Mixed precision (``torch.autocast``,
float16) is used on the GPU. Progress is reported and cancellation checked before every window
batch. The input tensor is never modified.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from monai.inferers import sliding_window_inference

from ..progress import RunControl

log = logging.getLogger(__name__)

GiB = 1024 ** 3
Predictor = Callable[[torch.Tensor], torch.Tensor]
#: builds the predictor that runs windows on a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``)
PredictorFactory = Callable[[str], Predictor]
#: a run reports at least this many progress steps (window batches), however small the input
MIN_PROGRESS_STEPS = 4
#: what tile sides must be a multiple of: one number for every axis, or one per spatial axis
Multiple = Union[int, Sequence[int]]


@dataclasses.dataclass
class InferenceSettings:
    """How tiles are chosen and run; the defaults suit every device."""

    tile: Optional[int] = None  #: fixed tile edge in pixels (None: from the memory budget)
    sw_batch_size: Optional[int] = None  #: windows per network call (None: from the memory budget)
    overlap: float = 0.25  #: fraction of a tile shared with its neighbour
    blend: str = "gaussian"  #: MONAI blending of overlapping windows: ``gaussian`` or ``constant``
    memory_budget: Optional[int] = None  #: bytes the windows may use (None: from the device)
    gpu_memory_cap: int = 4 * GiB  #: most GPU memory used whatever the volume
    cpu_memory_cap: int = 2 * GiB  #: most RAM used for windows on the CPU
    amp: bool = True  #: float16 autocast on the GPU
    max_tile: int = 1024  #: largest tile edge considered
    min_tile: int = 16  #: smallest tile edge the retries go down to
    max_sw_batch: int = 64  #: most windows in one network call
    cpu_fallback: bool = True  #: after GPU out-of-memory at the smallest tile, finish on the CPU

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.overlap) < 1.0:
            raise ValueError(f"overlap must be in [0, 1), not {self.overlap}.")
        if self.blend not in ("gaussian", "constant"):
            raise ValueError(f"blend must be 'gaussian' or 'constant', not {self.blend!r}.")
        if self.tile is not None and int(self.tile) < 1:
            raise ValueError(f"tile must be a positive number of pixels, not {self.tile}.")


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """One way of cutting a block: window size (spatial) and how many windows per network call."""

    roi_size: Tuple[int, ...]
    sw_batch_size: int

    def voxels(self) -> int:
        return int(math.prod(self.roi_size)) * self.sw_batch_size


@dataclasses.dataclass
class InferenceReport:
    """What a run did; ``warnings`` are sentences a caller can show (retries, CPU fallback)."""

    requested_device: str
    device: str = ""
    plans: List[TilePlan] = dataclasses.field(default_factory=list)
    windows: int = 0
    fell_back_to_cpu: bool = False
    warnings: List[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        last = self.plans[-1] if self.plans else None
        return {"requested_device": self.requested_device, "device": self.device,
                "tile": list(last.roi_size) if last else None,
                "sw_batch_size": last.sw_batch_size if last else None,
                "attempts": len(self.plans), "windows": self.windows,
                "fell_back_to_cpu": self.fell_back_to_cpu, "warnings": list(self.warnings),
                "seconds": round(self.seconds, 4)}


def available_memory(device: str = "cpu") -> int:
    """Bytes free now on ``device``: free GPU memory, or available RAM (2 GiB if the OS does not say)."""
    if str(device).startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return _available_ram()


def _available_ram() -> int:
    """Available RAM of this process (:mod:`..memory`); without an answer half the physical memory, else 2 GiB."""
    from ..memory import available_memory as ram_left, physical_memory

    left = ram_left()
    if left is not None:
        return left
    total = physical_memory()  # macOS: no available-pages count; the budget takes a quarter of this half
    return total // 2 if total else 2 * GiB


def memory_budget(device: str, settings: Optional[InferenceSettings] = None) -> int:
    """Bytes the windows of one network call may use on ``device``."""
    settings = settings or InferenceSettings()
    if settings.memory_budget is not None:
        return int(settings.memory_budget)
    if str(device).startswith("cuda"):
        return int(min(0.8 * available_memory(device), settings.gpu_memory_cap))
    return int(min(0.25 * available_memory("cpu"), settings.cpu_memory_cap))


def activation_elements_per_voxel(model: torch.nn.Module, spatial_dims: int, in_channels: int,
                                  probe: int = 32) -> float:
    """Sum of every layer's output elements per input voxel, found on the ``meta`` device (no compute).

    An upper bound of the activation memory (as if every intermediate tensor stayed alive), used to
    size tiles; a model that cannot run on ``meta`` gets a conservative 4096.
    """
    total = [0]

    def hook(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        if torch.is_tensor(output):
            total[0] += output.numel()

    try:
        shadow = copy.deepcopy(model).to("meta").eval()
        handles = [m.register_forward_hook(hook) for m in shadow.modules() if not list(m.children())]
        x = torch.zeros((1, in_channels) + (probe,) * spatial_dims, device="meta")
        with torch.inference_mode():
            shadow(x)
        for h in handles:
            h.remove()
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return 4096.0
    return max(float(total[0]) / probe ** spatial_dims, float(in_channels + 1))


def bytes_per_voxel(elements_per_voxel: float, in_channels: int, amp: bool) -> float:
    """Memory of one window voxel: activations (float16 under autocast) plus float32 input/output/weights map."""
    return elements_per_voxel * (2 if amp else 4) + 4.0 * (in_channels + 3)


def _round_down(v: int, multiple: int) -> int:
    return max(multiple, (v // multiple) * multiple)


def _round_up(v: int, multiple: int) -> int:
    return int(math.ceil(v / multiple) * multiple)


def axis_multiples(multiple: Multiple, dims: int) -> List[int]:
    """``multiple`` as one positive number per spatial axis."""
    if isinstance(multiple, (int, float)):
        return [max(1, int(multiple))] * dims
    values = [max(1, int(m)) for m in multiple]
    if len(values) != dims:
        raise ValueError(f"{len(values)} size multiples given for {dims} spatial axes.")
    return values


def plan_tiles(spatial_shape: Sequence[int], n_images: int, voxel_bytes: float, budget: int,
               settings: Optional[InferenceSettings] = None, multiple: Multiple = 1) -> TilePlan:
    """Largest near-cubic tile (sides multiples of ``multiple``, per axis if a sequence) and window
    batch that fit in ``budget`` bytes.

    A tile never exceeds the image (rounded up to the multiple); small images get one window each
    and several images (slices) share a network call.
    """
    settings = settings or InferenceSettings()
    dims = len(spatial_shape)
    mults = axis_multiples(multiple, dims)
    full = [_round_up(int(s), m) for s, m in zip(spatial_shape, mults)]
    max_voxels = max(1.0, budget / max(voxel_bytes, 1e-9))
    if settings.tile is not None:
        edges = [_round_up(int(settings.tile), m) for m in mults]
    else:
        edge = int(max_voxels ** (1.0 / dims))
        edge = max(min(edge, settings.max_tile), settings.min_tile)
        edges = [_round_down(edge, m) for m in mults]
    roi = _fit_roi(full, edges, max_voxels, mults, settings)
    n_windows = n_images * windows_per_image(spatial_shape, roi, settings.overlap)
    if settings.sw_batch_size is not None:
        sw = int(settings.sw_batch_size)
    else:
        sw = int(max_voxels // math.prod(roi))
    sw = max(1, min(sw, settings.max_sw_batch, n_windows))
    return TilePlan(tuple(roi), sw)


def _fit_roi(full: List[int], edges: List[int], max_voxels: float, mults: List[int],
             settings: InferenceSettings) -> List[int]:
    """Clip the cube of sides ``edges`` to the image and grow the other sides into what the image leaves."""
    roi = [min(e, f) for e, f in zip(edges, full)]
    if settings.tile is not None:
        return roi
    for _ in range(len(roi)):  # a thin image (few slices) lets the in-plane sides grow
        spare = max_voxels / math.prod(roi)
        open_axes = [i for i, r in enumerate(roi) if r < full[i] and r < settings.max_tile]
        if spare < 2 or not open_axes:
            break
        grow = spare ** (1.0 / len(open_axes))
        for i in open_axes:
            roi[i] = min(full[i], settings.max_tile, _round_down(int(roi[i] * grow), mults[i]))
    return roi


def _scan_interval(image: int, roi: int, overlap: float) -> int:
    """The step MONAI's sliding window uses along one axis."""
    if roi >= image:
        return roi
    return max(1, int(roi * (1 - overlap)))


def windows_per_image(spatial_shape: Sequence[int], roi_size: Sequence[int], overlap: float) -> int:
    """Number of windows the sliding window cuts from one image (as MONAI counts them)."""
    count = 1
    for size, roi in zip(spatial_shape, roi_size):
        size = max(int(size), int(roi))
        step = _scan_interval(size, int(roi), overlap)
        count *= int(math.ceil((size - roi) / step)) + 1 if size > roi else 1
    return count


def shrink(plan: TilePlan, settings: Optional[InferenceSettings] = None,
           multiple: Multiple = 1) -> Optional[TilePlan]:
    """The next smaller plan after an out-of-memory error: half the window batch, else half the tile."""
    settings = settings or InferenceSettings()
    if plan.sw_batch_size > 1:
        return TilePlan(plan.roi_size, plan.sw_batch_size // 2)
    mults = axis_multiples(multiple, len(plan.roi_size))
    floors = [max(m, int(settings.min_tile)) for m in mults]
    if all(r <= f for r, f in zip(plan.roi_size, floors)):
        return None
    roi = tuple(r if r <= f else max(f, _round_down(r // 2, m)) for r, f, m in zip(plan.roi_size, floors, mults))
    return TilePlan(roi, 1)


def is_out_of_memory(error: BaseException) -> bool:
    """True for a CUDA out-of-memory error (also as the RuntimeError older torch and MONAI raise)."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(error, oom_type):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text.lower() or "Seems to be OOM" in text)


def model_predictor(model: torch.nn.Module, device: str, amp: bool = True) -> Predictor:
    """Windows (on the CPU or ``device``) -> float32 network output on the window's own device."""
    model.to(device)
    use_amp = bool(amp) and str(device).startswith("cuda")

    def predict(window: torch.Tensor) -> torch.Tensor:
        home = window.device
        x = window.to(device, non_blocking=True)
        if use_amp:
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                y = model(x)
        else:
            y = model(x)
        return y.float().to(home)

    return predict


def run_windows(x: torch.Tensor, predictor: Predictor, plan: TilePlan, control: RunControl,
                settings: Optional[InferenceSettings] = None) -> torch.Tensor:
    """One sliding-window pass over ``x`` (N, C, *spatial) on ``x``'s device; progress per window batch."""
    settings = settings or InferenceSettings()
    spatial = tuple(x.shape[2:])
    total = x.shape[0] * windows_per_image(spatial, plan.roi_size, settings.overlap)
    # a small input still reports a few steps (window batches only group independent windows: same result)
    batch = max(1, min(plan.sw_batch_size, math.ceil(total / MIN_PROGRESS_STEPS)))
    done = [0]

    def counted(window: torch.Tensor) -> torch.Tensor:
        control.step(done[0] / total, f"window {done[0] + 1} of {total}")
        y = predictor(window)
        done[0] += window.shape[0]
        return y

    with torch.inference_mode():
        y = sliding_window_inference(
            x, roi_size=plan.roi_size, sw_batch_size=batch, predictor=counted,
            overlap=settings.overlap, mode=settings.blend, padding_mode="replicate")
    control.step(1.0, f"{total} windows")
    return torch.as_tensor(y)


def infer(x: torch.Tensor, predictor_factory: PredictorFactory, device: str, *, voxel_bytes: float,
          control: Optional[RunControl] = None, settings: Optional[InferenceSettings] = None,
          multiple: Multiple = 1, plan: Optional[TilePlan] = None) -> Tuple[torch.Tensor, InferenceReport]:
    """Run windows of ``x`` (N, C, *spatial, CPU) through the predictor on ``device``, surviving out-of-memory.

    ``predictor_factory(device)`` returns the function applied to each window batch; the stitched
    result stays on the CPU, so device memory holds only one window batch and the network. On an
    out-of-memory error the plan shrinks (:func:`shrink`) and the pass starts again; at the smallest
    tile the run moves to the CPU when ``settings.cpu_fallback`` (each step logged and recorded).
    Progress stays monotone across restarts.
    """
    settings = settings or InferenceSettings()
    control = control or RunControl()
    report = InferenceReport(requested_device=str(device))
    t0 = time.perf_counter()
    spatial = tuple(x.shape[2:])
    if plan is None:
        plan = plan_tiles(spatial, x.shape[0], voxel_bytes, memory_budget(device, settings), settings, multiple)
    reached = control.start
    progress = control.progress

    def track(fraction: float, message: str) -> None:
        nonlocal reached
        reached = max(reached, fraction)
        if progress is not None:
            progress(reached, message)

    tracked = RunControl(track, control.cancel, control.start, control.stop)
    while True:
        report.plans.append(plan)
        report.device = str(device)
        span = tracked.stop - tracked.start
        attempt = tracked.sub((reached - tracked.start) / span if span else 0.0, 1.0)
        try:
            y = run_windows(x, predictor_factory(device), plan, attempt, settings)
            break
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
            _release(device)
            smaller = shrink(plan, settings, multiple)
            if smaller is not None:
                message = (f"Out of memory on {device} with tiles {_fmt(plan)}; "
                           f"retrying with tiles {_fmt(smaller)}.")
                plan = smaller
            elif str(device) != "cpu" and settings.cpu_fallback:
                device = "cpu"
                plan = plan_tiles(spatial, x.shape[0], voxel_bytes, memory_budget("cpu", settings), settings,
                                  multiple)
                report.fell_back_to_cpu = True
                message = (f"Out of memory on the GPU even with the smallest tiles; "
                           f"finishing on the CPU with tiles {_fmt(plan)} (slower).")
            else:
                raise
            log.warning(message)
            report.warnings.append(message)
    report.windows = x.shape[0] * windows_per_image(spatial, plan.roi_size, settings.overlap)
    report.seconds = time.perf_counter() - t0
    return y, report


def _fmt(plan: TilePlan) -> str:
    return f"{'x'.join(map(str, plan.roi_size))} x{plan.sw_batch_size}"


def _release(device: str) -> None:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
