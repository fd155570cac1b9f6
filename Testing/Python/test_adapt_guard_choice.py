"""train/adapt_guard_choice.py: a trajectory recorded once and the guard replayed on it must make the decision that
adapt() itself makes with the same settings (on a real CT crop, a few steps)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LowLightDenoiseLib.degrade import LowLight, simulate_volume
from LowLightDenoiseLib.methods.adaptation import AdaptSettings, adapt
from LowLightDenoiseLib.methods.selfsupervised import BLIND_SPOT
from LowLightDenoiseLib.volume import Volume
from train.adapt_guard_choice import as_guard, expanded, record, render, replay

torch.set_num_threads(1)
SETTINGS = AdaptSettings(max_steps=6, eval_every=2, batch=4, eval_patches=8, patch=32, average=0.5)


@pytest.fixture(scope="module")
def recorded(ct_path):
    clean = Volume(sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path))).astype(np.float32))
    noisy = simulate_volume(clean, LowLight(peak=3, read_noise=0.5), seed=1)
    return noisy, dict(record(clean, noisy, SETTINGS), case="ct", kind="out of distribution")


def test_a_trajectory_records_every_blind_spot_guard_on_the_same_masks(recorded):
    _, run = recorded
    assert [r["step"] for r in run["rows"]] == [0, 2, 4, 6]
    for row in run["rows"]:
        assert set(row["guards"]) == set(BLIND_SPOT)
        assert row["guards"][run["guard"]]["loss"] == row["loss"]
        assert len(row["guards"]["n2v"]["sums"]) == len(run["weights"]) == 8
    n2v = as_guard(run, "n2v")
    assert n2v["guard"] == "n2v" and n2v["rows"][1]["loss"] == run["rows"][1]["guards"]["n2v"]["loss"]
    assert n2v["rows"][1]["loss"] != run["rows"][1]["loss"]  # another replacement, another loss
    assert [r["guard"] for r in expanded([run])] == list(BLIND_SPOT)


@pytest.mark.parametrize("guard", BLIND_SPOT)
def test_the_replayed_guard_decides_as_adapt_does(recorded, guard):
    """Early stop after 1 measurement without a new best, then keep or refuse: the replay and adapt() agree on
    the kept step and on whether anything was kept, for a rule that keeps and one that refuses."""
    noisy, run = recorded
    trajectory = as_guard(run, guard)
    for confidence in (0.0, 10.0):
        settings = dataclasses.replace(SETTINGS, guard=guard, patience=1, min_gain=0.0, confidence=confidence)
        done = adapt(noisy, "default-2d", None, settings=settings)
        again = replay(trajectory, confidence, 0.0, patience=1)
        assert again["kept"] == done.kept == (confidence == 0.0)  # this crop: a fall, but not of 10 errors
        assert again["step"] == done.record.best_step
        assert again["fall"] == pytest.approx(done.record.loss_before - done.record.loss_after, abs=1e-9)


def test_the_report_shows_each_guard_side_by_side(recorded):
    import argparse

    _, run = recorded
    args = argparse.Namespace(steps=6, every=2, threads=1, cases=None, eval_patches=8, average="0.5", loss="n2s")
    text = render({"cases": [], "runs": [run], "note": "test"}, args)
    assert "--average 0.5" in text
    assert "weight average 0.5, guard n2s, loss n2s" in text and "weight average 0.5, guard n2v, loss n2s" in text


def test_the_rule_by_noise_replays_each_case_with_the_rule_of_its_noise(recorded):
    """A case read as new takes the weight-average trajectory and half a standard error with no floor; one read as
    familiar takes the training weights' trajectory (none recorded here: the case is left out, not guessed)."""
    from train.adapt_guard_choice import by_noise_table

    _, run = recorded
    new = dict(run, average=0.99)
    rows = by_noise_table([new], {"ct": "about 3 photons"})
    expected = replay(new, 0.5, 0.0)
    assert rows == [["ct", "out of distribution", "about 3 photons", "0.99 / 0 / 0.5", "yes" if expected["kept"]
                     else "no", f"{expected['gain']:+.2f}", f"{expected['best_gain']:+.2f}"]]
    assert by_noise_table([new], {"ct": ""}) == []
    familiar = dict(run, average=0.0)
    strict = replay(familiar, 0.5, 0.01)
    assert by_noise_table([familiar], {"ct": ""})[0][3:6] == ["0 / 0.01 / 0.5", "yes" if strict["kept"] else "no",
                                                              f"{strict['gain']:+.2f}"]
