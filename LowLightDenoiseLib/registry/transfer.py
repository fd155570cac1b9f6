"""Getting weights into the cache: :func:`download_model` (HTTP, with a stall timeout and an overall
deadline) and :func:`import_model` (a file obtained another way), both verified before they are installed."""
from __future__ import annotations

import hashlib
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

from ..errors import CancelledError, DownloadError, InputError, ModelNotAvailableError
from .. import files
from ..progress import CancelToken, ProgressCallback
from . import (_VERIFIED, CHUNK, ENV_CACHE, USER_AGENT, ModelEntry, PathLike, _missing_sentence, _offline_hint,
               cache_dir, find_weights, get_entry)


#: seconds without a byte before a download is given up (each socket read's timeout)
STALL_SECONDS = 30.0
#: the slowest transfer accepted: a download must finish within ``size / MIN_RATE`` seconds (bytes per second),
#: and never needs to within less than MIN_DEADLINE
MIN_RATE = 20_000.0
MIN_DEADLINE = 120.0



def _cache_folder(error: type) -> Path:
    """The weights cache, created if needed; ``error`` (the caller's kind of failure) if it cannot be."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as cause:
        raise error(f"Cannot create the model cache {folder} ({cause.strerror}); "
                    f"set {ENV_CACHE} to a writable folder.") from cause
    return folder

def download_model(name: str, progress: Optional[ProgressCallback] = None, *,
                   registry: Optional[PathLike] = None, timeout: float = STALL_SECONDS, retries: int = 2,
                   cancel: Optional[CancelToken] = None, force: bool = False,
                   deadline: Optional[float] = None) -> Path:
    """Fetch ``name``'s weights into the cache and return their path (no-op when already valid).

    The file is streamed into a temporary file in the cache folder, checked for size and sha256,
    then renamed into place. A transfer that ends early is retried ``retries`` times; a complete
    file with the wrong sha256 is an error. A corrupt file already in the cache is replaced.
    ``timeout``: seconds without a byte before giving up (a stalled server); ``deadline``: seconds for
    the whole download, retries included (default: the size at :data:`MIN_RATE`, at least
    :data:`MIN_DEADLINE`), so a server that trickles cannot hold the user forever. Either ends with a
    sentence saying how to import the file instead.
    """
    entry = get_entry(name, registry)
    found = None if force else find_weights(name, registry)
    if found is not None:
        return found[1]
    if not entry.url:
        raise ModelNotAvailableError(_missing_sentence(name, registry, "has no download address yet"))
    folder = _cache_folder(DownloadError)
    limit = float(deadline) if deadline is not None else max(MIN_DEADLINE, entry.size / MIN_RATE)
    ends = time.monotonic() + limit
    target = folder / entry.file
    for attempt in range(retries + 1):
        try:
            _fetch(entry, target, progress, timeout, cancel, ends, limit)
            return target
        except _Truncated as short:
            if attempt == retries or time.monotonic() >= ends:
                raise DownloadError(f"The download of model {name!r} kept stopping early ({short}); "
                                    f"{_offline_hint(name)}.") from None
            time.sleep(min(2.0, 0.2 * (attempt + 1)))
    raise AssertionError("unreachable")


class _Truncated(Exception):
    """A transfer that ended before the announced or registered size (worth retrying)."""


def _read_some(response: Any) -> bytes:
    """What has arrived (up to CHUNK bytes) without waiting for a full chunk, so a deadline is seen in time."""
    read1 = getattr(response, "read1", None)
    return read1(CHUNK) if read1 is not None else response.read(CHUNK)


def _fetch(entry: ModelEntry, target: Path, progress: Optional[ProgressCallback], timeout: float,
           cancel: Optional[CancelToken], ends: float, limit: float) -> None:
    request = urllib.request.Request(entry.url, headers={"User-Agent": USER_AGENT})
    fd, tmp = files.temp_file(target, ".part")
    hint = _offline_hint(entry.name)
    try:
        digest = hashlib.sha256()
        received = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
                announced = response.headers.get("Content-Length")
                total = int(announced) if announced and announced.isdigit() else entry.size
                while True:
                    if cancel is not None and cancel.cancelled:
                        raise CancelledError("The download was cancelled.")
                    if time.monotonic() > ends:
                        raise DownloadError(
                            f"The download of model {entry.name!r} is too slow: {received} of {entry.size} bytes "
                            f"arrived within {limit:g} s, the time allowed for this file; {hint}.")
                    chunk = _read_some(response)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if received > entry.size:
                        break
                    if progress is not None:
                        progress(min(1.0, received / max(total, 1)),
                                 f"{entry.file}: {received / 1e6:.1f} of {total / 1e6:.1f} MB")
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as error:
            raise DownloadError(f"Could not download model {entry.name!r}: the server answered "
                                f"HTTP {error.code} {error.reason} for {entry.url}; {hint}.") from None
        except urllib.error.URLError as error:
            if _is_short_read(error.reason):
                raise _Truncated(str(error.reason)) from None
            if isinstance(error.reason, TimeoutError) or "timed out" in str(error.reason):
                raise DownloadError(f"The server of model {entry.name!r} did not answer within {timeout:g} s; "
                                    f"{hint}.") from None
            raise DownloadError(f"Could not reach {entry.url} to download model {entry.name!r} "
                                f"({_reason(error.reason)}), so you may be offline; {hint}.") from None
        except (TimeoutError, socket.timeout):
            raise DownloadError(f"The download of model {entry.name!r} stalled: nothing arrived for {timeout:g} s "
                                f"after {received} of {entry.size} bytes; {hint}.") from None
        except (ConnectionError, OSError) as error:
            if isinstance(error, (ConnectionResetError, ConnectionAbortedError)) or _is_short_read(error):
                raise _Truncated(str(error)) from None
            raise DownloadError(f"The download of model {entry.name!r} failed ({_reason(error)}); {hint}.") from None
        except _http_incomplete() as error:
            raise _Truncated(f"received {received} of {entry.size} bytes") from error
        if received < entry.size:
            raise _Truncated(f"received {received} of {entry.size} bytes")
        if received > entry.size or digest.hexdigest() != entry.sha256:
            raise DownloadError(f"The file downloaded for model {entry.name!r} does not match the registry's "
                                f"sha256 (it is damaged or was replaced on the server); nothing was installed.")
        files.publish(tmp, target, replace=True)
        _VERIFIED[(str(target), target.stat().st_size, target.stat().st_mtime)] = entry.sha256
    finally:
        files.remove(tmp)


def _http_incomplete() -> type:
    import http.client

    return http.client.IncompleteRead


def _is_short_read(error: Any) -> bool:
    import http.client

    return isinstance(error, (http.client.IncompleteRead, http.client.RemoteDisconnected))


def _reason(error: Any) -> str:
    return str(getattr(error, "strerror", None) or error)


def _weights_source(file: Any) -> Path:
    """The file given to ``models import``, or one sentence: missing, a folder, a device, unreadable."""
    import stat

    if not isinstance(file, (str, os.PathLike)) or not str(file).strip():
        raise InputError(f"Give the weights file as a file name, not {file!r}.")
    source = Path(file).expanduser()
    try:
        mode = source.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"The file {source} does not exist.") from None
    except PermissionError:
        raise InputError(f"Cannot read {source}: permission denied.") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{source} is a folder; give the weights file itself.")
    if not stat.S_ISREG(mode):
        raise InputError(f"{source} is not a regular file (a device or a pipe); give the weights file itself.")
    return source


def import_model(name: str, file: PathLike, registry: Optional[PathLike] = None) -> Path:
    """Copy a weights file obtained offline into the cache after checking its size and sha256.

    The bytes are hashed as they are copied and what was copied is checked, so a source file that
    changes meanwhile can never install bytes that do not match the registry.
    """
    entry = get_entry(name, registry)
    source = _weights_source(file)
    mismatch = InputError(f"{source} is not the weights of model {entry.name!r} version {entry.spec.version}: "
                          f"its size or sha256 differs from the registry.")
    if source.stat().st_size != entry.size:
        raise mismatch
    folder = _cache_folder(InputError)
    target = folder / entry.file
    fd, tmp = files.temp_file(target, ".part")
    try:
        digest = hashlib.sha256()
        copied = 0
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    copied += len(chunk)
                    if copied > entry.size:
                        break
                out.flush()
                os.fsync(out.fileno())
        except PermissionError:
            raise InputError(f"Cannot read {source}: permission denied.") from None
        except OSError as error:
            raise InputError(f"Could not copy {source} into the model cache {folder}: "
                             f"{(error.strerror or str(error)).lower()}.") from None
        if copied != entry.size or digest.hexdigest() != entry.sha256:
            raise mismatch
        files.publish(tmp, target, replace=True)
        _VERIFIED[(str(target), target.stat().st_size, target.stat().st_mtime)] = entry.sha256
    finally:
        files.remove(tmp)
    return target
