"""Progress reporting and cooperative cancellation shared by every long operation.

A long operation takes an optional ``progress`` callable ``progress(fraction, message)`` with
``fraction`` in [0, 1], and an optional :class:`CancelToken`; it calls :meth:`RunControl.step`
between units of work, which reports progress and raises :class:`CancelledError` once the token
is cancelled. Both are plain Python objects so that a Qt thread, a CLI progress bar or a batch
script can drive them.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

from .errors import CancelledError

ProgressCallback = Callable[[float, str], None]


class CancelToken:
    """Thread-safe flag a caller sets to ask a running operation to stop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError("The operation was cancelled.")


class RunControl:
    """Progress and cancellation of one operation, optionally a sub-range of a larger one.

    ``sub(start, stop)`` returns a control whose fractions 0..1 map to ``start..stop`` of this
    one, so nested steps (channels, slices, tiles) report one monotone overall fraction.
    """

    def __init__(
        self,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
        start: float = 0.0,
        stop: float = 1.0,
    ) -> None:
        self.progress = progress
        self.cancel = cancel if cancel is not None else CancelToken()
        self.start = float(start)
        self.stop = float(stop)

    def step(self, fraction: float, message: str = "") -> None:
        """Report ``fraction`` (0..1 of this control's range); raise if cancelled."""
        self.cancel.raise_if_cancelled()
        if self.progress is not None:
            f = min(max(float(fraction), 0.0), 1.0)
            self.progress(self.start + f * (self.stop - self.start), message)

    def check(self) -> None:
        """Raise :class:`CancelledError` if cancellation was requested."""
        self.cancel.raise_if_cancelled()

    def sub(self, start: float, stop: float) -> "RunControl":
        span = self.stop - self.start
        return RunControl(self.progress, self.cancel, self.start + start * span, self.start + stop * span)
