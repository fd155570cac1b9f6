"""Exceptions raised by LowLightDenoiseLib.

Every error a user can cause (bad file, bad array, missing model, cancelled run) is a
:class:`LowLightDenoiseError` whose message is one clear sentence; callers (the command line,
the Slicer module) show ``str(error)`` and nothing else.
"""


class LowLightDenoiseError(Exception):
    """Base class of every error meant to be shown to a user as one sentence."""


class InputError(LowLightDenoiseError, ValueError):
    """The input image or a parameter cannot be processed (format, shape, values)."""


class ModelNotAvailableError(LowLightDenoiseError):
    """A learned model is neither installed, nor importable offline, nor downloadable."""


class DownloadError(LowLightDenoiseError):
    """A weights download failed or did not match its checksum."""


class CancelledError(LowLightDenoiseError):
    """The user cancelled a running operation through a :class:`CancelToken`."""
