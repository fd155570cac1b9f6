"""What the command line shows besides results: one-line errors, messages and progress bars on stderr."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import LowLightDenoiseError


class UsageError(LowLightDenoiseError):
    """A command-line syntax error (argparse), reported like every other user error."""


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line through :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help').")


class Console:
    """Messages to stderr and a tqdm progress bar, both silent with ``--quiet``."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bars = not quiet and sys.stderr.isatty()

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)

    def progress(self, title: str) -> "ProgressBar":
        return ProgressBar(title, enabled=self.bars)


class ProgressBar:
    """A ``progress(fraction, message)`` callable drawing a tqdm bar on stderr (0-100 %)."""

    def __init__(self, title: str, enabled: bool) -> None:
        self.title = title
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=self.title, file=sys.stderr, leave=False, unit="%",
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
        return self

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.bar is not None:
            self.bar.n = round(100.0 * min(max(fraction, 0.0), 1.0), 1)
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.refresh()

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
