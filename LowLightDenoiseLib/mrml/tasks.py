"""A job in a background thread, polled by a GUI timer.

Inside Slicer a Python thread runs only while the main thread executes Python (the GIL is kept in
the Qt event loop), so this is slow there; a later change runs jobs in a child process instead.
"""
from __future__ import annotations

import threading
import traceback
from typing import Any, Callable, Optional, Tuple

from ..errors import CancelledError, LowLightDenoiseError
from ..progress import CancelToken, ProgressCallback


class BackgroundTask:
    """Run ``fn(progress, cancel)`` in a daemon thread; a GUI timer polls its state.

    The latest progress (fraction, message) is kept under a lock; the result or the exception is
    kept for the main thread, which alone touches the scene. A cancelled run ends with
    ``cancelled`` true and ``error`` set to the :class:`CancelledError`.
    """

    def __init__(self, fn: Callable[[ProgressCallback, CancelToken], Any]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self.cancel_token = CancelToken()
        self.fraction = 0.0
        self.message = ""
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.error_details = ""
        self._thread = threading.Thread(target=self._run, name="LowLightDenoise", daemon=True)

    def start(self) -> "BackgroundTask":
        self._thread.start()
        return self

    def _progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self.fraction = max(self.fraction, float(fraction))
            self.message = message

    def _run(self) -> None:
        try:
            self.result = self._fn(self._progress, self.cancel_token)
        except BaseException as exc:  # handed to the main thread, which shows it
            self.error = exc
            self.error_details = traceback.format_exc()

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def status(self) -> Tuple[float, str]:
        with self._lock:
            return self.fraction, self.message

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the thread; True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, CancelledError)

    def user_message(self) -> str:
        """One sentence for the user: the library's own message, or a generic one with the type."""
        if self.error is None:
            return ""
        if isinstance(self.error, LowLightDenoiseError):
            return str(self.error)
        if isinstance(self.error, MemoryError):
            return "Not enough memory for this volume; try 2D mode, the CPU, or a cropped volume."
        return f"Unexpected error ({type(self.error).__name__}: {self.error}); see the Python console."
