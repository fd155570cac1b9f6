"""Noise estimation and noise-type classification on real crops degraded by known amounts."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from LowLightDenoiseLib.degrade import Gaussian, LowLight, Rician, SaltPepper, Speckle, simulate_volume
from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.io import read_volume
from LowLightDenoiseLib.noise import (
    FEATURE_NAMES,
    MODEL_LABELS,
    NOISE_LABELS,
    NoiseProfile,
    classify_noise,
    estimate_noise,
    estimate_poisson_gaussian,
    estimate_sigma,
    local_statistics,
    noise_features,
    noise_report,
)
from LowLightDenoiseLib.normalize import Normalizer


@pytest.fixture(scope="module")
def crops(ct_path, mr_path):
    """The real CT and MR crops mapped to [0, 1] by their range (the simulator's convention)."""
    out = {}
    for name, path in (("ct", ct_path), ("mr", mr_path)):
        a = read_volume(path).array
        out[name] = Normalizer.fit(a, "range").forward(a).astype(np.float64)
    return out


@pytest.mark.parametrize("which", ["ct", "mr"])
@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
def test_estimate_sigma_recovers_added_gaussian_noise_on_real_crops(crops, which: str, sigma: float) -> None:
    """Within 6 % of sqrt(sigma^2 + intrinsic^2) (measured error < 3 %); the crops carry their own scanner noise."""
    x = crops[which]
    intrinsic = estimate_sigma(x)
    expected = math.sqrt(sigma ** 2 + intrinsic ** 2)
    for seed in range(3):
        y = Gaussian(sigma).apply(x, np.random.default_rng(seed))
        assert estimate_sigma(y) == pytest.approx(expected, rel=0.06)


@pytest.mark.parametrize("which", ["ct", "mr"])
@pytest.mark.parametrize("peak,read_noise", [(20.0, 0.0), (100.0, 2.0), (50.0, 1.0)])
def test_estimate_poisson_gaussian_recovers_known_a_and_b_on_real_crops(crops, which: str, peak: float,
                                                                     read_noise: float) -> None:
    """a within 10 % (measured < 3 %); b within 30 % of truth + intrinsic noise, plus 2 % of the full-scale
    shot variance a (b is the small intercept of the fit, so its error scales with a)."""
    x = crops[which]
    _, b_intrinsic = estimate_poisson_gaussian(x)
    d = LowLight(peak=peak, read_noise=read_noise)
    truth = d.noise_profile()
    for seed in range(3):
        a, b = estimate_poisson_gaussian(d.apply(x, np.random.default_rng(seed)))
        assert a == pytest.approx(truth.a, rel=0.10)
        assert abs(b - (truth.b + b_intrinsic)) < 0.3 * (truth.b + b_intrinsic) + 0.02 * truth.a


@pytest.mark.parametrize("which", ["ct", "mr"])
def test_gaussian_noise_is_estimated_as_signal_independent(crops, which: str) -> None:
    y = Gaussian(0.05).apply(crops[which], np.random.default_rng(0))
    a, b = estimate_poisson_gaussian(y)
    assert a * 0.5 < 0.1 * b
    assert b == pytest.approx(0.05 ** 2, rel=0.15)


def test_darkened_low_light_keeps_the_gain(crops) -> None:
    """Brightness scales the signal, not the photon gain: var = mean / peak at any brightness."""
    d = LowLight(brightness=0.3, peak=50.0)
    a, b = estimate_poisson_gaussian(d.apply(crops["ct"], np.random.default_rng(1)))
    assert a == pytest.approx(1 / 50.0, rel=0.1)
    assert b < 1e-4


@pytest.mark.parametrize("which,peak", [("ct_path", 10.0), ("ct_path", 30.0), ("mr_path", 3.0), ("mr_path", 10.0)])
def test_estimate_noise_reads_the_photon_gain_of_real_crops_within_ten_percent(request, which: str,
                                                                                peak: float) -> None:
    """What ``estimate-noise`` prints (physical units, the engine's percentile window): the gain of
    ``simulate --peak P --read-noise 1`` is range / P. With b held >= 0 it read 26-29 % low on the CT crop at
    peak 10 (-10 % at 30, -32 % on the MR crop at 3): the window starts below the photon-zero level, so the true
    b is negative there. Measured now: within 7 % over 5 seeds."""
    vol = read_volume(request.getfixturevalue(which))
    true_a = float(vol.array.max() - vol.array.min()) / peak
    for seed in range(3):
        row = noise_report(simulate_volume(vol, LowLight(peak=peak, read_noise=1.0), seed=seed))[0]
        assert row["a"] == pytest.approx(true_a, rel=0.10), seed
        scale = row["normalization_high"] - row["normalization_low"]
        assert row["a_normalized"] * scale == pytest.approx(row["a"])


def test_negative_b_keeps_the_predicted_variance_positive_over_the_data(ct_path) -> None:
    """The fit may put b < 0 but not below the data: a * x + b stays positive at the darkest block levels."""
    vol = read_volume(ct_path)
    noisy = simulate_volume(vol, LowLight(peak=10.0, read_noise=1.0), seed=0).array
    x = Normalizer.fit(noisy).forward(noisy)
    a, b = estimate_poisson_gaussian(x)
    assert b < 0 < a
    m, v = local_statistics(x)
    darkest = float(np.median(np.sort(m)[: m.size // 16]))
    assert a * darkest + b > 0.25 * float(np.median(np.sort(v[np.argsort(m)][: m.size // 16])))
    ac, bc = estimate_poisson_gaussian(x, constrained=True)  # the old estimator, kept as an option
    assert bc >= 0 and ac < 0.85 * a
    p = estimate_noise(x)
    assert p.b == b and p.is_photon_limited
    assert np.all(np.isfinite(p.std_at(x))) and np.all(p.std_at(x) > 0)
    assert estimate_noise(x, constrained=True).b == bc


@pytest.mark.parametrize("which", ["xray_path", "mr_path"])
def test_a_convex_variance_law_does_not_get_a_zero_level_inside_the_data(request, which: str) -> None:
    """Speckle (var = s^2 x^2) fitted by a line gives b < 0 with the zero-variance level -b/a above 1.3-1.8 % of
    the blocks; the VST folds everything below it onto one value (default-2d lost 3.7 dB on the test radiograph
    with speckle 0.15). At most 1 % of the blocks may lie below it (DARK_BLOCK_QUANTILE)."""
    vol = read_volume(request.getfixturevalue(which))
    for sigma in (0.15, 0.3):
        for seed in range(2):
            y = simulate_volume(vol, Speckle(sigma), seed=seed).array
            x = Normalizer.fit(y).forward(y)
            a, b = estimate_poisson_gaussian(x)
            m, _ = local_statistics(x)
            assert b >= 0 or float(np.mean(m < -b / a)) <= 0.01, (sigma, seed, a, b)


def test_the_engine_gives_each_method_the_fit_it_was_made_for(ct_path) -> None:
    """The shipped models were trained with the b >= 0 fit and the automatic rules tuned with it, so the engine
    keeps giving it to them (outputs bit-identical to before issue 12); a method with ``noise_fit = "free"``
    gets the corrected one that estimate-noise reports."""
    from LowLightDenoiseLib.methods import get_method
    from LowLightDenoiseLib.methods.base import Method
    from LowLightDenoiseLib.pipeline import denoise_volume

    class Seen(Method):
        name, noise_fit = "seen", "free"

        def apply(self, block, context):
            self.noise = context.noise
            return np.array(block, dtype=np.float32)

    noisy = simulate_volume(read_volume(ct_path), LowLight(peak=10.0, read_noise=1.0), seed=0)
    x = Normalizer.fit(noisy.array).forward(noisy.array)
    assert get_method("gaussian").noise_fit == "constrained"
    assert denoise_volume(noisy, "gaussian", device="cpu", flips=2).noise[0] == estimate_noise(x, constrained=True)
    seen = Seen()
    denoise_volume(noisy, seen, device="cpu", mode="2d")
    assert seen.noise == estimate_noise(x) and seen.noise.b < 0


def test_estimate_noise_fills_the_profile_and_flags_photon_limited_input(crops) -> None:
    p = estimate_noise(LowLight(peak=20.0).apply(crops["ct"], np.random.default_rng(2)))
    assert isinstance(p, NoiseProfile) and p.sigma > 0 and p.a > 0
    assert p.is_photon_limited
    g = estimate_noise(Gaussian(0.05).apply(crops["ct"], np.random.default_rng(2)))
    assert not g.is_photon_limited
    assert g.std_at(np.array([0.1, 0.9])) == pytest.approx([0.05, 0.05], rel=0.15)


@settings(max_examples=10, deadline=None)
@given(sigma=st.floats(0.01, 0.2), seed=st.integers(0, 2 ** 31 - 1))
def test_estimate_sigma_on_phantom_is_within_eight_percent(sigma: float, seed: int) -> None:
    """The disc's edge adds wavelet detail: over 40 seeds +2.0 to +6.9 % at sigma 0.01 (6 % was too tight: hypothesis
    found sigma 0.0117, seed 1 at +6.07 %), -1.3 to +3.7 % at 0.1."""
    z, y, x = np.mgrid[0:6, 0:128, 0:128]
    phantom = 0.2 + 0.6 * ((y - 64) ** 2 + (x - 64) ** 2 < 1600)
    noisy = Gaussian(sigma).apply(phantom.astype(np.float64), np.random.default_rng(seed))
    assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.08)


def test_only_sampled_slices_are_read_so_other_slices_do_not_matter() -> None:
    rng = np.random.default_rng(3)
    vol = rng.normal(0.5, 0.05, size=(40, 32, 32))
    sampled = np.unique(np.linspace(0, 39, 8).astype(int))
    other = vol.copy()
    other[[i for i in range(40) if i not in sampled]] = np.nan  # never read
    assert estimate_sigma(other) == estimate_sigma(vol)
    assert estimate_poisson_gaussian(other) == estimate_poisson_gaussian(vol)


def test_local_statistics_drop_constant_padding() -> None:
    a = np.zeros((1, 64, 64))
    a[0, :, 32:] = np.random.default_rng(4).normal(0.5, 0.1, size=(64, 32))
    m, v = local_statistics(a)
    # 7 x 7 blocks of 8 pixels fit in the 62 x 62 interior; the 3 all-zero block columns are dropped
    assert m.size == 7 * 4 and np.all(v > 0)
    assert np.median(v) == pytest.approx(0.01, rel=0.2)


@pytest.mark.parametrize("bad", [np.zeros((0, 4)), np.zeros((2, 2, 2, 2)), np.array([[0.1, np.inf], [0.2, 0.3]])])
def test_bad_input_raises_input_error(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        estimate_noise(bad)


def test_classify_rejects_constant_image() -> None:
    with pytest.raises(InputError):
        classify_noise(np.ones((32, 32)))


# Each noise type at a moderate level on each real crop (held-out scans for the classifier). Measured
# over 10 seeds: 10/10 correct for every case here (docs/simulation_and_noise.md); 4 of 5 required.
CASES = {"gaussian": Gaussian(0.05), "poisson": LowLight(peak=30.0, read_noise=0.5),
         "salt_pepper": SaltPepper(0.05), "speckle": Speckle(0.3), "rician": Rician(0.05)}


@pytest.mark.parametrize("which", ["ct_path", "mr_path"])
@pytest.mark.parametrize("label", list(CASES))
def test_classifier_labels_real_crops_degraded_with_each_type(request, which: str, label: str) -> None:
    vol = read_volume(request.getfixturevalue(which))
    results = [classify_noise(simulate_volume(vol, CASES[label], seed=s).array) for s in range(5)]
    correct = sum(r.label == label for r in results)
    assert correct >= 4, [r.label for r in results]
    for r in results:
        assert set(r.probabilities) == set(NOISE_LABELS)
        assert sum(r.probabilities.values()) == pytest.approx(1.0)


def test_labels_keep_the_model_names_and_add_low_noise() -> None:
    assert NOISE_LABELS[: len(MODEL_LABELS)] == ("gaussian", "poisson", "salt_pepper", "speckle", "rician")
    assert NOISE_LABELS == MODEL_LABELS + ("low_noise",)


def test_a_clean_ct_crop_is_low_noise_not_rician_or_speckle(ct_path) -> None:
    """Its own scanner noise is 8 HU, 0.6 % of the window; the model alone read it as Rician (0.68)."""
    r = classify_noise(read_volume(ct_path).array)
    assert r.label == "low_noise" and r.probabilities["low_noise"] > 0.8
    assert r.probabilities["rician"] < 0.5 and r.probabilities["speckle"] < 0.5
    assert sum(r.probabilities.values()) == pytest.approx(1.0)
    assert r.features["relative_noise_sigma"] < 0.008


@pytest.mark.parametrize("peak", [3.0, 10.0, 30.0])
def test_photon_noise_on_the_real_ct_crop_is_poisson_down_to_3_photons(ct_path, peak: float) -> None:
    """simulate --peak P --read-noise 1: read as speckle at 3 and 10 photons before the curvature feature (the
    log-log slope grows with the read noise spread below the photon-zero level; the curvature does not)."""
    vol = read_volume(ct_path)
    labels = [classify_noise(simulate_volume(vol, LowLight(peak=peak, read_noise=1.0), seed=s).array).label
              for s in range(3)]
    assert labels == ["poisson"] * 3


def test_impulse_noise_on_a_clean_crop_is_not_low_noise(ct_path) -> None:
    """1 % salt and pepper hardly moves the median-based sigma (0.3 % of the window), but it is noise."""
    vol = read_volume(ct_path)
    for s in range(3):
        r = classify_noise(simulate_volume(vol, SaltPepper(0.01), seed=s).array)
        assert r.features["relative_noise_sigma"] < 0.005
        assert r.label == "salt_pepper" and r.probabilities["low_noise"] < 0.05


def test_classifier_is_invariant_to_intensity_units(ct_path) -> None:
    noisy = simulate_volume(read_volume(ct_path), Speckle(0.3), seed=0).array.astype(np.float64)
    a, b = classify_noise(noisy), classify_noise(noisy * 0.01 + 7.0)
    assert a.label == b.label
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-3)  # only rounding differs


def test_features_separate_the_variance_laws(crops) -> None:
    rng = np.random.default_rng(5)
    slope = FEATURE_NAMES.index("variance_slope")
    impulse = FEATURE_NAMES.index("log_impulse_fraction")
    s_gauss = noise_features(Gaussian(0.05).apply(crops["mr"], rng))[slope]
    s_poisson = noise_features(LowLight(peak=30.0).apply(crops["mr"], rng))[slope]
    s_speckle = noise_features(Speckle(0.3).apply(crops["mr"], rng))[slope]
    assert abs(s_gauss) < 0.3 and 0.6 < s_poisson < 1.4 and s_speckle > 1.4
    assert noise_features(SaltPepper(0.05).apply(crops["mr"], rng))[impulse] > -2.0 > noise_features(
        crops["mr"])[impulse]


def test_noise_free_black_slices_give_a_zero_not_nan_noise_estimate():
    """An all-black slice stack (padding, air) must not turn a learned model's noise map into NaN."""
    black = np.zeros((4, 32, 32), dtype=np.float32)
    black[:, 10:20, 10:20] = 1.0  # a noise-free bright square: still no noise
    profile = estimate_noise(black)
    assert estimate_sigma(np.zeros((2, 32, 32), dtype=np.float32)) == 0.0
    assert np.isfinite([profile.sigma, profile.a, profile.b]).all()
    assert np.isfinite(profile.std_at(black)).all()


def test_the_wavelet_noise_estimate_is_scikit_images_on_real_crops(ct_path, mr_path, xray_path):
    """Our copy avoids importing scipy.stats at start-up; it must give skimage's number exactly."""
    from skimage.restoration import estimate_sigma

    from LowLightDenoiseLib.io import read_volume
    from LowLightDenoiseLib.noise import wavelet_mad_sigma

    for path in (ct_path, mr_path, xray_path):
        array = read_volume(path).array.astype(np.float64)
        for image in (array[0], array[-1]):
            assert wavelet_mad_sigma(image) == pytest.approx(float(estimate_sigma(image)), rel=1e-12)
    assert np.isnan(wavelet_mad_sigma(np.zeros((16, 16))))
