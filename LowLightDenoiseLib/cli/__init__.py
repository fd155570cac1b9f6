"""The ``lowlightdenoise`` command line (also ``python -m LowLightDenoiseLib``).

Subcommands: ``denoise``, ``simulate``, ``estimate-noise``, ``evaluate``, ``compare``, ``methods``,
``models list|download|verify|import`` and ``benchmark``. Arguments are in :mod:`.parser`, the
subcommands in :mod:`.commands`; both only parse, call the library and print. Every user error ends
with one line ``lowlightdenoise: error: <sentence>`` on stderr and exit code 2, and nothing is
written. Progress bars go to stderr, only on a terminal and not with ``--quiet``.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from ..errors import LowLightDenoiseError
from .commands import COMMANDS, cmd_benchmark
from .console import Console, UsageError
from .parser import PROG, build_parser

__all__ = ["main", "build_parser", "PROG"]


def _fail(message: str, code: int = 2) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "benchmark":
            return cmd_benchmark(argv[1:])
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
    except OSError as error:
        where = f": {error.filename}" if getattr(error, "filename", None) else ""
        return _fail(f"{error.strerror or error}{where}.")
    except KeyboardInterrupt:
        return _fail("interrupted.", 130)
