"""Output files that are never half-written, never replace what they should not, and never linger.

Every file the library writes (volumes, tables, downloaded weights) is first written under a
temporary name of our own beside its target, ``.<target name>.<host>.<pid>.<random><suffix>``, then
*published* by a rename:

* with ``replace=True`` by :func:`os.replace` (an existing file is swapped atomically);
* with ``replace=False`` without ever replacing: a hard link to the target name, which the system
  refuses when the name exists (then the temporary is removed), so of two processes writing the same
  new output exactly one wins and the other gets "already exists". Where hard links are not
  available (some network or FAT drives) an exclusive create of the name reserves it instead.

A :class:`Staging` holds several outputs of one operation and publishes them together
(:meth:`Staging.commit`): if one cannot be published, those already published are taken back (a
replaced file is restored from a hard-linked backup), so an operation leaves all its outputs or none.

Temporaries left by a run that was killed (``SIGKILL``, power loss) are removed by the next write
into the same folder (:func:`sweep`): those of a process of this machine that no longer runs, and
those of other machines older than :data:`STALE_SECONDS`.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

from .errors import InputError

PathLike = Union[str, "os.PathLike[str]"]
#: suffixes of our temporaries: files and folders being written, downloads in progress
TEMP_SUFFIXES = (".tmp", ".part")
#: temporaries of another machine (a shared drive) are swept once older than this
STALE_SECONDS = 24 * 3600
_HOST = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:24] or "host"
_TEMP_NAME = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+(?P<suffix>\.tmp|\.part)$")


def umask() -> int:
    """The process's file-creation mask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _prefix(target: Path) -> str:
    return f".{target.name}.{_HOST}.{os.getpid()}."


def temp_file(target: PathLike, suffix: str = ".tmp") -> Tuple[int, Path]:
    """An open descriptor and the path of a new temporary file beside ``target`` (mode from the umask)."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    sweep(folder)
    fd, name = tempfile.mkstemp(prefix=_prefix(target), suffix=suffix, dir=str(folder))
    os.chmod(name, 0o666 & ~umask())  # mkstemp creates 0600; an output gets what the umask gives
    return fd, Path(name)


def temp_dir(target: PathLike) -> Path:
    """A new private temporary folder beside ``target`` (for writers that produce several files)."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    sweep(folder)
    return Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".tmp", dir=str(folder)))


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of our temporaries (any host, any process)."""
    return _TEMP_NAME.match(name) is not None


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows: os.kill(pid, 0) would end the process; age only
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or cannot tell: keep it)
    return True


def sweep(folder: PathLike) -> List[Path]:
    """Remove the stale temporaries of our naming in ``folder``; returns what was removed.

    Stale: written by a process of this machine that no longer runs, or more than :data:`STALE_SECONDS`
    ago (another machine's, on a shared drive). Anything else (a run in progress, files of other programs) is
    left alone.
    """
    removed: List[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        match = _TEMP_NAME.match(name)
        if match is None:
            continue
        path = Path(folder) / name
        try:
            old = now - path.lstat().st_mtime > STALE_SECONDS
        except OSError:
            continue
        if not old and not (match["host"] == _HOST and not _alive(int(match["pid"]))):
            continue
        remove(path)
        removed.append(path)
    return removed


def remove(path: PathLike) -> None:
    """Remove a temporary file or folder, ignoring what is already gone."""
    p = Path(path)
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass


def exists_sentence(target: Path) -> str:
    return f"The output {target} already exists; choose another name or allow overwriting."


def publish(tmp: PathLike, target: PathLike, *, replace: bool) -> None:
    """Move the finished temporary ``tmp`` to ``target``; with ``replace=False`` never over an existing file.

    Raises :class:`InputError` ("already exists") when ``target`` exists and ``replace`` is False,
    also when another process created it a moment ago; ``tmp`` is then removed.
    """
    tmp, target = Path(tmp), Path(target)
    if replace:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        remove(tmp)
        raise InputError(exists_sentence(target)) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV,
                               errno.ENOSYS, errno.EACCES):
            raise
        _publish_exclusive(tmp, target)  # no hard links here: reserve the name, then move over it
        return
    os.unlink(tmp)


def _publish_exclusive(tmp: Path, target: Path) -> None:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        remove(tmp)
        raise InputError(exists_sentence(target)) from None
    os.close(fd)
    try:
        os.replace(tmp, target)
    except BaseException:
        remove(target)
        raise


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is over (main thread, where ``pthread_sigmask`` exists)."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)  # a signal that came meanwhile is delivered now


class Staging:
    """The outputs of one operation, written to temporaries and published together (all or none).

    ``add(tmp, target, replace)`` registers a finished temporary; :meth:`commit` publishes them in the
    order given (a header after its data file); :meth:`discard` (also on leaving a ``with`` block
    without a commit) removes every temporary. A commit that fails half-way takes back what it
    published: new files are removed, replaced ones restored from a hard-linked backup.
    """

    def __init__(self) -> None:
        self._items: List[Tuple[Path, Path, bool]] = []
        self._temps: List[Path] = []
        self.committed = False

    def temp_file(self, target: PathLike, suffix: str = ".tmp") -> Tuple[int, Path]:
        with _signals_deferred():  # a Ctrl-C between creating and registering would leave the file behind
            fd, path = temp_file(target, suffix)
            self._temps.append(path)
        return fd, path

    def temp_dir(self, target: PathLike) -> Path:
        with _signals_deferred():
            path = temp_dir(target)
            self._temps.append(path)
        return path

    def add(self, tmp: PathLike, target: PathLike, replace: bool) -> None:
        self._items.append((Path(tmp), Path(target), bool(replace)))

    @property
    def targets(self) -> List[Path]:
        return [target for _, target, _ in self._items]

    def commit(self) -> List[Path]:
        """Publish every output; on any failure take the published ones back and raise."""
        done: List[Tuple[Path, Optional[Path]]] = []
        try:
            for tmp, target, replace in self._items:
                backup = _backup(target) if replace else None
                if backup is not None:
                    self._temps.append(backup)
                publish(tmp, target, replace=replace)
                done.append((target, backup))
        except BaseException:
            for target, backup in reversed(done):
                try:
                    if backup is not None:
                        os.replace(backup, target)
                    else:
                        os.unlink(target)
                except OSError:
                    pass
            self.discard()
            raise
        self.committed = True
        self.discard()
        return [target for target, _ in done]

    def discard(self) -> None:
        for path in self._temps:
            remove(path)
        self._temps = []
        self._items = []

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _backup(target: Path) -> Optional[Path]:
    """A hard link to an existing ``target`` under a temporary name (to restore it), or None."""
    if not target.is_file():
        return None
    name = f"{_prefix(target)}backup{secrets.token_hex(4)}.tmp"
    backup = target.parent / name
    try:
        os.link(target, backup)
    except OSError:
        return None
    return backup


def check_folder_writable(folder: PathLike, what: str = "output") -> None:
    """Refuse (one sentence) a folder where no file can be created: missing, read-only, not a folder.

    Tried for real (a temporary file created and removed), so it holds for read-only drives, access
    lists and network shares alike.
    """
    p = Path(folder) if str(folder) else Path(".")
    if not p.exists():
        raise InputError(f"The {what} folder {p} does not exist.")
    if not p.is_dir():
        raise InputError(f"The {what} folder {p} is not a folder.")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{_HOST}.{os.getpid()}.", suffix=".tmp", dir=str(p))
    except OSError as error:
        reason = "it is read-only" if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else \
            (error.strerror or str(error)).lower()
        raise InputError(f"Cannot write into the {what} folder {p}: {reason}.") from None
    os.close(fd)
    os.unlink(name)


__all__ = ["Staging", "publish", "sweep", "temp_file", "temp_dir", "is_temp_name", "check_folder_writable",
           "umask", "remove", "TEMP_SUFFIXES", "STALE_SECONDS"]


def sha256_of(path: Union[str, "os.PathLike[str]"]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

