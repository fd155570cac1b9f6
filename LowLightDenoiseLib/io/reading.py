"""Reading an image file into a :class:`~..volume.Volume`: every check that can refuse it, with one sentence.

Before any pixel is decoded the file must exist, be a regular file (a pipe or a device would block or
never end), be readable, have a name ITK can open, hold a 2D or 3D image with 1, 3 or 4 values per
pixel (2 only as grey + alpha in a photograph format), and fit in the memory this process may still
use. A NIfTI file must hold as many bytes as its header announces (ITK pads a cut file with zeros).
"""
from __future__ import annotations

import contextlib
import gzip
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..volume import Volume
from .formats import ALPHA_FORMATS, TITLES, available_memory, check_path, size_text

#: reading needs the decoded image twice (ITK's buffer and the array copied from it)
READ_COPIES = 2


@contextlib.contextmanager
def itk_warnings_off() -> Iterator[None]:
    """ITK's warnings (e.g. GDCM's "No Series were found") off for a moment: our sentence says it."""
    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def check_input_path(path: Any, what: str = "The input") -> Path:
    """The path of an existing, readable regular file or folder, or one sentence (nothing is read)."""
    p = check_path(path, what)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{what} {p} does not exist.") from None
    except PermissionError:
        raise InputError(f"Cannot read {p}: permission denied.") from None
    except OSError as error:
        raise InputError(f"Cannot read {p}: {(error.strerror or str(error)).lower()}.") from None
    if stat.S_ISDIR(st.st_mode):
        try:
            os.listdir(p)
        except PermissionError:
            raise InputError(f"Cannot read the folder {p}: permission denied.") from None
        return p
    if not stat.S_ISREG(st.st_mode):
        kind = "a pipe" if stat.S_ISFIFO(st.st_mode) else ("a device" if stat.S_ISCHR(st.st_mode) or
                                                           stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise InputError(f"{what} {p} is {kind}, not an image file.")
    try:
        with open(p, "rb"):
            pass
    except PermissionError:
        raise InputError(f"Cannot read {p}: permission denied.") from None
    except OSError as error:
        raise InputError(f"Cannot read {p}: {(error.strerror or str(error)).lower()}.") from None
    return p


def looks_like_dicom(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def item_size(pixel_id: int, components: int, dim: int) -> int:
    """Bytes of one voxel (all its components) of a SimpleITK pixel type."""
    try:
        probe = sitk.Image([1] * max(2, dim), pixel_id, max(1, components))
        return int(sitk.GetArrayViewFromImage(probe).dtype.itemsize) * max(1, components)
    except RuntimeError:
        return 8 * max(1, components)


def check_memory(voxels: int, voxel_bytes: int, shape: Tuple[int, ...], name: str, copies: int = READ_COPIES) -> None:
    """Refuse (one sentence) an image whose decoded size does not fit in the memory left to this process."""
    needed = voxels * voxel_bytes
    available = available_memory()
    if available is not None and needed * copies > available:
        raise InputError(
            f"{name} decodes to a {' x '.join(map(str, shape))} image of {size_text(needed)}, and reading it "
            f"needs {size_text(needed * copies)} of memory but only {size_text(available)} is available; "
            "free memory, raise the memory limit or crop the image first.")


def execute(reader: Any, p: Path, fmt: str) -> sitk.Image:
    """Run a SimpleITK reader, turning its exceptions into one sentence: header first (dimension, pixel
    values, memory, a truncated NIfTI), then the pixels."""
    what = TITLES.get(fmt, fmt)
    try:
        if isinstance(reader, sitk.ImageFileReader):
            reader.ReadImageInformation()
            dim, size = reader.GetDimension(), reader.GetSize()
            check_dimension(dim, size, p)
            components = reader.GetNumberOfComponents()
            check_components(components, fmt, p, reader.GetPixelID())
            voxel = item_size(reader.GetPixelID(), components, dim)
            voxels = int(np.prod([int(s) for s in size], dtype=np.float64))
            check_memory(voxels, voxel, tuple(size), p.name)
            if fmt == "nifti":
                check_nifti_size(p)
        image = reader.Execute()
    except RuntimeError as e:
        raise InputError(f"Could not read {p.name}: it is damaged or not a valid {what} image.") from e
    except MemoryError:
        raise InputError(f"There is not enough memory to read {p.name}; free memory or crop the image first.") from None
    check_dimension(image.GetDimension(), image.GetSize(), p)
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    return image


def check_dimension(dim: int, size: Tuple[int, ...], p: Path) -> None:
    if dim > 4 or (dim == 4 and size[3] > 1):
        raise InputError(
            f"{p.name} is a {dim}D image ({' x '.join(map(str, size))}); only 2D and 3D images are supported.")


def check_components(ncomp: int, fmt: Optional[str], p: Path, pixel_id: Optional[int] = None) -> None:
    """1 (grey), 3 (RGB) and 4 (RGBA) values per pixel; 2 only as grey + alpha of a photograph format."""
    if ncomp in (1, 3, 4):
        return
    if ncomp == 2 and fmt in ALPHA_FORMATS:
        return
    if ncomp == 2:
        raise InputError(f"{p.name} has 2 values per pixel (a vector image, e.g. complex parts or a field), "
                         "not grey levels; split it into single-component images first.")
    raise InputError(f"{p.name} has {ncomp} values per pixel; only grey, RGB and RGBA images are supported.")


def _nifti_layout(head: bytes) -> Optional[Tuple[int, int]]:
    """``(vox_offset, stored data bytes)`` of a NIfTI-1 or NIfTI-2 header (either byte order), or None.

    The data size comes from the header's own ``dim`` and ``bitpix``: a file may store int16 with a scale
    factor that ITK hands over as float32, so ITK's pixel type does not tell how many bytes are on disk.
    """
    for order in ("<", ">"):
        if len(head) >= 352 and struct.unpack(order + "i", head[:4])[0] == 348:
            dims = struct.unpack(order + "8h", head[40:56])
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            offset = int(struct.unpack(order + "f", head[108:112])[0])
        elif len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            dims = struct.unpack(order + "8q", head[16:80])
            offset = int(struct.unpack(order + "q", head[168:176])[0])
        else:
            continue
        n = int(dims[0])
        if not 1 <= n <= 7 or bitpix <= 0 or any(int(d) < 1 for d in dims[1:n + 1]):
            return None  # an odd header: ITK's own checks decide
        voxels = int(np.prod([int(d) for d in dims[1:n + 1]], dtype=np.float64))
        return offset, voxels * int(bitpix) // 8
    return None


def _gzip_size(p: Path, expected: int) -> int:
    """Decompressed size of a gzip file: ``expected`` when its trailer says so (an intact single stream),
    else counted by decompressing it to its end (several members, or a cut stream: what it holds)."""
    with open(p, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        if size >= 18:
            raw.seek(size - 4)
            if struct.unpack("<I", raw.read(4))[0] == expected % (1 << 32):
                return expected
            raw.seek(0)
        total = 0
        decoder = zlib.decompressobj(31)
        while True:
            chunk = raw.read(1 << 20)
            if not chunk:
                break
            while chunk:
                total += len(decoder.decompress(chunk, 1 << 24))
                chunk = decoder.unconsumed_tail
                if decoder.eof:  # another gzip member may follow
                    chunk = chunk or decoder.unused_data
                    decoder = zlib.decompressobj(31)
    return total


def check_nifti_size(p: Path) -> None:
    """Refuse a NIfTI file holding fewer bytes than its header announces (ITK reads a cut file as zeros)."""
    try:
        gz = p.name.lower().endswith(".gz")
        with (gzip.open(p, "rb") if gz else open(p, "rb")) as fh:
            layout = _nifti_layout(fh.read(544))
        if layout is None:
            return
        offset, data_bytes = layout
        expected = offset + data_bytes
        have = _gzip_size(p, expected) if gz else p.stat().st_size
    except (OSError, EOFError, zlib.error):
        raise InputError(f"Could not read {p.name}: it is damaged or not a valid NIfTI image.") from None
    if have < expected:
        raise InputError(f"{p.name} is truncated: its header announces {expected} bytes of image but the file "
                         f"holds {have} ({100.0 * max(have - offset, 0) / max(data_bytes, 1):.0f} % of the voxels).")


def to_volume(image: sitk.Image, meta: Dict[str, Any], p: Path) -> Volume:
    """SimpleITK image -> Volume: 2D embedded with z = 1, alpha dropped, complex refused."""
    if "complex" in image.GetPixelIDTypeAsString():
        raise InputError(f"{p.name} has complex values; give its magnitude instead.")
    dim = image.GetDimension()
    ncomp = image.GetNumberOfComponentsPerPixel()
    check_components(ncomp, meta.get("format"), p)
    try:
        array = sitk.GetArrayFromImage(image)
    except MemoryError:
        raise InputError(f"There is not enough memory to read {p.name}; free memory or crop the image first.") from None
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
    if ncomp > 1:
        if ncomp in (2, 4):  # grey+alpha, RGBA: alpha is transparency, not signal
            array = array[..., : ncomp - 1]
            meta["alpha_dropped"] = True
        if array.shape[-1] == 1:
            array = array[..., 0]
        elif meta.get("format") == "bmp" and np.all(array == array[..., :1]):
            array = np.ascontiguousarray(array[..., 0])  # ITK reads grey-palette BMP as RGB
    meta["channels"] = "RGB" if array.ndim == 4 else "grey"
    return Volume(array=array, spacing=tuple(spacing), origin=tuple(origin),
                  direction=tuple(direction.ravel()), source_dtype=str(array.dtype), metadata=meta)
