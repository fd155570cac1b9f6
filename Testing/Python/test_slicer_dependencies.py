"""What the Slicer module installs, and how a failed install is reported (no Slicer needed)."""
from __future__ import annotations

import subprocess
from importlib import metadata

import pytest

from LowLightDenoiseLib import mrml
from LowLightDenoiseLib.errors import LowLightDenoiseError
from LowLightDenoiseLib.mrml import dependencies


def test_classical_methods_need_neither_torch_nor_monai():
    assert not mrml.needs_torch(["tv", "median", "clahe"])
    assert mrml.needs_torch(["tv", "default-2d"]) and mrml.needs_torch(["volume-3d"])  # an alias too
    assert not set(mrml.REQUIREMENTS.values()) & {r for r in mrml.LEARNED_REQUIREMENTS.values()}
    assert not any(r.startswith(("monai", "torch")) for r in mrml.REQUIREMENTS.values())
    assert any(r.startswith("monai") for r in mrml.LEARNED_REQUIREMENTS.values())


def test_missing_requirements_adds_the_learned_ones_only_when_asked(monkeypatch):
    monkeypatch.setattr(dependencies.importlib.util, "find_spec", lambda name: None)
    assert mrml.missing_requirements() == list(mrml.REQUIREMENTS.values())
    assert mrml.missing_requirements(learned=True) == list(mrml.REQUIREMENTS.values()) + list(
        mrml.LEARNED_REQUIREMENTS.values())


@pytest.mark.parametrize("version,ok", [("2.13.0+cpu", True), ("1.13.1", True), ("1.12.0", False), ("3.0.0", False)])
def test_a_torch_outside_the_tested_range_is_reported(monkeypatch, version, ok):
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: version if name == "torch" else real(name))
    problem = mrml.torch_problem()
    assert (problem is None) == ok
    if not ok:
        assert version in problem and mrml.TORCH_REQUIREMENT in problem


def test_a_failed_pip_install_shows_the_offline_route(tmp_path):
    def failing(args):
        raise subprocess.CalledProcessError(1, ["PythonSlicer", "-m", "pip", "install", args])

    with pytest.raises(LowLightDenoiseError) as caught:
        mrml.install_requirements(["scikit-image>=0.21", "PyWavelets>=1.4"], ask=False, confirm=lambda q: True,
                                  pip_install=failing, temp_dir=str(tmp_path))
    message = str(caught.value)
    assert "exit code 1" in message
    assert "PythonSlicer -m pip install --no-index --find-links wheels scikit-image PyWavelets" in message


def test_an_install_keeps_slicers_own_packages_and_a_refusal_installs_nothing(tmp_path):
    calls = []
    assert mrml.install_requirements(["scikit-image>=0.21"], ask=True, confirm=lambda q: True,
                                     pip_install=calls.append, temp_dir=str(tmp_path))
    pins = calls[0].split()[1:]
    assert calls[0].startswith("scikit-image>=0.21 ") and {"numpy", "scipy", "SimpleITK"} <= {p.split("==")[0] for p in pins}
    calls.clear()
    assert not mrml.install_requirements(["scikit-image>=0.21"], ask=True, confirm=lambda q: False,
                                         pip_install=calls.append, temp_dir=str(tmp_path))
    assert calls == []
    assert mrml.install_requirements([], ask=True, confirm=lambda q: False, pip_install=calls.append,
                                     temp_dir=str(tmp_path)) and calls == []
