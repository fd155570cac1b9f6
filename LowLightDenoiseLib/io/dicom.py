"""DICOM: a folder's series in physical units, refused with one sentence when its slices do not make a volume.

A series is read only when its slices form a regular stack: no two files at the same position
(duplicates), no missing slice and no uneven spacing (ITK would silently use a mean spacing, so
distances and the slice count would be wrong), and no file of the folder that looks like DICOM but
cannot be read (a cut or damaged slice, which the series scan skips without a word).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..volume import Volume
from .reading import check_memory, execute, item_size, itk_warnings_off, looks_like_dicom, to_volume

#: slice gaps may differ by this fraction of their median and still count as even: real scanners write
#: positions with jitter (a GE brain MR series: 6.96 to 7.07 mm, 1.6 %), which ITK's mean spacing absorbs;
#: a missing slice (a gap of about twice the median) or a mixed series is far outside it
SPACING_TOLERANCE = 0.1
#: two slices closer than this fraction of the median gap are the same slice twice
DUPLICATE_TOLERANCE = 0.01
_NOT_IMAGES = ("DICOMDIR",)


def _series(folder: Path) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    with itk_warnings_off():
        for dirpath, dirnames, _ in os.walk(folder):
            dirnames.sort()
            for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(dirpath):
                counts[uid] = counts.get(uid, 0) + len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(dirpath, uid))
    return counts


def _damaged_files(folder: Path, used: List[str]) -> List[Path]:
    """Files of the folder that look like DICOM, are in no series read, and cannot be read: cut or damaged."""
    taken = {os.path.normcase(os.path.abspath(f)) for f in used}
    bad = []
    with itk_warnings_off():
        for dirpath, dirnames, names in os.walk(folder):
            dirnames.sort()
            for name in sorted(names):
                path = Path(dirpath) / name
                if name.upper() in _NOT_IMAGES or os.path.normcase(os.path.abspath(path)) in taken:
                    continue
                if not looks_like_dicom(path):
                    continue
                reader = sitk.ImageFileReader()
                reader.SetImageIO("GDCMImageIO")
                reader.SetFileName(str(path))
                try:
                    reader.ReadImageInformation()
                except RuntimeError:
                    bad.append(path)
    return bad


def _check_positions(positions: np.ndarray, normal: np.ndarray, folder: Path, files: List[str]) -> None:
    """Duplicates, gaps and uneven spacing of the slice positions along the stack's normal: one sentence."""
    along = positions @ normal
    order = np.argsort(along)
    steps = np.diff(along[order])
    if not len(steps):
        return
    typical = float(np.median(np.abs(steps)))
    tolerance = max(SPACING_TOLERANCE * typical, 1e-4)
    same = np.flatnonzero(np.abs(steps) <= max(DUPLICATE_TOLERANCE * typical, 1e-4))
    if same.size:
        i = int(same[0])
        a, b = Path(files[order[i]]).name, Path(files[order[i + 1]]).name
        raise InputError(f"The DICOM series in {folder} has two slices at the same position ({a} and {b}, "
                         f"at {along[order[i]]:.2f} mm): remove the duplicate files.")
    uneven = np.abs(np.abs(steps) - typical) > tolerance
    if uneven.any():
        low, high = float(np.min(np.abs(steps))), float(np.max(np.abs(steps)))
        missing = int(round(high / typical)) - 1 if high > 1.5 * typical else 0
        detail = f" (about {missing} slice(s) missing)" if missing > 0 else ""
        raise InputError(f"The DICOM series in {folder} has uneven slice spacing, from {low:.4g} to {high:.4g} mm"
                         f"{detail}, so it is not one regular volume: check that no slice is missing or damaged.")


def read_dicom_folder(folder: Path, series_uid: Optional[str]) -> Volume:
    counts = _series(folder)
    if not counts:
        raise InputError(f"The folder {folder} contains no DICOM series.")
    if series_uid is None:
        series_uid = sorted(counts, key=lambda u: (-counts[u], u))[0]
    elif series_uid not in counts:
        raise InputError(
            f"DICOM series {series_uid} is not in {folder}; it holds {', '.join(sorted(counts))}.")
    with itk_warnings_off():
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid, False, True))
    damaged = _damaged_files(folder, files)
    if damaged:
        raise InputError(f"{damaged[0].name} in {folder} looks like a DICOM file but cannot be read (it is cut "
                         f"short or damaged), so the series would miss a slice; replace or remove it.")
    first = sitk.ImageFileReader()
    first.SetImageIO("GDCMImageIO")
    first.SetFileName(files[0])
    try:
        first.ReadImageInformation()
        size = tuple(first.GetSize()[:2]) + (len(files),)
        check_memory(int(np.prod(size, dtype=np.float64)),
                     item_size(first.GetPixelID(), first.GetNumberOfComponents(), 3), size, f"The series in {folder}")
    except RuntimeError:
        pass  # the series read below gives the sentence
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    with itk_warnings_off():
        image = execute(reader, folder, "dicom")
    tags = {k: reader.GetMetaData(0, k).strip() for k in reader.GetMetaDataKeys(0)}
    meta: Dict[str, Any] = {"format": "dicom", "path": str(folder), "series_uid": series_uid,
                            "series_count": len(counts), "files": len(files)}
    positions = []
    for i in range(len(files)):
        if reader.HasMetaDataKey(i, "0020|0032"):
            try:
                positions.append([float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")])
            except ValueError:
                break
    if len(positions) == len(files) and len(files) > 1 and image.GetDimension() == 3:
        normal = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2]
        _check_positions(np.asarray(positions, dtype=float), normal, folder, files)
    return dicom_volume(image, tags, meta, folder)


def dicom_volume(image: sitk.Image, tags: Dict[str, str], meta: Dict[str, Any], p: Path) -> Volume:
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
    volume = to_volume(image, meta, p)
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
