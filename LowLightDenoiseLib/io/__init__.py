"""Read and write images as :class:`~..volume.Volume`, keeping geometry and physical units.

Everything goes through SimpleITK (ITK's NRRD, NIfTI, MetaImage, GDCM, PNG, TIFF, JPEG and BMP
readers), so the geometry conventions are ITK's: LPS, ``spacing``/``origin`` as ``(x, y, z)``.

Reading (:mod:`.read`, :mod:`.reading`, :mod:`.dicom`)
    * files: ``.nrrd .nhdr .nii .nii.gz .mha .mhd .dcm .png .tif .tiff .jpg .jpeg .bmp``, and DICOM
      files without an extension (recognised by their ``DICM`` preamble);
    * a folder: the DICOM series in it (sub-folders included); the series with the most files is
      read unless ``series_uid`` names another; its slices must form a regular stack (no duplicate,
      no missing slice, even spacing, no damaged file);
    * DICOM values come out in physical units (GDCM applies Rescale Slope/Intercept, so CT is in HU);
      MONOCHROME1 images (radiographs stored with bright = empty) come out as MONOCHROME2
      (bright = dense): ITK's GDCM reader (ITK >= 5.1) inverts them over the range of the stored
      bits, ``value = 2**BitsStored - 1 - stored``, and ``metadata`` records
      ``photometric_source="MONOCHROME1"``; they must not be inverted again;
    * 2D images become ``z = 1`` volumes with z spacing 1 and z origin 0; an alpha channel is dropped
      (only photograph formats have one: a 2-component NRRD/NIfTI/MHA is refused); 4D images (time
      series) are refused;
    * refused before decoding: a path that is not a regular readable file (a pipe would block), a
      name that is not UTF-8, an image whose decoded size does not fit in memory, a truncated NIfTI.

Writing (:mod:`.writing`)
    The format follows the extension; :func:`check_output` checks an output before anything is
    computed; the file is written into a private temporary folder beside the output and published
    by rename (:mod:`..files`): never over an existing file unless ``overwrite``, so a failure never
    leaves a partial file and two writers of one new name cannot both succeed. See
    :func:`output_dtype` for the rules that choose the stored pixel type.
"""
from __future__ import annotations

from typing import List

from .formats import available_memory, file_format, files_read, files_written, same_file, supported_extensions
from .read import read_volume
from .reading import check_input_path
from .writing import FIT_TOLERANCE, JPEG_QUALITY, check_output, output_dtype, stage_volume, write_volume

__all__: List[str] = ["read_volume", "write_volume", "stage_volume", "check_output", "check_input_path",
                      "supported_extensions", "file_format", "same_file", "files_read", "files_written",
                      "available_memory", "output_dtype", "FIT_TOLERANCE", "JPEG_QUALITY"]
