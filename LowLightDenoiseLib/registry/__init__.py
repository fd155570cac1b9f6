"""The model registry, a catalogue: which trained models exist, where their weights are, how to get them.

It builds no methods (that is :func:`~.methods.get_method`); it imports neither torch nor the methods.

``Resources/Models.json`` (or the file named by ``LOWLIGHTDENOISE_REGISTRY``, or a ``registry=``
argument) lists each model: name, version, 2D/3D, modalities, architecture and its arguments, input
configuration, category, weights file name, release URL, sha256, size, licence, how it was trained,
its measured metrics and its model card.

Weights are looked up, in order, in

1. the folder named by ``LOWLIGHTDENOISE_MODELS_DIR`` (offline installs, shared network drives),
2. ``Resources/Models/`` next to the package (bundled files),
3. the per-user cache: ``LOWLIGHTDENOISE_CACHE``, else ``%LOCALAPPDATA%\\lowlightdenoise\\Cache``
   (Windows), ``~/Library/Caches/lowlightdenoise`` (macOS), ``$XDG_CACHE_HOME/lowlightdenoise`` or
   ``~/.cache/lowlightdenoise`` (Linux).

A file counts only if its size and sha256 match the registry. :func:`download_model` streams the
release asset into a temporary file in the cache (urllib, so ``https_proxy`` and friends apply),
checks size and sha256 and only then renames it into place, so a failed or partial download never
leaves a file that looks installed. Offline, :func:`import_model` copies a file obtained some other
way into the cache after the same checks. Weights are read with safetensors (or
``torch.load(weights_only=True)``); no code is ever unpickled.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import InputError, ModelNotAvailableError
from ..files import sha256_of
from ..models.spec import ModelSpec
from ..progress import ProgressCallback
from ..resources import resources_dir

PathLike = Union[str, Path]
DEFAULT_REGISTRY = resources_dir() / "Models.json"
BUNDLED_DIR = resources_dir() / "Models"
SCHEMA_VERSION = 1
ENV_REGISTRY = "LOWLIGHTDENOISE_REGISTRY"
ENV_MODELS_DIR = "LOWLIGHTDENOISE_MODELS_DIR"
ENV_CACHE = "LOWLIGHTDENOISE_CACHE"
CHUNK = 1 << 20
USER_AGENT = "lowlightdenoise-model-download"

#: averages of registered models (:mod:`~.methods.ensemble`): name -> (title, member model names), equal weights
ENSEMBLES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "ensemble-2d": ("Mean of default-2d and oidn-2d (two networks trained apart; slower, more accurate)",
                    ("default-2d", "oidn-2d")),
}

_REQUIRED = ("name", "version", "spatial_dims", "architecture", "category", "file", "sha256", "size")


#: fields of a registry entry that describe the model itself (the rest say where its weights are and what
#: is known about it); they build its :class:`~.models.spec.ModelSpec`
SPEC_FIELDS = ("name", "architecture", "spatial_dims", "network", "input", "category", "title", "version",
               "min_size")


@dataclasses.dataclass
class ModelEntry:
    """One model of the registry, as written in ``Models.json``: its spec and the facts about its weights."""

    spec: ModelSpec
    file: str
    sha256: str
    size: int
    modalities: List[str] = dataclasses.field(default_factory=list)
    url: str = ""
    licence: str = ""
    training: Dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: Dict[str, Any] = dataclasses.field(default_factory=dict)
    model_card: str = ""
    #: former names that still find this model (old scenes, scripts and tables)
    aliases: List[str] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclasses.dataclass
class ModelStatus:
    """Where a model's weights are and whether they check out (``models verify``)."""

    name: str
    installed: bool
    path: Optional[Path]
    source: str  # "models-dir" | "bundled" | "cache" | "" (not installed)
    message: str


def registry_path(registry: Optional[PathLike] = None) -> Path:
    """The registry file in use: the argument, else ``LOWLIGHTDENOISE_REGISTRY``, else the bundled one."""
    if registry is not None:
        return Path(registry)
    env = os.environ.get(ENV_REGISTRY)
    return Path(env) if env else DEFAULT_REGISTRY


_CACHE: Dict[Path, Tuple[float, Dict[str, ModelEntry]]] = {}


def _parse_entry(raw: Any, where: Path) -> ModelEntry:
    if not isinstance(raw, dict):
        raise InputError(f"The model registry {where} has a model entry that is not an object.")
    name = raw.get("name", "?")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise InputError(f"Model {name!r} in {where} lacks {', '.join(missing)}.")
    facts = {f.name for f in dataclasses.fields(ModelEntry)} - {"spec"}
    unknown = sorted(set(raw) - facts - set(SPEC_FIELDS))
    if unknown:
        raise InputError(f"Model {name!r} in {where} has unknown field(s) {', '.join(unknown)}.")
    sha = str(raw["sha256"]).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise InputError(f"Model {name!r} in {where} has an invalid sha256 (64 hex digits expected).")
    if not isinstance(raw["size"], int) or raw["size"] <= 0:
        raise InputError(f"Model {name!r} in {where} has an invalid size (a positive number of bytes).")
    file = raw["file"]
    if not isinstance(file, str) or not file.strip() or file in (".", "..") or Path(file).name != file \
            or "\\" in file or "\x00" in file or file.startswith("."):
        raise InputError(f"Model {name!r} in {where}: 'file' must be a plain file name (not empty, not a path, "
                         f"not hidden), not {file!r}.")
    try:
        spec = ModelSpec(**{k: raw[k] for k in SPEC_FIELDS if k in raw})
    except (TypeError, ValueError) as error:
        raise InputError(f"The model registry {where} is invalid: {error}") from error
    return ModelEntry(spec=spec, **{k: v for k, v in dict(raw, sha256=sha).items() if k in facts})


def load_registry(registry: Optional[PathLike] = None) -> Dict[str, ModelEntry]:
    """All entries of the registry by name (re-read when the file changes)."""
    path = registry_path(registry)
    try:
        mtime = path.stat().st_mtime
    except OSError as error:
        raise InputError(f"The model registry {path} does not exist.") from error
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"The model registry {path} is not valid JSON ({error}).") from error
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise InputError(f"The model registry {path} must be an object with a 'models' list.")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"The model registry {path} has schema_version {data.get('schema_version')!r}; "
                         f"this version of LowLightDenoise reads {SCHEMA_VERSION}.")
    entries: Dict[str, ModelEntry] = {}
    for raw in data["models"]:
        entry = _parse_entry(raw, path)
        if entry.name in entries:
            raise InputError(f"Model {entry.name!r} appears twice in the registry {path}.")
        entries[entry.name] = entry
    aliases = _aliases(entries.values())
    clash = sorted(set(aliases) & set(entries))
    if clash:
        raise InputError(f"The model registry {path} uses {clash[0]!r} as both a name and an alias.")
    _CACHE[path] = (mtime, entries)
    return entries


def _aliases(entries: Any) -> Dict[str, str]:
    """Former name -> current name."""
    return {alias: entry.name for entry in entries for alias in entry.aliases}


def canonical_name(name: str, registry: Optional[PathLike] = None) -> Optional[str]:
    """The registered name that ``name`` means (case-insensitive; former names included), or None."""
    entries = load_registry(registry)
    key = str(name).strip().lower()
    names = {n.lower(): n for n in entries}
    names.update({a.lower(): n for a, n in _aliases(entries.values()).items()})
    return names.get(key)


def registered_names(registry: Optional[PathLike] = None) -> List[str]:
    return sorted(load_registry(registry))


def is_registered(name: str, registry: Optional[PathLike] = None) -> bool:
    return canonical_name(name, registry) is not None


def get_entry(name: str, registry: Optional[PathLike] = None) -> ModelEntry:
    """The registry entry of ``name`` (or a former name), or one sentence naming the models that exist."""
    entries = load_registry(registry)
    canonical = canonical_name(name, registry)
    if canonical is None:
        known = ", ".join(sorted(entries)) or "none"
        raise ModelNotAvailableError(f"No model called {name!r} is registered (registered models: {known}).")
    return entries[canonical]


def cache_dir() -> Path:
    """The per-user weights cache (``LOWLIGHTDENOISE_CACHE`` or the platform's cache folder)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "lowlightdenoise" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "lowlightdenoise"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lowlightdenoise"


def search_dirs() -> List[Tuple[str, Path]]:
    """Folders searched for weights, in order, with the name of each source."""
    dirs = []
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        dirs.append(("models-dir", Path(env).expanduser()))
    dirs.append(("bundled", BUNDLED_DIR))
    dirs.append(("cache", cache_dir()))
    return dirs


_VERIFIED: Dict[Tuple[str, int, float], str] = {}


def _matches(path: Path, entry: ModelEntry) -> bool:
    """Size and sha256 of ``path`` match the entry (hashes remembered per path, size and mtime)."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != entry.size:
        return False
    key = (str(path), st.st_size, st.st_mtime)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_of(path)
    return _VERIFIED[key] == entry.sha256


def find_weights(name: str, registry: Optional[PathLike] = None) -> Optional[Tuple[str, Path]]:
    """``(source, path)`` of the first valid weights file of ``name``, or None (see :func:`bad_copies`)."""
    entry = get_entry(name, registry)
    for source, folder in search_dirs():
        path = folder / entry.file
        if path.is_file() and _matches(path, entry):
            return source, path
    return None


def bad_copies(name: str, registry: Optional[PathLike] = None) -> List[Path]:
    """Files named like ``name``'s weights in the searched folders whose size or sha256 do not match."""
    entry = get_entry(name, registry)
    return [folder / entry.file for _, folder in search_dirs()
            if (folder / entry.file).is_file() and not _matches(folder / entry.file, entry)]


def _missing_sentence(name: str, registry: Optional[PathLike], why: str) -> str:
    """Why ``name`` cannot be used (``why``: "is not installed", "has no download address yet"), naming a
    copy that is there but does not match, and how to install it offline."""
    bad = bad_copies(name, registry)
    if bad:
        return (f"Model {name!r}: the file {bad[0]} does not match the registry's size and sha256 (it is damaged "
                f"or another version) and the model {why.replace('is not installed', 'has no other copy')}; "
                f"{_offline_hint(name)}.")
    return f"Model {name!r} {why}; {_offline_hint(name)}."


def installed(name: str, registry: Optional[PathLike] = None) -> bool:
    """True when a verified weights file of ``name`` is available offline."""
    return find_weights(name, registry) is not None


def verify_model(name: str, registry: Optional[PathLike] = None) -> ModelStatus:
    """Check every copy of ``name``'s weights; report the one that would be used."""
    entry = get_entry(name, registry)
    bad = []
    for source, folder in search_dirs():
        path = folder / entry.file
        if not path.is_file():
            continue
        if _matches(path, entry):
            return ModelStatus(name, True, path, source, f"{name}: {path} is valid (sha256 {entry.sha256[:12]}...).")
        bad.append(str(path))
    if bad:
        return ModelStatus(name, False, None, "",
                           f"{name}: {', '.join(bad)} does not match the registry's size and sha256; "
                           f"run `lowlightdenoise models download {name}` to fetch it again.")
    return ModelStatus(name, False, None, "", f"{name}: not installed; {_offline_hint(name)}.")


def _offline_hint(name: str) -> str:
    """The clause every 'model missing' sentence ends with: how to install without internet."""
    return (f"to install it without internet, get the file another way and run "
            f"`lowlightdenoise models import {name} FILE`, or put it in the folder named by {ENV_MODELS_DIR}")


def describe_models(registry: Optional[PathLike] = None) -> List[Dict[str, Any]]:
    """One row per registered model, in the shape of ``Method.describe()`` plus registry facts."""
    rows = []
    for name, entry in sorted(load_registry(registry).items()):
        spec = entry.spec
        rows.append({
            "name": name, "title": spec.title or f"{spec.architecture} ({spec.spatial_dims}D)",
            "kind": "learned", "category": spec.category, "spatial_dims": [spec.spatial_dims],
            "preferred_dims": spec.spatial_dims, "min_size": spec.min_size,
            "version": spec.version, "architecture": spec.architecture, "aliases": list(entry.aliases),
            "modalities": list(entry.modalities), "size": entry.size, "licence": entry.licence,
            "url": entry.url, "installed": installed(name, registry), "metrics": dict(entry.metrics),
            "training": dict(entry.training), "model_card": entry.model_card,
        })
    return rows


def weights_path(name: str, progress: Optional[ProgressCallback] = None, *, registry: Optional[PathLike] = None,
                 download: bool = True) -> Path:
    """A verified weights file of ``name``: installed, else downloaded when ``download`` allows."""
    found = find_weights(name, registry)
    if found is not None:
        return found[1]
    if not download:
        raise ModelNotAvailableError(_missing_sentence(name, registry, "is not installed"))
    return download_model(name, progress, registry=registry)


from .transfer import MIN_DEADLINE, MIN_RATE, STALL_SECONDS, download_model, import_model  # noqa: E402,F401

