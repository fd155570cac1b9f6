"""Averages of methods (``ensemble-2d``): the output is the members' mean, run through the engine like any method.

Real crops of Testing/Data with the project's low-light simulation; the shipped default-2d and oidn-2d.
"""
from __future__ import annotations

import numpy as np
import pytest

from LowLightDenoiseLib.degrade import LowLight, simulate_volume
from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.io import read_volume
from LowLightDenoiseLib.methods import get_method
from LowLightDenoiseLib.methods.ensemble import ENSEMBLES, MethodAverage
from LowLightDenoiseLib.methods.loading import list_methods
from LowLightDenoiseLib.metrics import psnr
from LowLightDenoiseLib.options import RunOptions
from LowLightDenoiseLib.pipeline import denoise_volume


@pytest.fixture(scope="module")
def ct_pair(ct_path):
    clean = read_volume(str(ct_path))
    return clean, simulate_volume(clean, LowLight(peak=30, read_noise=1), seed=5)


def test_the_ensemble_is_the_mean_of_its_members_through_the_engine(ct_pair):
    clean, noisy = ct_pair
    opts = RunOptions(mode="2d", device="cpu")
    outs = {name: denoise_volume(noisy, name, opts).volume.array.astype(np.float64)
            for name in ("default-2d", "oidn-2d", "ensemble-2d")}
    mean = (outs["default-2d"] + outs["oidn-2d"]) / 2
    # the engine's inverse normalisation is affine, so the mean commutes with it (float32 rounding aside)
    assert np.max(np.abs(outs["ensemble-2d"] - mean)) < 1e-2 * float(np.std(clean.array))
    ref = clean.array.astype(np.float64)
    rng = float(ref.max() - ref.min())
    scores = {k: psnr(v, ref, rng) for k, v in outs.items()}
    assert scores["ensemble-2d"] > max(scores["default-2d"], scores["oidn-2d"]), scores


def test_the_ensemble_is_listed_with_its_members_and_records_them_in_a_table_row(ct_pair):
    row = next(r for r in list_methods() if r["name"] == "ensemble-2d")
    assert row["members"] == list(ENSEMBLES["ensemble-2d"][1]) and row["installed"] is True
    method = get_method("Ensemble-2D")
    assert isinstance(method, MethodAverage) and method.columns()["members"] == "default-2d+oidn-2d"
    # the listing (no model loaded) says what the loaded average says (it listed min_size 3 where the members need 8)
    loaded = method.describe()
    for key in ("kind", "category", "spatial_dims", "preferred_dims", "min_size"):
        assert row[key] == loaded[key], key
    from LowLightDenoiseLib.evaluation import run_methods

    rows = run_methods(ct_pair[1], ["ensemble-2d"], RunOptions(mode="2d", device="cpu"), reference=ct_pair[0]).rows
    row = next(r for r in rows if r["method"] == "ensemble-2d")
    assert row["members"] == "default-2d+oidn-2d"


def test_an_average_needs_torch_in_slicer_and_cannot_be_adapted_as_one_model(ct_pair):
    from LowLightDenoiseLib import mrml
    from LowLightDenoiseLib.methods.adaptation import adapt

    assert mrml.needs_torch(["Ensemble-2D"]) and not mrml.needs_torch(["median"])
    with pytest.raises(InputError, match="'ensemble-2d' is an average of several models \\(default-2d, oidn-2d\\)"):
        adapt(ct_pair[1], "ensemble-2d", 5)


def test_an_average_of_methods_that_cannot_be_averaged_is_one_sentence():
    with pytest.raises(InputError, match="at least two methods"):
        MethodAverage("x", "x", [get_method("median")])
    with pytest.raises(InputError, match="all denoise or all enhance"):
        MethodAverage("x", "x", [get_method("median"), get_method("gamma")])
