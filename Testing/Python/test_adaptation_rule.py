"""The adaptation guard's keep rule follows the scan's noise: familiar noise asks for a clear fall of the training
weights' loss, noise new to the model gets the weight average and half a standard error.

Real crops of Testing/Data (CT and MR, 12 slices of 96 x 96), degraded like the adaptation report's cases; a few
steps of the shipped default-2d (what is checked holds after any number of steps).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LowLightDenoiseLib.degrade import LowLight, Speckle, simulate_volume
from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.methods.adaptation import AdaptSettings, _sources, adapt
from LowLightDenoiseLib.methods.adaptation_guard import FAMILIAR_RULE, NOVEL_RULE, novelty
from LowLightDenoiseLib.noise import NoiseProfile
from LowLightDenoiseLib.volume import Volume

torch.set_num_threads(1)
FEW = AdaptSettings(max_steps=2, eval_every=1, batch=4, eval_patches=8, patch=32)


def _clean(path) -> Volume:
    return Volume(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32))


@pytest.mark.parametrize("scan", ["ct", "mr"])
@pytest.mark.parametrize("degradation, words", [
    (LowLight(peak=300, read_noise=1), ""),
    (LowLight(peak=30, read_noise=1), ""),
    (LowLight(peak=2, read_noise=0), "photons at the top of the image"),
    (LowLight(peak=100, read_noise=15), "read noise of about"),
    (Speckle(sigma=0.8), "reads speckle noise"),
])
def test_the_noise_of_a_real_scan_is_familiar_at_the_training_levels_and_new_outside(scan, degradation, words,
                                                                                     ct_path, mr_path):
    clean = _clean(ct_path if scan == "ct" else mr_path)
    found = _sources(simulate_volume(clean, degradation, seed=1), 2, 0, 0.2, np.random.default_rng(0))[0].novelty
    assert (words in found) if words else found == ""


def test_a_small_error_of_b_at_many_photons_is_not_read_noise():
    """At 200 photons a Gaussian part of 3 % of the window would be 6 photons of read noise: not measurable enough
    to call the noise new; at 15 % it is."""
    assert novelty(NoiseProfile(0.02, 1 / 200, 0.03 ** 2), "poisson") == ""
    assert "read noise of about 30 photons" in novelty(NoiseProfile(0.1, 1 / 200, 0.15 ** 2), "poisson")
    assert novelty(NoiseProfile(0.1, 0.0, 0.01), "gaussian") == ""  # Gaussian only: trained on
    assert "impulse" in novelty(NoiseProfile(0.1, 0.01, 0.0), "salt_pepper")


@pytest.mark.parametrize("degradation, rule", [(LowLight(peak=30, read_noise=1), FAMILIAR_RULE),
                                               (Speckle(sigma=0.8), NOVEL_RULE)])
def test_adapt_takes_the_keep_rule_of_the_scans_noise_and_records_why(ct_path, degradation, rule):
    noisy = simulate_volume(_clean(ct_path), degradation, seed=1)
    done = adapt(noisy, "default-2d", None, settings=FEW)
    for key in ("average", "min_gain", "confidence"):
        assert done.record.settings[key] == getattr(rule, key)
    new = rule is NOVEL_RULE
    assert bool(done.record.novelty) == new
    assert done.columns()["adapt_noise"] == ("new" if new else "familiar")
    assert ("new to the model (the noise classifier reads speckle" if new
            else "like the model's training noise") in done.record.sentence()
    explicit = adapt(noisy, "default-2d", None, settings=dataclasses.replace(FEW, average=0.5, min_gain=0.002))
    assert (explicit.record.settings["average"], explicit.record.settings["min_gain"]) == (0.5, 0.002)
    assert explicit.record.settings["confidence"] == rule.confidence  # the unset field still follows the noise


@pytest.mark.parametrize("key, value", [("average", 1.0), ("average", -0.1), ("min_gain", 1.0), ("confidence", 11),
                                        ("average", True)])
def test_a_bad_keep_rule_value_gets_one_sentence(key, value):
    with pytest.raises(InputError, match=r"^[A-Z][^\n]*\.$"):
        dataclasses.replace(FEW, **{key: value}).validated()


def test_an_image_too_small_to_classify_gets_the_size_sentence_of_adapt(ct_path):
    """The classifier needs 10 pixels a side: a 6 x 6 crop gets adapt's own sentence (what size it needs), not the
    classifier's."""
    noisy = simulate_volume(_clean(ct_path), LowLight(peak=30, read_noise=1), seed=1)
    with pytest.raises(InputError, match="too small to adapt 'default-2d' to it: slices of at least 16 x 16"):
        adapt(Volume(noisy.array[:, :6, :6].copy()), "default-2d", None, settings=FEW)
