"""The JSON sidecar beside every output: what produced it, so that a rerun skips what is already done.

``OUT_DIR/<name><ext>.json`` records the input's checksum (sha256 of every file the read uses),
the reference's, the job (:class:`~..jobs.spec.JobSpec`: method and run options), the method's
identity (a learned model's version and weights sha256), the output's format and pixel type, the
library version, the timings, the worker and the scan's row of the results table.

A scan is up to date (:func:`up_to_date`) when its sidecar's :func:`run_key` equals the one the
rerun would use, its output exists with the recorded size, and its input and reference still have
the recorded checksums. A checksum is only recomputed when a file's size or modification time
changed (the recorded ``stat`` signature), so checking a finished cohort reads no image.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .. import __version__
from ..files import sha256_of

#: version of the sidecar's layout; a sidecar of another version is never trusted
FORMAT = 1
SUFFIX = ".json"
_CHUNK = 1 << 20


def sidecar_path(output: Union[str, Path]) -> Path:
    """``OUT_DIR/ct.nrrd`` -> ``OUT_DIR/ct.nrrd.json``."""
    p = Path(output)
    return p.with_name(p.name + SUFFIX)


def _files(path: Union[str, Path]) -> List[Path]:
    """Every file reading ``path`` uses (a header's data file, a DICOM folder's files), sorted."""
    from ..io import files_read

    p = Path(path)
    return sorted((f for f in files_read(p) if f.is_file()), key=lambda f: str(f))


def _relative(f: Path, root: Path) -> str:
    try:
        return f.relative_to(root).as_posix()
    except ValueError:
        return f.name


def stat_signature(path: Union[str, Path]) -> str:
    """A short digest of the names, sizes and modification times of the files behind ``path``."""
    p = Path(path)
    root = p if p.is_dir() else p.parent
    digest = hashlib.sha256()
    for f in _files(p):
        st = f.stat()
        digest.update(f"{_relative(f, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def content_sha256(path: Union[str, Path]) -> str:
    """sha256 of a single file (what ``sha256sum`` prints); for several files, of their names and sha256s."""
    p = Path(path)
    files = _files(p)
    if len(files) == 1 and not p.is_dir():
        return sha256_of(files[0])
    root = p if p.is_dir() else p.parent
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{_relative(f, root)}\0{sha256_of(f)}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def fingerprint(path: Union[str, Path]) -> Dict[str, Any]:
    """Path, checksum, total size, number of files and ``stat`` signature of an input or reference."""
    p = Path(path)
    files = _files(p)
    return {"path": str(p), "sha256": content_sha256(p), "bytes": sum(f.stat().st_size for f in files),
            "files": len(files), "stat": stat_signature(p)}


def _same_content(path: Optional[str], recorded: Optional[Dict[str, Any]]) -> bool:
    if path is None or recorded is None:
        return path is None and recorded is None
    p = Path(path)
    if not p.exists():
        return False
    try:
        if recorded.get("path") == str(p) and recorded.get("stat") == stat_signature(p):
            return True
        return recorded.get("sha256") == content_sha256(p)
    except OSError:
        return False


def method_identity(method: Any) -> Dict[str, Any]:
    """What names a method's behaviour: a classical method's name and the library version, a learned
    model's registered name, version and weights sha256, a weights file's name, model and sha256 (adapted
    weights: ``lowlightdenoise adapt``); an unknown name or unusable weights file raises one sentence."""
    from .. import DEFAULT_MODEL, registry
    from ..errors import InputError
    from ..methods import Method
    from ..methods.adapted import weights_file_metadata
    from ..methods.auto import AUTO_NAME
    from ..methods.ensemble import ENSEMBLES
    from ..methods.loading import classical_method_names, method_names

    if isinstance(method, Method):
        cls = type(method)
        return {"name": method.name, "kind": method.kind, "class": f"{cls.__module__}.{cls.__qualname__}"}
    key = str(method).strip().lower()
    if key.endswith(".safetensors"):
        path = Path(str(method).strip())
        spec = json.loads(weights_file_metadata(path)["spec"])
        return {"name": path.name, "kind": "weights file", "model": spec.get("name"), "version": spec.get("version"),
                "sha256": sha256_of(path)}
    if key in classical_method_names():
        return {"name": key, "kind": "classical", "version": __version__}
    if key == AUTO_NAME:  # the library's routes and classifier, and the learned model it runs
        return {"name": key, "kind": "automatic", "version": __version__, "model": method_identity(DEFAULT_MODEL)}
    if key in ENSEMBLES:  # an average: its members' identities
        return {"name": key, "kind": "average", "version": __version__,
                "members": [method_identity(m) for m in ENSEMBLES[key][1]]}
    canonical = registry.canonical_name(key)
    if canonical is None:
        known = ", ".join(method_names())
        raise InputError(f"Unknown method {str(method).strip()!r}; choose one of: {known}.")
    entry = registry.get_entry(canonical)
    return {"name": canonical, "kind": "learned", "version": entry.spec.version, "sha256": entry.sha256}


def run_key(job: Dict[str, Any], method: Dict[str, Any], output_name: str, settings: Dict[str, Any]) -> Dict[str, Any]:
    """Everything that decides an output's voxels and row, as plain JSON values."""
    return json.loads(json.dumps({"library_version": __version__, "job": job, "method": method,
                                  "output": output_name, "settings": settings}, sort_keys=True))


def read_sidecar(path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The sidecar's content, or None when it is missing, unreadable or of another format."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def up_to_date(output: Union[str, Path], key: Dict[str, Any], input_path: str,
               reference: Optional[str]) -> Optional[Dict[str, Any]]:
    """The sidecar of ``output`` when the scan need not run again (see the module text), else None."""
    data = read_sidecar(sidecar_path(output))
    if data is None or data.get("key") != key:
        return None
    out = Path(output)
    recorded = data.get("output") or {}
    try:
        if not out.is_file() or out.stat().st_size != recorded.get("bytes"):
            return None
    except OSError:
        return None
    if not _same_content(input_path, data.get("input")) or not _same_content(reference, data.get("reference")):
        return None
    return data


def write_sidecar(output: Union[str, Path], content: Dict[str, Any]) -> Path:
    """Write the sidecar of ``output`` atomically (after the output itself)."""
    from ..tables import plain, write_text_atomic

    data = dict(content, format=FORMAT)
    return write_text_atomic(sidecar_path(output), json.dumps(plain(data), indent=1, sort_keys=True) + "\n")


def remove_sidecar(output: Union[str, Path]) -> None:
    """Remove the sidecar before an output is replaced: until the new one is written, nothing vouches for it."""
    try:
        os.unlink(sidecar_path(output))
    except FileNotFoundError:
        pass
