"""Writing a :class:`~..volume.Volume`: everything checked before the disk is touched, then published safely.

:func:`check_output` refuses, before any computation, what can be known from the path, the pixel type
and the input (a format that cannot hold the image, a name ITK cannot open, a folder that does not
exist); :func:`stage_volume` writes into a private temporary folder beside the output and registers
the files with a :class:`~..files.Staging`, which publishes them (``replace`` only with
``overwrite``; never over a file that appeared meanwhile); :func:`write_volume` does both at once.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..files import Staging
from ..volume import Volume
from .formats import TITLES, check_path, file_format, supported_extensions

# Pixel types each writer accepts (None: every integer and float type); order = preference.
WRITE_DTYPES = {
    "nifti": None, "nrrd": None, "metaimage": None,
    "tiff": ("uint8", "uint16", "int8", "int16", "uint32", "int32", "float32"),
    "png": ("uint8", "uint16"),
    "jpeg": ("uint8",),
    "bmp": ("uint8",),
}
# Formats that hold one 2D image and no origin/direction (TIFF holds 3D stacks, spacing only).
FLAT_FORMATS = ("png", "jpeg", "bmp")
GEOMETRY_FORMATS = ("nifti", "nrrd", "metaimage")
LOSSLESS_COMPRESSED = ("nrrd", "metaimage", "tiff")
JPEG_QUALITY = 95
# An integer source type is kept when the values exceed its range by at most this fraction of the
# range (small filter overshoots, clipped); beyond that the values do not fit.
FIT_TOLERANCE = 0.01



def _requested_dtype(dtype: Any, fmt: str) -> Optional[np.dtype]:
    if dtype is None:
        return None
    allowed = WRITE_DTYPES[fmt]
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise InputError(f"Unknown output data type {dtype!r}.") from e
    if dt.kind not in "iuf" or (allowed is not None and dt.name not in allowed):
        kinds = ", ".join(allowed) if allowed else "integer or float types"
        raise InputError(f"{TITLES[fmt]} files cannot store {dt.name} values; use {kinds}.")
    return dt


def output_dtype(volume: Volume, fmt: str, dtype: Optional[Union[str, np.dtype]] = None) -> np.dtype:
    """The pixel type :func:`write_volume` stores ``volume`` with in format ``fmt``.

    * ``dtype`` given: used as is (integers rounded and clipped to the type's range) if the format can
      store it.
    * otherwise the volume's ``source_dtype`` when the values fit it (up to ``FIT_TOLERANCE`` of
      the type's range, clipped: HU int16 stays int16), a float source keeps its float type, and
      values that do not fit an integer source become float32;
    * formats with few pixel types (PNG: uint8/uint16, JPEG and BMP: uint8, TIFF: no float64) keep an
      integer source type they can store, clipped to its range (a 16-bit PNG stays 16-bit); else
      float32 where they allow it, else the first unsigned type that holds the values; values they
      cannot hold (e.g. negative HU in a PNG) are refused with one sentence.
    """
    allowed = WRITE_DTYPES[fmt]
    requested = _requested_dtype(dtype, fmt)
    if requested is not None:
        return requested
    lo, hi = _value_range(volume.array)
    try:
        src = np.dtype(volume.source_dtype or volume.array.dtype)
    except TypeError:
        src = volume.array.dtype
    if src.kind == "b":
        src = np.dtype(np.uint8)
    if allowed is not None and src.kind in "iu" and src.name in allowed:
        return src  # the type demands it: clip (a saturated channel of a 16-bit photograph stays 16-bit)
    if src.kind in "iu":
        candidate = src if _fits(lo, hi, src) else np.dtype(np.float32)
    elif src.kind == "f":
        candidate = np.dtype(np.float64) if src.itemsize >= 8 else np.dtype(np.float32)
    else:
        candidate = np.dtype(np.float32)
    if allowed is None or candidate.name in allowed:
        return candidate
    if candidate.kind == "f" and "float32" in allowed:
        return np.dtype(np.float32)
    for name in allowed:
        if np.dtype(name).kind == "u" and _fits(lo, hi, np.dtype(name)):
            return np.dtype(name)
    largest = max((np.dtype(n) for n in allowed if np.dtype(n).kind == "u"), key=lambda d: d.itemsize)
    raise InputError(
        f"{TITLES[fmt]} stores values from 0 to {np.iinfo(largest).max} only and this image ranges from "
        f"{lo:g} to {hi:g}; write .nrrd, .nii.gz or .mha instead, or rescale it first.")


def _value_range(a: np.ndarray) -> Tuple[float, float]:
    if a.size == 0:
        return 0.0, 0.0
    if a.dtype.kind == "f":
        finite = a[np.isfinite(a)]
        if finite.size == 0:
            return 0.0, 0.0
        return float(finite.min()), float(finite.max())
    return float(a.min()), float(a.max())


def _fits(lo: float, hi: float, dt: np.dtype) -> bool:
    info = np.iinfo(dt)
    tol = FIT_TOLERANCE * (float(info.max) - float(info.min))
    return info.min - tol <= lo and hi <= info.max + tol


def to_integer(a: np.ndarray, dt: np.dtype, name: str = "the image") -> np.ndarray:
    """``a`` rounded and clipped to the integer type ``dt`` without wrapping around at its ends.

    (A float32 array cannot hold 2**31 - 1: clipping in float32 rounds the bound up to 2**31, which
    ``astype(int32)`` turns into -2**31. The bounds are applied in float64, the ends set exactly.)
    """
    info = np.iinfo(dt)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise InputError(
                f"Cannot write {name}: the image has NaN or infinite values, which {dt.name} cannot store.")
        x = np.rint(a.astype(np.float64 if dt.itemsize >= 4 else np.float32))
        lo, hi = x.dtype.type(info.min), x.dtype.type(info.max)
        over, under = x >= hi, x <= lo
        x = np.where(over | under, 0, x).astype(dt)
        x[over] = info.max
        x[under] = info.min
        return x
    if a.dtype == dt:
        return a
    src = np.iinfo(a.dtype)
    lo, hi = max(info.min, src.min), min(info.max, src.max)
    return np.clip(a, a.dtype.type(lo), a.dtype.type(hi)).astype(dt)


def _cast(a: np.ndarray, dt: np.dtype, path: Path) -> np.ndarray:
    if dt.kind in "iu":
        return to_integer(a, dt, path.name)
    return a.astype(dt, copy=False)


def check_output(path: Any, *, overwrite: bool = False, dtype: Any = None,
                 volume: Optional[Volume] = None, folder_must_exist: bool = True) -> Tuple[Path, str]:
    """Everything about an output that can be checked before computing it; returns ``(path, format)``.

    The name (a supported, writable type, valid UTF-8), the folder (exists), an existing file (only
    with ``overwrite``, and only a regular file), the pixel type ``dtype`` for the format, and, given
    ``volume`` (the input, whose shape, channels and values the output will share), whether the
    format can hold it. Raises :class:`InputError` with one sentence. ``folder_must_exist=False``: a
    folder the caller creates before writing.
    """
    p = check_path(path, "The output")
    fmt = file_format(p)
    if p.is_dir():
        raise InputError(f"The output {p} is a folder; give a file name such as {p / 'output.nrrd'}.")
    if fmt == "dicom":
        raise InputError("Writing DICOM is not supported; write .nrrd, .nii.gz or .mha "
                         "and export DICOM from there (e.g. with 3D Slicer).")
    if fmt is None:
        raise InputError(f"The output file type of {p.name} is not supported; use one of "
                         f"{', '.join(supported_extensions(write=True))}.")
    if os.path.lexists(p):
        if not overwrite:
            raise InputError(f"The output {p} already exists; choose another name or allow overwriting.")
        try:
            mode = p.lstat().st_mode
        except OSError:
            mode = stat.S_IFREG
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise InputError(f"The output {p} exists and is not a regular file; it is never replaced.")
    if folder_must_exist and not p.parent.is_dir():
        raise InputError(f"The output folder {p.parent} does not exist.")
    _requested_dtype(dtype, fmt)
    if volume is not None:
        _check_shape(volume, fmt)
        output_dtype(volume, fmt, dtype)
    return p, fmt


def _check_shape(volume: Volume, fmt: str) -> None:
    title = TITLES[fmt]
    depth = volume.array.shape[0]
    if fmt in FLAT_FORMATS and depth > 1:
        raise InputError(
            f"{title} holds one 2D image but this volume has {depth} slices; write .nrrd, .nii.gz or .mha instead.")
    if volume.channels == 4 and fmt in ("jpeg", "bmp"):
        raise InputError(f"{title} cannot store an alpha channel; write .png or .tiff instead.")


def _image_for_writing(volume: Volume, fmt: str, path: Path, dtype: Optional[Union[str, np.dtype]]) -> sitk.Image:
    """Everything that can fail before the disk is touched: shape, channels, pixel type, geometry."""
    _check_shape(volume, fmt)
    a = volume.array
    depth = a.shape[0]
    dt = output_dtype(volume, fmt, dtype)
    a = np.ascontiguousarray(_cast(a, dt, path))
    direction = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    spacing, origin = list(volume.spacing), list(volume.origin)
    flat_geometry = np.allclose(direction[2], (0, 0, 1)) and np.allclose(direction[:, 2], (0, 0, 1)) \
        and origin[2] == 0.0
    if depth == 1 and (fmt not in GEOMETRY_FORMATS or flat_geometry):
        a = a[0]
        spacing, origin, direction = spacing[:2], origin[:2], direction[:2, :2]
    try:
        image = sitk.GetImageFromArray(a, isVector=volume.is_color)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(direction.ravel().tolist())
    except RuntimeError as e:
        raise InputError(f"Cannot write {path.name}: its geometry is invalid (spacing {volume.spacing}, "
                         f"direction {volume.direction}).") from e
    return image


def stage_volume(volume: Volume, path: Any, staging: Staging, *, overwrite: bool = False,
                 dtype: Optional[Union[str, np.dtype]] = None) -> List[Path]:
    """Write ``volume`` into a temporary folder beside ``path`` and register its files with ``staging``
    (published by ``staging.commit()``); returns the files it will publish (data files first, header last)."""
    if not isinstance(volume, Volume):
        raise InputError(f"write_volume needs a Volume, not {type(volume).__name__}.")
    p, fmt = check_output(path, overwrite=overwrite, dtype=dtype)
    image = _image_for_writing(volume, fmt, p, dtype)
    try:
        tmpdir = staging.temp_dir(p)
    except OSError as e:
        raise InputError(f"Cannot write to the folder {p.parent}: {e.strerror or e}.") from e
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(tmpdir / p.name))
    if fmt in LOSSLESS_COMPRESSED:
        writer.UseCompressionOn()
    if fmt == "jpeg":
        writer.UseCompressionOn()
        writer.SetCompressionLevel(JPEG_QUALITY)
    try:
        writer.Execute(image)
        produced = sorted(os.listdir(tmpdir))
    except RuntimeError as e:
        raise InputError(f"Could not write {p.name}: {_last_line(e)}") from e
    except OSError as e:
        raise InputError(f"Could not write {p}: {e.strerror or e}.") from e
    header = [n for n in produced if n.lower() == p.name.lower()][:1]
    targets = []
    for name in [n for n in produced if n not in header] + header:  # data files first, header last
        target = p if name in header else p.parent / name
        if not overwrite and name not in header and os.path.lexists(target):
            raise InputError(f"The output data file {target} already exists; "
                             "choose another name or allow overwriting.")
        staging.add(tmpdir / name, target, overwrite)
        targets.append(target)
    return targets


def write_volume(volume: Volume, path: Any, *, overwrite: bool = False,
                 dtype: Optional[Union[str, np.dtype]] = None) -> Path:
    """Write ``volume`` to ``path`` atomically; the format follows the extension. Returns the path.

    Refuses an existing output unless ``overwrite`` (also one created by another process while this
    one was writing: the file is published without replacing); ``dtype`` as in :func:`output_dtype`.
    A 2D volume is written as a 2D image (as one slice of a 3D image in NRRD/NIfTI/MHA when its origin
    or direction leave the z = 0 plane). DICOM output is refused: export from NRRD with a DICOM tool.
    """
    with Staging() as staging:
        stage_volume(volume, path, staging, overwrite=overwrite, dtype=dtype)
        try:
            staging.commit()
        except OSError as e:
            raise InputError(f"Could not write {path}: {e.strerror or e}.") from e
    return Path(os.fspath(path) if not isinstance(path, bytes) else os.fsdecode(path))


def _last_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(e).__name__
    return text if text.endswith(".") else text + "."
