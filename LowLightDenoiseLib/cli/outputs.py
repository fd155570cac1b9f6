"""A command's outputs: every one checked before computing, none replacing a file the command reads, all
published together at the end, or none.

:class:`Outputs` collects a command's inputs (every file they consist of: a ``.mhd`` header and its
``.zraw``, each file of a DICOM folder) and its outputs (a volume with its data file, a metrics or
table file). :meth:`Outputs.check` refuses, before any computation: an output that exists (without
``--overwrite``), that is not a regular file, that is a file the command reads, that two outputs
share, or whose folder is missing or read-only. After the computation every output is written to a
temporary beside its target (a full disk fails here, with nothing published) and
:meth:`Outputs.commit` publishes them together with SIGINT/SIGTERM held back (a signal that came
before stops the commit; one during it is answered after, by a finished command).
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

from ..errors import InputError
from ..files import Staging, check_folder_writable

HELD_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt for SIGINT (exit code 143)."""


def _signal_handler(signum: int, frame: Any) -> None:
    if signum == getattr(signal, "SIGTERM", None):
        raise Terminated()
    raise KeyboardInterrupt()


@contextlib.contextmanager
def signals_handled() -> Iterator[None]:
    """SIGINT -> KeyboardInterrupt and SIGTERM -> :class:`Terminated` for the duration (main thread only),
    whatever the handlers were (a shell starts background jobs with SIGINT ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = []
    for number in HELD_SIGNALS:
        try:
            previous.append((number, signal.signal(number, _signal_handler)))
        except (OSError, ValueError):
            pass
    try:
        yield
    finally:
        for number, handler in previous:
            signal.signal(number, handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back around a commit: one already pending stops it before it starts; one that
    arrives during it is dropped (the command finished: its outputs are all there)."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = mask(signal.SIG_BLOCK, set(HELD_SIGNALS))
    if signal.sigpending() & set(HELD_SIGNALS):
        mask(signal.SIG_SETMASK, old)  # delivered now: its handler raises before anything is published
    try:
        yield
    except BaseException:
        mask(signal.SIG_SETMASK, old)
        raise
    wait = getattr(signal, "sigtimedwait", None)  # (not on macOS: there a late signal still ends the command)
    while wait is not None and wait(list(HELD_SIGNALS), 0) is not None:
        pass
    mask(signal.SIG_SETMASK, old)


class Outputs:
    """The files one command reads and writes; see the module docstring."""

    def __init__(self, overwrite: bool) -> None:
        self.overwrite = overwrite
        self.reads: List[Tuple[Path, str, Path]] = []  # (file, "the input x.mhd", x.mhd)
        self.writes: List[Tuple[Path, str]] = []  # (file, the output it belongs to)
        self.folders: List[Path] = []
        self.staging = Staging()
        self._made: List[Path] = []

    def reading(self, path: Optional[str], role: str = "input") -> None:
        """Record every file that reading ``path`` (the command's ``role``: input, reference...) uses."""
        from ..io import files_read

        if path:
            self.reads.extend((f, f"the {role} {path}", Path(path)) for f in files_read(path))

    def volume(self, path: str, dtype: Any = None, *, creates_folder: bool = False) -> None:
        """A volume output: its name, type and folder checked now (see :func:`..io.check_output`);
        ``creates_folder``: its folder is one this command creates when it publishes."""
        from ..io import check_output, files_written

        check_output(path, overwrite=self.overwrite, dtype=dtype, folder_must_exist=not creates_folder)
        for f in files_written(path):
            self.writes.append((f, path))
        self.folders.append(Path(path).parent)

    def table(self, path: Optional[str], what: str = "The table file") -> None:
        """A table output (``-`` is stdout, not a file)."""
        if not path or path == "-":
            return
        self.new_file(path, what)
        self.writes.append((Path(path), path))
        self.folders.append(Path(path).parent)

    def new_file(self, path: str, what: str) -> None:
        p = Path(path)
        if os.path.lexists(p):
            if p.is_dir():
                raise InputError(f"{what} {path} is a folder.")
            if not self.overwrite:
                raise InputError(f"{what} {path} already exists; use --overwrite to replace it.")
            if not stat.S_ISREG(p.stat().st_mode):
                raise InputError(f"{what} {path} exists and is not a regular file; it is never replaced.")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise InputError(f"The folder {parent} of {path} does not exist.")

    def check(self) -> None:
        """Every output apart from every input and from the other outputs, every folder writable."""
        from ..io import same_file

        writes = sorted(self.writes, key=lambda w: not same_file(w[0], w[1]))  # each output's own name first
        for i, (out, owner) in enumerate(writes):
            for source, role, path in self.reads:
                if same_file(out, source):
                    head = f"The output {out}" if same_file(out, owner) else \
                        f"The output {owner} writes its data to {out}, and that"
                    what = role if same_file(source, path) else f"part of {role}"
                    raise InputError(f"{head} is {what}, which this command reads; choose another output name.")
            for other, other_owner in writes[:i]:
                if same_file(out, other):
                    raise InputError(f"Two outputs of this command are the same file {out} ({other_owner} and "
                                     f"{owner}); give each its own name.")
        for folder in dict.fromkeys(self.folders):
            while not folder.exists() and folder != folder.parent:  # a folder to create: its parent must take it
                folder = folder.parent
            check_folder_writable(folder)

    def make_folder(self, folder: str) -> None:
        """Create an output folder at publication time (removed again if publishing fails)."""
        p = Path(folder)
        missing = []
        while not p.exists():
            missing.append(p)
            p = p.parent
        os.makedirs(folder, exist_ok=True)
        self._made.extend(reversed(missing))

    def commit(self) -> None:
        """Publish every staged output together (signals held), or none."""
        try:
            with signals_held():
                self.staging.commit()
        except BaseException:
            self.discard()
            raise
        self._made = []

    def discard(self) -> None:
        self.staging.discard()
        for folder in reversed(self._made):
            try:
                os.rmdir(folder)  # only when empty: never what someone else put there meanwhile
            except OSError:
                pass
        self._made = []

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.discard()
