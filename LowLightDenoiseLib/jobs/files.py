"""Volumes as files of a job's private folder: uncompressed NRRD, the array's own type, its geometry.

Uncompressed because the folder lives for one job only (gzip would cost seconds on a large CT);
NRRD so that a file left for inspection opens in Slicer. The reader gives the array back as written;
:func:`.spec.with_geometry` then restores the exact geometry recorded in the job description.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..volume import Volume


def write_volume_file(volume: Volume, path: Path) -> Path:
    """Write ``volume``'s array (any numeric type, scalar or vector voxels) with its geometry."""
    import SimpleITK as sitk

    array = np.ascontiguousarray(volume.array)
    image = sitk.GetImageFromArray(array, isVector=array.ndim == 4)
    image.SetSpacing(list(volume.spacing))
    image.SetOrigin(list(volume.origin))
    image.SetDirection(list(volume.direction))
    try:
        sitk.WriteImage(image, str(path), useCompression=False)
    except RuntimeError as error:
        raise InputError(f"Could not write the job file {Path(path).name}: {str(error).strip().splitlines()[-1]}") \
            from error
    return Path(path)


def read_volume_file(path: Path) -> np.ndarray:
    """The array of a file written by :func:`write_volume_file`, as written (see :func:`.spec.with_geometry`)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"Could not read the job file {Path(path).name}; the job's folder was changed "
                         "or the disk is full.") from error
    return sitk.GetArrayFromImage(image)
