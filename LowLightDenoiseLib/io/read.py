"""``read_volume``: a file (through :mod:`.reading`) or a DICOM folder (through :mod:`.dicom`)."""
from __future__ import annotations

from typing import Any, Dict, Optional

import SimpleITK as sitk

from ..errors import InputError
from ..volume import Volume
from .dicom import dicom_volume, read_dicom_folder
from .formats import file_format, supported_extensions
from .reading import check_input_path, execute, looks_like_dicom, to_volume


def read_volume(path: Any, *, series_uid: Optional[str] = None) -> Volume:
    """Read an image file or a DICOM series folder into a :class:`Volume` in physical units.

    ``series_uid`` picks one DICOM series of a folder (default: the one with the most files).
    Raises :class:`InputError` with one sentence for a missing, unreadable or non-regular path, an
    unsupported extension, a damaged or truncated file, a 4D image, an image too large for the
    available memory, or a folder without a (complete) DICOM series.
    """
    p = check_input_path(path)
    if p.is_dir():
        return read_dicom_folder(p, series_uid)
    fmt = file_format(p)
    if fmt is None and looks_like_dicom(p):
        fmt = "dicom"
    if fmt is None:
        raise InputError(
            f"The file type of {p.name} is not supported; use one of {', '.join(supported_extensions())} "
            "or a DICOM folder.")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    if fmt == "dicom":
        reader.SetImageIO("GDCMImageIO")
    image = execute(reader, p, fmt)
    tags = {k: reader.GetMetaData(k).strip() for k in reader.GetMetaDataKeys()} if fmt == "dicom" else {}
    meta: Dict[str, Any] = {"format": fmt, "path": str(p)}
    if fmt == "dicom":
        return dicom_volume(image, tags, meta, p)
    return to_volume(image, meta, p)
