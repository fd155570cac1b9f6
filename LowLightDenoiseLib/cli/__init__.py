"""The ``lowlightdenoise`` command line (also ``python -m LowLightDenoiseLib``).

Subcommands: ``denoise``, ``simulate``, ``estimate-noise``, ``evaluate``, ``compare``, ``methods``,
``models list|download|verify|import``, ``benchmark`` and ``batch``. Arguments are in :mod:`.parser`, the
subcommands in :mod:`.commands`; both only parse, call the library and print. Every user error ends
with one line ``lowlightdenoise: error: <sentence>`` on stderr and exit code 2, and nothing is
written. SIGINT ends with exit code 130 and SIGTERM with 143, with nothing published either.
Progress bars go to stderr, only on a terminal and not with ``--quiet``. What the C++ libraries
(ITK, GDCM, MetaIO, VTK) and Python's warnings would print on stderr is silenced, so that the
sentence is the only line; ``LOWLIGHTDENOISE_DEBUG=1`` lets it through.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from typing import Iterator, Optional, Sequence

from ..errors import LowLightDenoiseError
from .commands import COMMANDS, cmd_benchmark
from .console import Console, Parser, UsageError
from .outputs import Terminated, signals_handled
from .parser import PROG, build_parser

__all__ = ["main", "build_parser", "PROG"]
ENV_DEBUG = "LOWLIGHTDENOISE_DEBUG"


def _fail(message: str, code: int = 2) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


@contextlib.contextmanager
def _third_party_quiet() -> Iterator[None]:
    """Native stderr (file descriptor 2) to the null device, Python's ``sys.stderr`` kept on the terminal,
    and warnings off, for the duration; nothing changes with ``LOWLIGHTDENOISE_DEBUG`` set."""
    if os.environ.get(ENV_DEBUG):
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            uses_fd2 = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            uses_fd2 = False
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            yield
            return
        original = sys.stderr
        if uses_fd2:
            sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb", buffering=0), encoding=original.encoding,
                                          errors="backslashreplace", line_buffering=True)
        os.dup2(null, 2)
        os.close(null)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            if uses_fd2:
                replaced, sys.stderr = sys.stderr, original
                replaced.close()


def cmd_batch(argv: Sequence[str]) -> int:
    """Hand the arguments to :mod:`..batch` (imported only when this subcommand runs)."""
    from .. import batch

    parser = Parser(prog=f"{PROG} batch", description=batch.DESCRIPTION)
    batch.add_arguments(parser)
    return int(batch.run(parser.parse_args(list(argv))) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 user error, 130 interrupted, 143 terminated)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with signals_handled(), _third_party_quiet():
        try:
            if argv and argv[0] == "benchmark":
                return cmd_benchmark(argv[1:])
            if argv and argv[0] == "batch":
                return cmd_batch(argv[1:])
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help()
                return 2
            if args.command == "models" and args.models_command is None:
                raise UsageError("choose a models action: list, download, verify or import (see 'lowlightdenoise "
                                 "models --help').")
            return COMMANDS[args.command](args, Console(getattr(args, "quiet", False)))
        except LowLightDenoiseError as error:
            return _fail(str(error))
        except MemoryError:
            return _fail("There is not enough memory for this image and method; free memory, use --mode 2d or "
                         "crop the image.")
        except OSError as error:
            where = f": {error.filename}" if getattr(error, "filename", None) else ""
            return _fail(f"{error.strerror or error}{where}.")
        except KeyboardInterrupt:
            return _fail("interrupted.", 130)
        except Terminated:
            return _fail("terminated.", 143)
