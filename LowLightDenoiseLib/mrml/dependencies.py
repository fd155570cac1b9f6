"""What the Slicer module must pip-install, and what such an install must never replace.

Classical methods need no PyTorch or MONAI: only a job with a learned method asks for them.
Nothing here imports a package to check it, so the module can ask before its first import.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
from typing import Any, Callable, Dict, Iterable, List, Optional

from ..errors import LowLightDenoiseError

#: import name -> pip requirement of what every method needs besides what Slicer ships (numpy, scipy,
#: SimpleITK)
REQUIREMENTS: Dict[str, str] = {
    "skimage": "scikit-image>=0.21",
    "pywt": "PyWavelets>=1.4",
}
#: what a learned method needs on top (PyTorch itself comes from the PyTorch extension)
LEARNED_REQUIREMENTS: Dict[str, str] = {
    "monai": "monai>=1.3",
    "safetensors": "safetensors>=0.4",
    "tqdm": "tqdm>=4.60",
}
#: the name of ``methods.auto`` (not imported here: see the module docstring); it runs a learned model for most noise
AUTO_METHOD = "auto"
#: the torch versions the library works with; the PyTorch extension installs torch 2.x on Slicer 5.8
#: (Python 3.9), 5.10 and 5.12 (Python 3.12)
TORCH_REQUIREMENT = ">=1.13,<3"
#: Distributions Slicer itself ships (or the PyTorch extension installs) that an install must never replace.
PROTECTED_DISTRIBUTIONS = ("numpy", "scipy", "SimpleITK", "requests", "torch")


def needs_torch(methods: Iterable[str]) -> bool:
    """True when one of ``methods`` is a learned model, an average of learned models, or ``auto`` (which runs one
    for most noise types); reads the registry, imports no torch."""
    from .. import registry

    keys = [str(m).strip().lower() for m in methods]
    return any(registry.canonical_name(k) is not None or k == AUTO_METHOD or k in registry.ENSEMBLES for k in keys)


def missing_requirements(requirements: Optional[Dict[str, str]] = None, *, learned: bool = False) -> List[str]:
    """Pip requirements whose module cannot be imported (nothing is imported to check); with
    ``learned`` also what learned methods need."""
    reqs = dict(REQUIREMENTS if requirements is None else requirements)
    if learned and requirements is None:
        reqs.update(LEARNED_REQUIREMENTS)
    return [req for module, req in reqs.items() if importlib.util.find_spec(module) is None]


def torch_problem() -> Optional[str]:
    """A sentence when the installed torch is outside :data:`TORCH_REQUIREMENT`, else None (no import)."""
    from importlib import metadata

    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None
    try:
        major, minor = (int(part) for part in version.split("+")[0].split(".")[:2])
    except ValueError:
        return None
    if (major, minor) >= (1, 13) and major < 3:
        return None
    return (f"The installed PyTorch {version} is outside the versions this module is tested with "
            f"(torch{TORCH_REQUIREMENT}); reinstall it from the PyTorch Utils module if a learned method fails.")


def protected_pins() -> List[str]:
    """``name==version`` of the installed protected distributions, to pass to pip beside the
    requirements so that pip keeps Slicer's own numpy, scipy, SimpleITK, requests and torch."""
    from importlib import metadata

    pins = []
    for dist in PROTECTED_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def install_failed_message(missing: List[str], error: BaseException) -> str:
    """One sentence for a failed pip install (``subprocess.CalledProcessError`` and the like), with the
    offline route of docs/slicer.md: install from a folder of wheels."""
    detail = f"exit code {error.returncode}" if hasattr(error, "returncode") else str(error) or type(error).__name__
    names = " ".join(r.split(">")[0].split("=")[0].split("<")[0] for r in missing)
    return (f"Installing {', '.join(missing)} failed ({detail}). Without internet, download the wheels on another "
            f"computer (pip download {names} -d wheels, same system and Python as Slicer), copy the folder and run: "
            f"PythonSlicer -m pip install --no-index --find-links wheels {names}")


def _pip_ensure() -> Optional[Callable[..., Any]]:
    """Slicer 5.12's ``pip_ensure`` (its own dialog, progress and restart check), or None before 5.12."""
    for module_name in ("slicer.packaging", "slicer.pydeps"):
        try:
            found = getattr(importlib.import_module(module_name), "pip_ensure", None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


def install_requirements(missing: List[str], *, ask: bool, confirm: Callable[[str], bool],
                         pip_install: Callable[[str], Any], temp_dir: str) -> bool:
    """Pip-install ``missing`` inside Slicer without replacing its own packages; False when the user declines.

    Slicer 5.12 and later: ``pip_ensure`` with the protected versions as a constraints file. Before:
    ``confirm(question)`` (e.g. ``slicer.util.confirmOkCancelDisplay``), then ``pip_install`` (e.g.
    ``slicer.util.pip_install``) of the requirements and the pins. A failed install
    (``subprocess.CalledProcessError`` from pip, or an error of Slicer's installer) raises
    :class:`LowLightDenoiseError` with the offline route (:func:`install_failed_message`).
    """
    if not missing:
        return True
    pins = protected_pins()
    pip_ensure = _pip_ensure()
    try:
        if pip_ensure is not None:
            from packaging.requirements import Requirement

            constraints = os.path.join(temp_dir, "LowLightDenoise-constraints.txt")
            with open(constraints, "w") as f:
                f.write("\n".join(pins) + "\n")
            pip_ensure([Requirement(r) for r in missing], constraints=constraints, prompt_install=ask,
                       requester="LowLightDenoise", skip_in_testing=False)
        else:
            if ask and not confirm(
                    f"Low-Light Denoise needs these Python packages: {', '.join(missing)}.\nInstall them now? This "
                    "needs internet and takes a few minutes; Slicer's own numpy, scipy, SimpleITK, requests and "
                    "PyTorch are kept as they are."):
                return False
            pip_install(" ".join(missing + pins))
    except (subprocess.CalledProcessError, RuntimeError, OSError) as error:
        if any(word in str(error).lower() for word in ("abort", "declin", "cancel")):
            return False
        raise LowLightDenoiseError(install_failed_message(missing, error)) from error
    importlib.invalidate_caches()
    return True
