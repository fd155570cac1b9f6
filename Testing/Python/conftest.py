"""Shared fixtures: the real image crops of Testing/Data and small synthetic phantoms."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "Testing" / "Data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def ct_path() -> Path:
    return DATA / "ct_chest_crop.nrrd"


@pytest.fixture(scope="session")
def mr_path() -> Path:
    return DATA / "mr_brain_crop.nrrd"


@pytest.fixture(scope="session")
def xray_path() -> Path:
    return DATA / "xray_chest_crop.png"


@pytest.fixture(scope="session")
def fundus_path() -> Path:
    return DATA / "fundus_crop.png"


@pytest.fixture()
def phantom3d() -> np.ndarray:
    """Piecewise-constant 3D phantom in [0, 1]: a sphere and a box on a dark background."""
    z, y, x = np.mgrid[0:16, 0:48, 0:48].astype(np.float32)
    a = np.full((16, 48, 48), 0.1, dtype=np.float32)
    a[(z - 8) ** 2 / 36 + (y - 20) ** 2 / 100 + (x - 20) ** 2 / 100 < 1] = 0.8
    a[4:12, 30:42, 28:44] = 0.5
    return a


@pytest.fixture()
def phantom2d(phantom3d: np.ndarray) -> np.ndarray:
    return phantom3d[8].copy()
