"""The cohort: which scans to denoise, how, and where each output goes.

A manifest is a CSV file with a header. One row per scan:

* ``input`` (required): an image file or a DICOM series folder; a relative path is relative to the
  manifest's folder;
* ``reference`` (or the column ``--reference-column`` names): a clean image on the same voxel grid,
  optional per row; a reference adds PSNR/SSIM/MSE to the scan's row;
* ``name``: the output's name without extension (default: the input's file name without its
  extension, or a DICOM folder's name);
* per-row options, each overriding the command line's for that scan when the cell is not empty:
  ``method``, ``mode``, ``axis``, ``strength``, ``flips``, ``seed``;
* any other column (a subject or study id...) is copied into the scan's row of the results table.

A folder instead of a manifest makes one (:func:`folder_inputs`): every image file in it or below
(hidden names skipped), and every sub-folder holding DICOM files as one series.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..errors import InputError
from ..options import RunOptions

#: the columns a manifest may set per row besides the input and the reference
OPTION_COLUMNS = ("method", "mode", "axis", "strength", "flips", "seed")
NAME_COLUMN = "name"
INPUT_COLUMN = "input"
DEFAULT_REFERENCE_COLUMN = "reference"
#: DICOM inputs (a folder, a .dcm file) are written in this format unless ``--format`` says otherwise
DICOM_OUTPUT = ".nrrd"


@dataclasses.dataclass(frozen=True)
class Scan:
    """One scan of the cohort: where it is, how it runs, what its output is called."""

    name: str  #: the output's name without extension
    input: str  #: absolute path of a file or a DICOM folder
    method: Any  #: a method name (or a :class:`~..methods.Method` given through the library)
    options: RunOptions  #: checked, device not resolved
    reference: Optional[str] = None
    line: int = 0  #: the manifest line (0: not from a manifest)
    columns: Dict[str, str] = dataclasses.field(default_factory=dict)  #: other manifest columns, as given


def _is_dicom_file(path: Path) -> bool:
    from ..io import file_format
    from ..io.reading import looks_like_dicom

    fmt = file_format(path)
    if fmt is not None:
        return fmt == "dicom"
    return looks_like_dicom(path)


def _is_image_file(path: Path) -> bool:
    from ..io import file_format

    return file_format(path) is not None or _is_dicom_file(path)


def folder_inputs(folder: Union[str, Path], exclude: Sequence[Union[str, Path]] = ()) -> List[Path]:
    """The scans of a folder, sorted: image files (any depth) and DICOM series folders (below the top).

    A folder below ``folder`` that directly holds DICOM files is one scan (its series) and is not
    searched further; DICOM files directly in ``folder`` are one scan each (e.g. radiographs). Names
    starting with ``.`` and the folders of ``exclude`` (the output folder) are skipped.
    """
    root = Path(folder)
    skip = {os.path.realpath(p) for p in exclude}
    found: List[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.realpath(here / d) not in skip)
        files = [here / f for f in sorted(filenames) if not f.startswith(".")]
        if here != root and any(_is_dicom_file(f) for f in files):
            found.append(here)
            dirnames[:] = []
            continue
        found.extend(f for f in files if _is_image_file(f))
    return sorted(found, key=lambda p: str(p.relative_to(root)))


def output_stem(path: Union[str, Path]) -> str:
    """The input's name without its image extension (``ct.nii.gz`` -> ``ct``); a folder's name as it is."""
    from ..io import supported_extensions

    p = Path(path)
    name = p.name
    if p.is_dir():
        return name
    lower = name.lower()
    for ext in sorted(supported_extensions(), key=len, reverse=True):
        if lower.endswith(ext.lower()) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def output_extension(input_path: Union[str, Path], fmt: Optional[str] = None) -> str:
    """The output's extension: ``fmt`` when given (checked), else the input's (NRRD for DICOM input)."""
    from ..io import file_format, supported_extensions

    writable = supported_extensions(write=True)
    if fmt:
        ext = fmt.strip().lower()
        ext = ext if ext.startswith(".") else "." + ext
        if ext not in writable:
            raise InputError(f"Cannot write the format {fmt!r}; use one of {', '.join(writable)}.")
        return ext
    p = Path(input_path)
    if p.is_dir() or file_format(p) in (None, "dicom"):
        return DICOM_OUTPUT
    lower = p.name.lower()
    return next(e for e in sorted(writable, key=len, reverse=True) if lower.endswith(e))


def check_name(name: str, where: str) -> str:
    name = name.strip()
    if not name or name.startswith(".") or any(c in name for c in "/\\\0") or name in (".", ".."):
        raise InputError(f"{where}: the output name {name!r} must be a plain file name (no folder, not hidden).")
    return name


def _resolve(path: str, base: Path) -> str:
    p = Path(os.path.expanduser(path.strip()))
    return str(p if p.is_absolute() else (base / p))


def _method_cell(cell: str, base: Path) -> str:
    """A row's method: a name, or a weights file (``*.safetensors``) relative to the manifest's folder."""
    cell = cell.strip()
    return _resolve(cell, base) if cell.lower().endswith(".safetensors") else cell


def _row_options(cells: Dict[str, str], defaults: RunOptions, where: str) -> RunOptions:
    """The command line's options with this row's non-empty option cells, checked (one sentence)."""
    fields: Dict[str, Any] = {}
    for key in ("mode", "axis", "strength", "flips", "seed"):
        text = (cells.get(key) or "").strip()
        if not text:
            continue
        if key == "mode":
            fields[key] = text
            continue
        try:
            fields[key] = float(text) if key == "strength" else int(text)
        except ValueError:
            raise InputError(f"{where}: the {key} {text!r} is not a number.") from None
    try:
        return dataclasses.replace(defaults, **fields).validated(resolve=False)
    except InputError as error:
        raise InputError(f"{where}: {error}") from None


def read_manifest(path: Union[str, Path], *, method: Any, options: RunOptions,
                  reference_column: Optional[str] = None) -> List[Scan]:
    """The scans of a manifest CSV (see the module text); every row checked before anything runs.

    ``reference_column`` names the reference column (default ``reference``, used when present); a
    named column that the manifest lacks is an error.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [(reader.line_num, {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in r.items()})
                    for r in reader]
    except UnicodeDecodeError:
        raise InputError(f"The manifest {path} is not a UTF-8 text (CSV) file.") from None
    except csv.Error as error:
        raise InputError(f"The manifest {path} is not a valid CSV file ({error}).") from None
    except OSError as error:
        raise InputError(f"Cannot read the manifest {path}: {error.strerror or error}.") from None
    if INPUT_COLUMN not in header:
        raise InputError(f"The manifest {path} has no '{INPUT_COLUMN}' column (its header is "
                         f"{', '.join(header) or 'empty'}); the first line must name the columns.")
    if reference_column is not None and reference_column not in header:
        raise InputError(f"The manifest {path} has no reference column '{reference_column}'.")
    ref_col = reference_column or DEFAULT_REFERENCE_COLUMN
    known = {INPUT_COLUMN, ref_col, NAME_COLUMN, *OPTION_COLUMNS}
    base = path.resolve().parent
    scans = []
    for line, cells in rows:
        if not any((v or "").strip() for v in cells.values()):
            continue
        where = f"Manifest line {line}"
        source = (cells.get(INPUT_COLUMN) or "").strip()
        if not source:
            raise InputError(f"{where}: the input cell is empty.")
        source = _resolve(source, base)
        ref = (cells.get(ref_col) or "").strip()
        name = (cells.get(NAME_COLUMN) or "").strip() or output_stem(source)
        scans.append(Scan(name=check_name(name, where), input=source,
                          method=_method_cell(cells.get("method") or "", base) or method,
                          options=_row_options(cells, options, where), reference=_resolve(ref, base) if ref else None,
                          line=line, columns={k: v for k, v in cells.items() if k and k not in known}))
    if not scans:
        raise InputError(f"The manifest {path} lists no scans.")
    return scans


def folder_scans(folder: Union[str, Path], *, method: Any, options: RunOptions,
                 reference_dir: Optional[Union[str, Path]] = None,
                 exclude: Sequence[Union[str, Path]] = ()) -> List[Scan]:
    """The scans of :func:`folder_inputs`; with ``reference_dir``, each one's reference is the path of
    the same relative name there."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise InputError(f"The input folder {folder} does not exist.")
    inputs = folder_inputs(root, exclude)
    if not inputs:
        from ..io import supported_extensions

        raise InputError(f"The folder {folder} holds no image files ({', '.join(supported_extensions())}) "
                         "and no DICOM series.")
    options = options.validated(resolve=False)
    refs = Path(reference_dir).resolve() if reference_dir is not None else None
    return [Scan(name=output_stem(p), input=str(p), method=method, options=options,
                 reference=str(refs / p.relative_to(root)) if refs is not None else None) for p in inputs]


def write_manifest(path: Union[str, Path], scans: Sequence[Scan]) -> Path:
    """The scans as a manifest CSV (what a folder became), written atomically."""
    from ..tables import table_text, write_text_atomic

    rows = [dict({INPUT_COLUMN: s.input}, **({DEFAULT_REFERENCE_COLUMN: s.reference} if s.reference else {}),
                 name=s.name) for s in scans]
    return write_text_atomic(path, table_text(rows, "csv"))


def check_unique_outputs(scans: Sequence[Scan], extensions: Sequence[str]) -> None:
    """Two scans must not write the same output (compared without case, as some file systems do)."""
    seen: Dict[str, Scan] = {}
    for scan, ext in zip(scans, extensions):
        key = (scan.name + ext).casefold()
        if key in seen:
            first = seen[key]
            what = (f"manifest lines {first.line} and {scan.line}" if scan.line else f"{first.input} and {scan.input}")
            raise InputError(f"The scans of {what} would both be written as {scan.name}{ext}; give one of them "
                             "another name (the manifest's 'name' column).")
        seen[key] = scan
