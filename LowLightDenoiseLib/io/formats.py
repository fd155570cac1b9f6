"""File types, path checks, the files behind a path, and the memory a decoded image may take.

* :func:`file_format` and :func:`supported_extensions`: the format from the extension;
* :func:`check_path`: a path SimpleITK can be handed (text, valid UTF-8: ITK aborts the whole process
  on other names);
* :func:`files_read` / :func:`files_written`: every file a read depends on (a ``.mhd``/``.nhdr``
  header and its data files, the files of a DICOM folder) and every file a write produces, so that
  a command can promise never to replace a file it reads;
* :func:`available_memory` (from :mod:`..memory`): what this process may still allocate, to refuse an
  image whose decoded size does not fit before decoding it.
"""
from __future__ import annotations

import os

import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import InputError
from ..memory import available_memory  # noqa: F401 - re-exported for the readers

PathLike = Union[str, "os.PathLike[str]"]

# extension -> format name; longest extensions first so that ".nii.gz" wins over ".gz".
EXTENSIONS: Dict[str, str] = {
    ".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "metaimage",
    ".mhd": "metaimage", ".dcm": "dicom", ".dicom": "dicom", ".png": "png", ".tif": "tiff",
    ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp",
}
TITLES = {"nifti": "NIfTI", "nrrd": "NRRD", "metaimage": "MetaImage", "dicom": "DICOM", "png": "PNG",
          "tiff": "TIFF", "jpeg": "JPEG", "bmp": "BMP"}
#: formats whose files hold photographs: a second or fourth value per pixel is transparency (alpha)
ALPHA_FORMATS = ("png", "tiff", "bmp")
_HEADER_BYTES = 1 << 16


def supported_extensions(write: bool = False) -> Tuple[str, ...]:
    """File extensions :func:`read_volume` accepts (or, with ``write=True``, :func:`write_volume`)."""
    return tuple(e for e, f in EXTENSIONS.items() if not (write and f == "dicom"))


def file_format(path: PathLike) -> Optional[str]:
    """Format name (``nrrd``, ``nifti``, ``metaimage``, ``dicom``, ``png``...) from the extension, or None."""
    name = Path(path).name.lower()
    for ext, fmt in EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    return None


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (or folder), even through links or ``..``."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return os.path.normcase(os.path.realpath(pa)) == os.path.normcase(os.path.realpath(pb))


def printable(path: Any) -> str:
    """A path as text that can be printed (undecodable bytes shown as the replacement character)."""
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def check_path(path: Any, what: str = "The file") -> Path:
    """``path`` as a :class:`Path` that SimpleITK can open, or one sentence.

    Refuses what is not a file name (``None``, a number, an array) and names that are not valid
    UTF-8 (a byte such as ``\\xff`` from another system's encoding): ITK cannot represent them and
    aborts the process instead of raising.
    """
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)) or (isinstance(path, str) and not path.strip()):
        raise InputError(f"{what} must be given as a file name, not {type(path).__name__} {path!r}.")
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} name {printable(text)!r} is not valid UTF-8 text, which the image "
                         "libraries cannot open; rename it.") from None
    if "\x00" in text:
        raise InputError(f"{what} name {printable(text)!r} contains a NUL character.")
    return Path(text)


# ------------------------------------------------------------------------------- files behind a path

def _header_fields(path: Path, separator: str) -> Tuple[Dict[str, str], List[str]]:
    """``key -> value`` of a text header (MetaImage ``=``, NRRD ``:``), and the lines after the data-file field."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(_HEADER_BYTES).decode("latin-1")
    except OSError:
        return {}, []
    fields: Dict[str, str] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip() and separator == ":":
            break  # end of a NRRD header
        if separator in line:
            key, value = line.split(separator, 1)
            key = key.strip().lower().replace(" ", "")
            fields[key] = value.strip()
            if key in ("elementdatafile", "datafile"):
                return fields, [ln.strip() for ln in lines[i + 1:] if ln.strip()]
    return fields, []


def _data_files(spec: str, rest: List[str], folder: Path) -> List[Path]:
    """The data files a header's data-file field names: one file, ``LIST`` (names follow) or a pattern."""
    words = spec.split()
    if not words or words[0].upper() == "LOCAL":
        return []
    if words[0].upper() == "LIST":
        return [folder / name for name in rest]
    if len(words) >= 4 and "%" in words[0]:
        try:
            first, last, step = int(words[1]), int(words[2]), int(words[3])
            if step != 0 and abs(last - first) // abs(step) < 100_000:
                return [folder / (words[0] % i) for i in range(first, last + (1 if step > 0 else -1), step)]
        except (ValueError, TypeError):
            pass
    return [folder / spec]


def files_read(path: PathLike) -> List[Path]:
    """Every file that reading ``path`` uses: the file itself, a header's data files, a folder's files."""
    p = Path(path)
    if p.is_dir():
        found = []
        for dirpath, _, names in os.walk(p):
            found.extend(Path(dirpath) / n for n in names)
        return found
    name = p.name.lower()
    if name.endswith(".mhd"):
        fields, rest = _header_fields(p, "=")
        return [p] + _data_files(fields.get("elementdatafile", ""), rest, p.parent)
    if name.endswith(".nhdr"):
        fields, rest = _header_fields(p, ":")
        return [p] + _data_files(fields.get("datafile", ""), rest, p.parent)
    return [p]


def files_written(path: PathLike) -> List[Path]:
    """Every file that writing ``path`` produces (a ``.mhd``/``.nhdr`` header also writes a data file).

    Found by writing a one-voxel image under the same name into a private temporary folder, so it is
    exactly what ITK does (compressed, as :func:`write_volume` writes).
    """
    import numpy as np
    import SimpleITK as sitk

    p = Path(path)
    if not p.name.lower().endswith((".mhd", ".nhdr")):
        return [p]
    try:
        folder = tempfile.mkdtemp(prefix=".lowlightdenoise-names.")
    except OSError:  # no temporary folder: ITK's names for compressed output
        mhd = p.name.lower().endswith(".mhd")
        data = p.name[: -len(".mhd")] + ".zraw" if mhd else p.name[: -len(".nhdr")] + ".raw.gz"
        return [p.parent / data, p]
    try:
        writer = sitk.ImageFileWriter()
        writer.SetFileName(os.path.join(folder, p.name))
        writer.UseCompressionOn()
        writer.Execute(sitk.GetImageFromArray(np.zeros((1, 1, 1), np.uint8)))
        names = sorted(os.listdir(folder))
    except RuntimeError:
        names = [p.name]
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    header = [n for n in names if n.lower() == p.name.lower()]
    return [p.parent / n for n in names if n not in header] + [p]


# ------------------------------------------------------------------------------- memory


def size_text(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"



