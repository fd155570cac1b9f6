"""Where the shipped resources (model registry, bundled weights, noise classifier) are found.

In a source checkout and in the Slicer extension, ``Resources/`` sits beside the package; in a
pip-installed wheel it is installed inside the package as ``LowLightDenoiseLib/Resources``. The
environment variable ``LOWLIGHTDENOISE_RESOURCES`` overrides both.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_RESOURCES = "LOWLIGHTDENOISE_RESOURCES"
_PACKAGE = Path(__file__).resolve().parent


def resources_dir() -> Path:
    """The folder holding ``Models.json``, ``Models/`` and ``NoiseClassifier.json``."""
    env = os.environ.get(ENV_RESOURCES)
    if env:
        return Path(env)
    for candidate in (_PACKAGE.parent / "Resources", _PACKAGE / "Resources"):
        if (candidate / "Models.json").is_file():
            return candidate
    return _PACKAGE.parent / "Resources"
