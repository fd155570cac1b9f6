"""What a job is: a description that travels to the child process as one JSON file.

A :class:`JobSpec` names the kind of work (denoise, compare, simulate, download), the methods and
how they run (one :class:`~LowLightDenoiseLib.options.RunOptions`), the classical methods'
self-calibration, the simulation settings and the exact geometry of the input. Volumes travel
beside it as NRRD files in the job's private folder; the geometry is repeated here so that the
child's input is bit-for-bit the parent's (spacing, origin and directions as Python floats, which
JSON round-trips exactly).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import InputError
from ..options import RunOptions
from ..volume import Volume

#: version of the job file and of the line protocol (see :mod:`.protocol`)
FORMAT = 1
KINDS = ("denoise", "compare", "simulate", "download")
#: kinds whose output volumes come back from the child
VOLUME_KINDS = ("denoise", "compare", "simulate")


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
        from .. import degrade

        noise = str(self.noise).strip().lower()
        if noise == "lowlight":
            return degrade.make_degradation(noise, brightness=self.brightness, gamma=self.gamma,
                                            peak=self.peak, read_noise=self.read_noise)
        if noise == "salt_pepper":
            return degrade.make_degradation(noise, amount=self.level)
        return degrade.make_degradation(noise, sigma=self.level)


def geometry_of(volume: Volume) -> Dict[str, Any]:
    """What a volume file cannot be trusted to carry exactly: geometry, source type, 2D flag, shape."""
    return {"spacing": list(volume.spacing), "origin": list(volume.origin), "direction": list(volume.direction),
            "source_dtype": volume.source_dtype, "is_2d": bool(volume.is_2d), "shape": list(volume.array.shape),
            "dtype": str(volume.array.dtype)}


def with_geometry(array: Any, geometry: Dict[str, Any], **metadata: Any) -> Volume:
    """A volume of ``array``'s voxels (reshaped to the recorded shape) with exactly the recorded geometry."""
    import numpy as np

    array = np.asarray(array)
    shape = tuple(int(n) for n in geometry["shape"])
    if array.size != int(np.prod(shape)) or str(array.dtype) != geometry["dtype"]:
        raise InputError(f"A volume file of the job holds {array.dtype} {array.shape}, not the expected "
                         f"{geometry['dtype']} {shape}.")
    return Volume(array.reshape(shape), spacing=tuple(geometry["spacing"]), origin=tuple(geometry["origin"]),
                  direction=tuple(geometry["direction"]), source_dtype=geometry["source_dtype"],
                  is_2d=bool(geometry["is_2d"]), metadata=dict(metadata))


def check_adapt_seconds(value: Any) -> float:
    """An adaptation time in seconds: 0 (none) or a positive number; anything else is one sentence."""
    import math

    try:
        seconds = float(value or 0.0)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise InputError(f"The adaptation time must be 0 (none) or a positive number of seconds, not {value!r}.")
    return seconds


@dataclasses.dataclass
class JobSpec:
    """One job of the Slicer module (or any front end) for :mod:`LowLightDenoiseLib.jobs`.

    ``kind``: ``denoise`` / ``compare`` (every method of ``methods`` on the input, one table),
    ``simulate`` (``simulation`` applied to the input) or ``download`` (the weights of ``model``).
    ``calibrate``: classical denoisers pick their strength by J-invariant self-calibration instead of
    the noise estimate (only with automatic strength; other methods run as usual, with a warning).
    ``adapt_seconds``: above 0, each learned denoiser is first adapted to the input for that long
    (:func:`~LowLightDenoiseLib.methods.adaptation.adapt`; the table records it).
    """

    kind: str = "denoise"
    methods: List[str] = dataclasses.field(default_factory=list)
    options: RunOptions = dataclasses.field(default_factory=RunOptions)
    calibrate: bool = False
    simulation: Optional[SimulationSettings] = None
    adapt_seconds: float = 0.0
    model: str = ""
    input_name: str = "volume"
    #: ``geometry_of`` the input and reference, filled in by the launcher
    inputs: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    def validated(self) -> "JobSpec":
        """A copy with every choice checked (one sentence per problem); no torch import."""
        kind = str(self.kind).strip().lower()
        if kind not in KINDS:
            raise InputError(f"Unknown job kind {self.kind!r}; use one of {', '.join(KINDS)}.")
        methods = [str(m).strip() for m in self.methods if str(m).strip()]
        if kind in ("denoise", "compare") and not methods:
            raise InputError("No method was selected.")
        if kind == "simulate" and self.simulation is None:
            raise InputError("A simulation job needs its simulation settings.")
        if kind == "download" and not str(self.model).strip():
            raise InputError("No model was selected to download.")
        return dataclasses.replace(self, kind=kind, methods=methods, options=self.options.validated(resolve=False),
                                   calibrate=bool(self.calibrate), model=str(self.model).strip(),
                                   adapt_seconds=check_adapt_seconds(self.adapt_seconds))

    def to_dict(self) -> Dict[str, Any]:
        return {"format": FORMAT, "kind": self.kind, "methods": list(self.methods),
                "options": dataclasses.asdict(self.options), "calibrate": self.calibrate,
                "simulation": dataclasses.asdict(self.simulation) if self.simulation is not None else None,
                "model": self.model, "input_name": self.input_name, "inputs": self.inputs,
                "adapt_seconds": self.adapt_seconds}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "JobSpec":
        if data.get("format") != FORMAT:
            raise InputError(f"The job file has format {data.get('format')!r}; this library reads format {FORMAT} "
                             "(the module and the library come from different versions).")
        try:
            simulation = data.get("simulation")
            return cls(kind=data["kind"], methods=list(data.get("methods") or []),
                       options=RunOptions(**data.get("options") or {}), calibrate=bool(data.get("calibrate")),
                       simulation=SimulationSettings(**simulation) if simulation else None,
                       model=data.get("model") or "", input_name=data.get("input_name") or "volume",
                       inputs=dict(data.get("inputs") or {}), adapt_seconds=data.get("adapt_seconds") or 0.0)
        except (KeyError, TypeError) as error:
            raise InputError(f"The job file is not a valid job description ({error}).") from error

    def write(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return Path(path)

    @classmethod
    def read(cls, path: Path) -> "JobSpec":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(f"Cannot read the job file {path}: {error}.") from error
        return cls.from_dict(data)
