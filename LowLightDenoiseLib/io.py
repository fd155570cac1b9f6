"""Read and write images as :class:`~.volume.Volume`, keeping geometry and physical units.

Everything goes through SimpleITK (ITK's NRRD, NIfTI, MetaImage, GDCM, PNG, TIFF, JPEG and BMP
readers), so the geometry conventions are ITK's: LPS, ``spacing``/``origin`` as ``(x, y, z)``.

Reading
    * files: ``.nrrd .nhdr .nii .nii.gz .mha .mhd .dcm .png .tif .tiff .jpg .jpeg .bmp``, and DICOM
      files without an extension (recognised by their ``DICM`` preamble);
    * a folder: the DICOM series in it (sub-folders included); the series with the most files is
      read unless ``series_uid`` names another;
    * DICOM values come out in physical units (GDCM applies Rescale Slope/Intercept, so CT is in HU);
      MONOCHROME1 images (radiographs stored with bright = empty) come out as MONOCHROME2
      (bright = dense): ITK's GDCM reader (ITK >= 5.1) inverts them over the range of the stored
      bits, ``value = 2**BitsStored - 1 - stored``, and ``metadata`` records
      ``photometric_source="MONOCHROME1"``; they must not be inverted again;
    * 2D images become ``z = 1`` volumes with z spacing 1 and z origin 0; an alpha channel is dropped;
      4D images (time series) are refused.

Writing (:func:`write_volume`)
    The format follows the extension; the file is written into a private temporary folder beside
    the output and moved into place with :func:`os.replace`, so a failure never leaves a partial
    file. See :func:`output_dtype` for the rules that choose the stored pixel type.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .volume import Volume

PathLike = Union[str, "os.PathLike[str]"]

# extension -> format name; longest extensions first so that ".nii.gz" wins over ".gz".
_EXTENSIONS: Dict[str, str] = {
    ".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "metaimage",
    ".mhd": "metaimage", ".dcm": "dicom", ".dicom": "dicom", ".png": "png", ".tif": "tiff",
    ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp",
}
_TITLES = {"nifti": "NIfTI", "nrrd": "NRRD", "metaimage": "MetaImage", "dicom": "DICOM", "png": "PNG",
           "tiff": "TIFF", "jpeg": "JPEG", "bmp": "BMP"}
# Pixel types each writer accepts (None: every integer and float type); order = preference.
_WRITE_DTYPES: Dict[str, Optional[Tuple[str, ...]]] = {
    "nifti": None, "nrrd": None, "metaimage": None,
    "tiff": ("uint8", "uint16", "int8", "int16", "uint32", "int32", "float32"),
    "png": ("uint8", "uint16"),
    "jpeg": ("uint8",),
    "bmp": ("uint8",),
}
# Formats that hold one 2D image and no origin/direction (TIFF holds 3D stacks, spacing only).
_FLAT_FORMATS = ("png", "jpeg", "bmp")
_GEOMETRY_FORMATS = ("nifti", "nrrd", "metaimage")
_LOSSLESS_COMPRESSED = ("nrrd", "metaimage", "tiff")
JPEG_QUALITY = 95
# An integer source type is kept when the values exceed its range by at most this fraction of the
# range (small filter overshoots, clipped); beyond that the values do not fit.
FIT_TOLERANCE = 0.01


def supported_extensions(write: bool = False) -> Tuple[str, ...]:
    """File extensions :func:`read_volume` accepts (or, with ``write=True``, :func:`write_volume`)."""
    return tuple(e for e, f in _EXTENSIONS.items() if not (write and f == "dicom"))


def file_format(path: PathLike) -> Optional[str]:
    """Format name (``nrrd``, ``nifti``, ``metaimage``, ``dicom``, ``png``...) from the extension, or None."""
    name = Path(path).name.lower()
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    return None


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (or folder), even through links or ``..``."""
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return os.path.samefile(pa, pb)
    return os.path.normcase(os.path.realpath(pa)) == os.path.normcase(os.path.realpath(pb))


# ----------------------------------------------------------------------------------------- reading

def read_volume(path: PathLike, *, series_uid: Optional[str] = None) -> Volume:
    """Read an image file or a DICOM series folder into a :class:`Volume` in physical units.

    ``series_uid`` picks one DICOM series of a folder (default: the one with the most files).
    Raises :class:`InputError` with one sentence for a missing path, an unsupported extension, a
    damaged file, a 4D image or a folder without DICOM series.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"The input {p} does not exist.")
    if p.is_dir():
        return _read_dicom_folder(p, series_uid)
    fmt = file_format(p)
    if fmt is None and _looks_like_dicom(p):
        fmt = "dicom"
    if fmt is None:
        raise InputError(
            f"The file type of {p.name} is not supported; use one of {', '.join(supported_extensions())} "
            "or a DICOM folder.")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    if fmt == "dicom":
        reader.SetImageIO("GDCMImageIO")
    image = _execute(reader, p, fmt)
    tags = {k: reader.GetMetaData(k).strip() for k in reader.GetMetaDataKeys()} if fmt == "dicom" else {}
    meta: Dict[str, Any] = {"format": fmt, "path": str(p)}
    if fmt == "dicom":
        return _dicom_volume(image, tags, meta, p)
    return _to_volume(image, meta, p)


def _looks_like_dicom(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _execute(reader: Any, p: Path, fmt: str) -> sitk.Image:
    """Run a SimpleITK reader, turning its exceptions into one sentence, and refuse 4D images."""
    what = _TITLES.get(fmt, fmt)
    try:
        if isinstance(reader, sitk.ImageFileReader):  # header first: refuse 4D before loading it
            reader.ReadImageInformation()
            _check_dimension(reader.GetDimension(), reader.GetSize(), p)
        image = reader.Execute()
    except RuntimeError as e:
        raise InputError(f"Could not read {p.name}: it is damaged or not a valid {what} image.") from e
    _check_dimension(image.GetDimension(), image.GetSize(), p)
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    return image


def _check_dimension(dim: int, size: Tuple[int, ...], p: Path) -> None:
    if dim > 4 or (dim == 4 and size[3] > 1):
        raise InputError(
            f"{p.name} is a {dim}D image ({' x '.join(map(str, size))}); only 2D and 3D images are supported.")


def _to_volume(image: sitk.Image, meta: Dict[str, Any], p: Path) -> Volume:
    """SimpleITK image -> Volume: 2D embedded with z = 1, alpha dropped, complex refused."""
    if "complex" in image.GetPixelIDTypeAsString():
        raise InputError(f"{p.name} has complex values; give its magnitude instead.")
    dim = image.GetDimension()
    array = sitk.GetArrayFromImage(image)
    spacing = list(image.GetSpacing())
    origin = list(image.GetOrigin())
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dim, dim)
    if dim == 2:
        array = array[np.newaxis]
        spacing.append(1.0)
        origin.append(0.0)
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction = d3
    ncomp = image.GetNumberOfComponentsPerPixel()
    if ncomp > 1:
        if ncomp in (2, 4):  # grey+alpha, RGBA: alpha is transparency, not signal
            array = array[..., : ncomp - 1]
            meta["alpha_dropped"] = True
        elif ncomp != 3:
            raise InputError(
                f"{p.name} has {ncomp} values per pixel; only grey, RGB and RGBA images are supported.")
        if array.shape[-1] == 1:
            array = array[..., 0]
        elif meta.get("format") == "bmp" and np.all(array == array[..., :1]):
            array = np.ascontiguousarray(array[..., 0])  # ITK reads grey-palette BMP as RGB
    meta["channels"] = "RGB" if array.ndim == 4 else "grey"
    return Volume(array=array, spacing=tuple(spacing), origin=tuple(origin),
                  direction=tuple(direction.ravel()), source_dtype=str(array.dtype), metadata=meta)


def _read_dicom_folder(folder: Path, series_uid: Optional[str]) -> Volume:
    counts: Dict[str, int] = {}
    for dirpath, dirnames, _ in os.walk(folder):
        dirnames.sort()
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(dirpath):
            counts[uid] = counts.get(uid, 0) + len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(dirpath, uid))
    if not counts:
        raise InputError(f"The folder {folder} contains no DICOM series.")
    if series_uid is None:
        series_uid = sorted(counts, key=lambda u: (-counts[u], u))[0]
    elif series_uid not in counts:
        raise InputError(
            f"DICOM series {series_uid} is not in {folder}; it holds {', '.join(sorted(counts))}.")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid, False, True)
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    image = _execute(reader, folder, "dicom")
    tags = {k: reader.GetMetaData(0, k).strip() for k in reader.GetMetaDataKeys(0)}
    meta: Dict[str, Any] = {"format": "dicom", "path": str(folder), "series_uid": series_uid,
                            "series_count": len(counts), "files": len(files)}
    positions = []  # uneven slice gaps are recorded: ITK uses the first gap as the z spacing
    for i in range(len(files)):
        if reader.HasMetaDataKey(i, "0020|0032"):
            positions.append([float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")])
    if len(positions) == len(files) and len(files) > 2:
        normal = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2]
        steps = np.diff(np.asarray(positions) @ normal)
        if np.ptp(steps) > 0.01 * max(abs(float(np.mean(steps))), 1e-6):
            meta["slice_spacing_range"] = (round(float(np.min(np.abs(steps))), 4),
                                           round(float(np.max(np.abs(steps))), 4))
    return _dicom_volume(image, tags, meta, folder)


def _dicom_volume(image: sitk.Image, tags: Dict[str, str], meta: Dict[str, Any], p: Path) -> Volume:
    """Finish a GDCM read: record what the header says (modality, units, photometric), use compact types."""
    modality = tags.get("0008|0060", "")
    photometric = tags.get("0028|0004", "")
    slope = _float(tags.get("0028|1053"), 1.0)
    intercept = _float(tags.get("0028|1052"), 0.0)
    bits = int(_float(tags.get("0028|0101"), 0)) or None
    rescale_type = tags.get("0028|1054", "")
    units = rescale_type if rescale_type not in ("", "US") else ("HU" if modality == "CT" else None)  # US: unspecified
    meta.update({"modality": modality or None, "photometric": photometric or None,
                 "bits_stored": bits, "rescale_slope": slope, "rescale_intercept": intercept})
    if units:
        meta["units"] = units
    if tags.get("0008|103e"):
        meta["series_description"] = tags["0008|103e"]
    volume = _to_volume(image, meta, p)
    a = volume.array
    if a.dtype.kind in "iu" and a.dtype.itemsize > 2:  # GDCM widens int16 + intercept to int32
        for t in (np.int16, np.uint16):
            if a.size and np.iinfo(t).min <= a.min() and a.max() <= np.iinfo(t).max:
                a = a.astype(t)
                break
    elif a.dtype == np.float64:  # non-integer slope: 16-bit stored values need no more than float32
        a = a.astype(np.float32)
    if photometric == "MONOCHROME1":  # ITK >= 5.1 (SimpleITK >= 2.0) has already inverted it
        meta["photometric"] = "MONOCHROME2"
        meta["photometric_source"] = "MONOCHROME1"
    volume.array = a
    volume.source_dtype = str(a.dtype)
    return volume


def _float(text: Optional[str], default: float) -> float:
    try:
        return float(str(text).split("\\")[0])
    except (TypeError, ValueError):
        return default


# ----------------------------------------------------------------------------------------- writing

def output_dtype(volume: Volume, fmt: str, dtype: Optional[Union[str, np.dtype]] = None) -> np.dtype:
    """The pixel type :func:`write_volume` stores ``volume`` with in format ``fmt``.

    * ``dtype`` given: used as is (integers rounded and clipped) if the format can store it.
    * otherwise the volume's ``source_dtype`` when the values fit it (up to ``FIT_TOLERANCE`` of
      the type's range, clipped: HU int16 stays int16), a float source keeps its float type, and
      values that do not fit an integer source become float32;
    * formats with few pixel types (PNG: uint8/uint16, JPEG and BMP: uint8, TIFF: no float64) get
      float32 where they allow it, else the first unsigned type that holds the values; values they
      cannot hold (e.g. negative HU in a PNG) are refused with one sentence.
    """
    allowed = _WRITE_DTYPES[fmt]
    title = _TITLES[fmt]
    if dtype is not None:
        try:
            dt = np.dtype(dtype)
        except TypeError as e:
            raise InputError(f"Unknown output data type {dtype!r}.") from e
        if dt.kind not in "iuf" or (allowed is not None and dt.name not in allowed):
            kinds = ", ".join(allowed) if allowed else "integer or float types"
            raise InputError(f"{title} files cannot store {dt.name} values; use {kinds}.")
        return dt
    lo, hi = _value_range(volume.array)
    try:
        src = np.dtype(volume.source_dtype or volume.array.dtype)
    except TypeError:
        src = volume.array.dtype
    if src.kind == "b":
        src = np.dtype(np.uint8)
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
        f"{title} stores values from 0 to {np.iinfo(largest).max} only and this image ranges from "
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


def _cast(a: np.ndarray, dt: np.dtype, path: Path) -> np.ndarray:
    if dt.kind in "iu":
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)):
                raise InputError(
                    f"Cannot write {path.name}: the image has NaN or infinite values, which {dt.name} cannot store.")
            info = np.iinfo(dt)
            return np.clip(np.rint(a), info.min, info.max).astype(dt)
        if a.dtype != dt:
            info = np.iinfo(dt)
            return np.clip(a, info.min, info.max).astype(dt)
        return a
    return a.astype(dt, copy=False)


def _image_for_writing(volume: Volume, fmt: str, path: Path, dtype: Optional[Union[str, np.dtype]]) -> sitk.Image:
    """Everything that can fail before the disk is touched: shape, channels, pixel type, geometry."""
    title = _TITLES[fmt]
    a = volume.array
    depth = a.shape[0]
    if fmt in _FLAT_FORMATS and depth > 1:
        raise InputError(
            f"{title} holds one 2D image but this volume has {depth} slices; write .nrrd, .nii.gz or .mha instead.")
    if volume.channels == 4 and fmt in ("jpeg", "bmp"):
        raise InputError(f"{title} cannot store an alpha channel; write .png or .tiff instead.")
    dt = output_dtype(volume, fmt, dtype)
    a = np.ascontiguousarray(_cast(a, dt, path))
    direction = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    spacing, origin = list(volume.spacing), list(volume.origin)
    flat_geometry = np.allclose(direction[2], (0, 0, 1)) and np.allclose(direction[:, 2], (0, 0, 1)) \
        and origin[2] == 0.0
    if depth == 1 and (fmt not in _GEOMETRY_FORMATS or flat_geometry):
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


def write_volume(volume: Volume, path: PathLike, *, overwrite: bool = False,
                 dtype: Optional[Union[str, np.dtype]] = None) -> Path:
    """Write ``volume`` to ``path`` atomically; the format follows the extension. Returns the path.

    Refuses an existing output unless ``overwrite``; ``dtype`` as in :func:`output_dtype`. A 2D
    volume is written as a 2D image (as one slice of a 3D image in NRRD/NIfTI/MHA when its origin or
    direction leave the z = 0 plane). DICOM output is refused: export from NRRD with a DICOM tool.
    """
    p = Path(path)
    fmt = file_format(p)
    if p.is_dir():
        raise InputError(f"The output {p} is a folder; give a file name such as {p / 'output.nrrd'}.")
    if fmt == "dicom":
        raise InputError("Writing DICOM is not supported; write .nrrd, .nii.gz or .mha "
                         "and export DICOM from there (e.g. with 3D Slicer).")
    if fmt is None:
        raise InputError(f"The output file type of {p.name} is not supported; use one of "
                         f"{', '.join(supported_extensions(write=True))}.")
    if p.exists() and not overwrite:
        raise InputError(f"The output {p} already exists; choose another name or allow overwriting.")
    if not p.parent.is_dir():
        raise InputError(f"The output folder {p.parent} does not exist.")
    image = _image_for_writing(volume, fmt, p, dtype)
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent)))
    except OSError as e:
        raise InputError(f"Cannot write to the folder {p.parent}: {e.strerror or e}.") from e
    try:
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(tmpdir / p.name))
        if fmt in _LOSSLESS_COMPRESSED:
            writer.UseCompressionOn()
        if fmt == "jpeg":
            writer.UseCompressionOn()
            writer.SetCompressionLevel(JPEG_QUALITY)
        try:
            writer.Execute(image)
        except RuntimeError as e:
            raise InputError(f"Could not write {p.name}: {_last_line(e)}") from e
        produced = sorted(os.listdir(tmpdir), key=lambda n: n == p.name)  # data files first, header last
        clash = [n for n in produced if n != p.name and (p.parent / n).exists()]
        if clash and not overwrite:
            raise InputError(f"The output data file {p.parent / clash[0]} already exists; "
                             "choose another name or allow overwriting.")
        for name in produced:
            os.replace(tmpdir / name, p.parent / name)
    except OSError as e:
        raise InputError(f"Could not write {p}: {e.strerror or e}.") from e
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return p


def _last_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(e).__name__
    return text if text.endswith(".") else text + "."


__all__: List[str] = ["read_volume", "write_volume", "supported_extensions", "file_format", "same_file",
                      "output_dtype", "FIT_TOLERANCE", "JPEG_QUALITY"]
