"""What the Slicer module must pip-install, and what such an install must never replace.

Nothing here imports a package to check it, so the module can ask before its first import.
"""
from __future__ import annotations

import importlib.util
from typing import Dict, List, Optional

#: import name -> pip requirement of what the module needs besides PyTorch (which the PyTorch
#: extension installs) and what Slicer ships (numpy, scipy, SimpleITK).
REQUIREMENTS: Dict[str, str] = {
    "monai": "monai>=1.3",
    "safetensors": "safetensors>=0.4",
    "skimage": "scikit-image>=0.21",
    "pywt": "PyWavelets>=1.4",
    "tqdm": "tqdm>=4.60",
}
#: Distributions Slicer itself ships that a dependency install must never replace.
PROTECTED_DISTRIBUTIONS = ("numpy", "SimpleITK", "requests", "torch")


def missing_requirements(requirements: Optional[Dict[str, str]] = None) -> List[str]:
    """Pip requirements whose module cannot be imported (nothing is imported to check)."""
    reqs = REQUIREMENTS if requirements is None else requirements
    return [req for module, req in reqs.items() if importlib.util.find_spec(module) is None]


def protected_pins() -> List[str]:
    """``name==version`` of the installed protected distributions, to pass to pip beside the
    requirements so that pip keeps Slicer's own numpy, SimpleITK, requests and torch."""
    from importlib import metadata

    pins = []
    for dist in PROTECTED_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return pins
