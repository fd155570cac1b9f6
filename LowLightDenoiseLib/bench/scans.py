"""The benchmark's scans: which files to evaluate, their modality, and their clean references.

:func:`find_scans` lists the :class:`ScanFile` s of ``--data`` (the test split of a ``splits.json``
in or beside the folder, else every readable image in it); :func:`evaluation_scans` loads each one,
centre-crops it (and resizes it for the per-resolution table) and yields the
:class:`~LowLightDenoiseLib.evaluation.Scan` s the quality loop degrades and restores.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, LowLightDenoiseError
from ..evaluation import Scan
from ..volume import Volume


@dataclasses.dataclass
class ScanFile:
    """One evaluation image on disk: its name in the tables, where it is and what it is."""

    name: str
    path: Path
    modality: str


_MODALITY_WORDS = (
    ("fundus", "fundus photo"), ("retina", "fundus photo"), ("xray", "X-ray"), ("x-ray", "X-ray"),
    ("rg1", "X-ray"), ("radiograph", "X-ray"), ("cxr", "CT"), ("ct", "CT"), ("mr", "MR"), ("brain", "MR"),
    ("ch2", "MR"), ("us", "ultrasound"), ("ultrasound", "ultrasound"), ("img2d", "microscopy"),
    ("micro", "microscopy"),
)

_DISPLAY = {"ct": "CT", "mr": "MR", "mri": "MR", "xray": "X-ray", "x-ray": "X-ray", "cr": "X-ray", "dx": "X-ray",
            "us": "ultrasound", "ultrasound": "ultrasound", "photo": "photo", "fundus": "fundus photo",
            "microscopy": "microscopy", "nm": "nuclear medicine"}


def guess_modality(name: str, metadata: Optional[Dict[str, Any]] = None) -> str:
    """Modality from the image's metadata (DICOM Modality) or, failing that, words in its name."""
    meta = metadata or {}
    for key in ("modality", "Modality", "0008|0060"):
        value = str(meta.get(key, "")).strip()
        if value:
            return {"CR": "X-ray", "DX": "X-ray", "MR": "MR", "CT": "CT", "US": "ultrasound"}.get(value.upper(), value)
    words = name.lower().replace("-", "_").replace(".", "_").split("_")
    for key, modality in _MODALITY_WORDS:
        if any(w.startswith(key) for w in words):
            return modality
    return "other"


def display_modality(name: str) -> str:
    """Uniform modality labels for the tables (``ct`` -> ``CT``, ``xray`` -> ``X-ray``)."""
    return _DISPLAY.get(name.strip().lower(), name)


def _sidecar(path: Path) -> Dict[str, Any]:
    side = path.with_suffix(".json")
    if path.suffix == ".npy" and side.is_file():
        return json.loads(side.read_text())
    return {}


def load_scan(path: Path) -> Volume:
    """Read an evaluation scan: any file :func:`..io.read_volume` reads, or a prepared scan
    (``NAME.npy`` float32 ``(z, y, x)`` in physical units, colour photos with channels along z,
    plus ``NAME.json`` with ``dims``, ``channels``, ``spacing_xyz`` and ``modality``)."""
    path = Path(path)
    if path.suffix != ".npy":
        from .. import io

        return io.read_volume(path)
    meta = _sidecar(path)
    a = np.load(path)
    channels = int(meta.get("channels", 1))
    dims = int(meta.get("dims", 3 if a.shape[0] > 1 else 2))
    if channels > 1 and dims == 2:
        a = np.moveaxis(a, 0, -1)[np.newaxis]
    vol = Volume(array=a, spacing=tuple(meta.get("spacing_xyz", (1.0, 1.0, 1.0))), metadata={
        "modality": meta.get("modality", ""), "source": meta.get("package", "")})
    vol.is_2d = dims == 2
    return vol


def _readable(path: Path) -> bool:
    from .. import io

    name = path.name.lower()
    if name.endswith(".npy"):
        return path.with_suffix(".json").is_file()
    if path.is_dir():
        return any(p.suffix.lower() == ".dcm" for p in path.iterdir())
    return any(name.endswith(ext.lower()) for ext in io.supported_extensions())


def _splits_file(data: Path) -> Optional[Path]:
    for candidate in (data / "splits.json", data.parent / "splits.json"):
        if candidate.is_file():
            return candidate
    return None


def _entry_path(entry: Any, roots: Sequence[Path]) -> Tuple[Optional[Path], Dict[str, Any]]:
    info: Dict[str, Any] = entry if isinstance(entry, dict) else {"name": str(entry)}
    names = [info.get(k) for k in ("path", "file", "prepared", "output", "name", "id") if info.get(k)]
    for name in names:
        p = Path(str(name))
        candidates = [p] if p.is_absolute() else [c for r in roots for c in (r / f"{p}.npy", r / p)]
        for cand in candidates:
            if cand.is_file() or (cand.is_dir() and _readable(cand)):
                return cand, info
    return None, info


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (as the user typed it), else whole."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def find_scans(data: Path) -> Tuple[List[ScanFile], str]:
    """The evaluation scans of ``data`` and a sentence saying how they were chosen.

    A ``splits.json`` in ``data`` or beside it (``{"test": [...]}``, or ``{"splits": {"test": ...}}``)
    selects its test split, found in ``data``, in ``data`` beside the split file or beside the split
    file itself; otherwise every readable image in ``data`` (or the one file ``data``).
    """
    data = Path(data)
    splits = _splits_file(data) if data.is_dir() else None
    if splits is not None:
        spec = json.loads(splits.read_text())
        test = spec.get("test") if isinstance(spec, dict) else None
        if isinstance(spec, dict) and test is None and isinstance(spec.get("splits"), dict):
            test = spec["splits"].get("test")
        if isinstance(test, dict):
            test = [dict(v, name=k) if isinstance(v, dict) else {"name": k, "path": v} for k, v in test.items()]
        if test:
            roots = [data, splits.parent / "data", splits.parent]
            scans = []
            for entry in test:
                path, info = _entry_path(entry, roots)
                if path is None:
                    continue
                name = str(info.get("name") or info.get("id") or path.stem)
                meta = _sidecar(path)
                modality = display_modality(str(info.get("modality") or meta.get("modality")
                                                or guess_modality(path.name)))
                scans.append(ScanFile(name, path, modality))
            if scans:
                return scans, f"the test split of `{shown_path(splits)}` ({len(scans)} of {len(test)} entries found)"
    return folder_scans(data), f"every readable image in `{shown_path(data)}`"


def folder_scans(folder: Path) -> List[ScanFile]:
    """Every readable image in ``folder`` (or the one file ``folder``), named by its file name."""
    if folder.is_file():
        items = [folder]
    else:
        items = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "splits.json")
    scans = [ScanFile(p.name.split(".")[0], p,
                      display_modality(_sidecar(p).get("modality") or guess_modality(p.name)))
             for p in items if _readable(p)]
    if not scans:
        raise InputError(f"No readable images found in {folder}.")
    return scans


def prepare_clean(volume: Volume, max_slices: int, crop: int, resolution: Optional[int] = None) -> Volume:
    """The clean reference of one evaluation: at most ``max_slices`` central slices, then either a
    central in-plane crop of at most ``crop`` pixels (``resolution`` None) or the whole slice resized
    (anti-aliased when shrinking) so that its longer side is ``resolution`` pixels."""
    a = volume.array
    z, y, x = a.shape[:3]
    zs = slice(0, z) if not max_slices or z <= max_slices else slice((z - max_slices) // 2, (z + max_slices) // 2)
    spacing = list(volume.spacing)
    if resolution:
        from skimage.transform import resize

        a = a[zs]
        scale = resolution / max(y, x)
        shape = (a.shape[0], max(8, round(y * scale)), max(8, round(x * scale)))
        a = resize(a.astype(np.float32), shape + a.shape[3:], order=1, anti_aliasing=scale < 1,
                   preserve_range=True).astype(np.float32)
        spacing = [spacing[0] / scale, spacing[1] / scale, spacing[2]]
    else:
        ys = slice(0, y) if not crop or y <= crop else slice((y - crop) // 2, (y - crop) // 2 + crop)
        xs = slice(0, x) if not crop or x <= crop else slice((x - crop) // 2, (x - crop) // 2 + crop)
        a = a[zs, ys, xs]
    out = Volume(array=np.ascontiguousarray(a), spacing=tuple(spacing), origin=volume.origin,
                 direction=volume.direction, source_dtype=volume.source_dtype, metadata=dict(volume.metadata))
    out.is_2d = volume.is_2d or out.array.shape[0] == 1
    return out


def resolution_label(shape: Sequence[int], resolution: Optional[int] = None) -> str:
    """Key of the per-resolution table: ``"H x W crop"``, or ``"N px whole, resized"`` for a
    resized variant (N = the longer side)."""
    return f"{resolution} px whole, resized" if resolution else f"{shape[1]} x {shape[2]} crop"


def evaluation_scans(files: Sequence[ScanFile], max_slices: int, crop: int, resolutions: Sequence[int] = (),
                     on_error: Optional[Callable[[str], None]] = None) -> Iterator[Scan]:
    """Each file's clean reference (centre crop), then its whole slices resized to each of ``resolutions``.

    A scan's columns say what it is: ``data`` (volumes or 2D images), ``shape``, ``resolution``,
    ``resized`` and ``voxels``. A file that cannot be read is reported through ``on_error`` and skipped.
    A file of unknown modality ("other") takes the modality its metadata names, when it names one.
    """
    for file in files:
        try:
            original = load_scan(file.path)
        except LowLightDenoiseError as error:
            if on_error is None:
                raise
            on_error(f"Scan `{file.name}` was skipped: {error}")
            continue
        if file.modality == "other":
            file.modality = display_modality(guess_modality(file.name, original.metadata))
        for resolution in [None] + list(resolutions):
            clean = prepare_clean(original, max_slices, crop, resolution)
            yield Scan(file.name, file.modality, clean, columns={
                "data": "2D images" if clean.is_2d else "volumes",
                "shape": " x ".join(str(s) for s in clean.array.shape),
                "resolution": resolution_label(clean.array.shape, resolution),
                "resized": bool(resolution), "voxels": int(np.prod(clean.spatial_shape))})
