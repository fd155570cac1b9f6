"""Degradation models: statistics against theory, reproducibility, shapes, and simulate_volume on real crops."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from LowLightDenoiseLib.degrade import (
    DEGRADATIONS,
    CorrelatedGaussian,
    Gaussian,
    LowLight,
    Rician,
    SaltPepper,
    Speckle,
    make_degradation,
    random_degradation,
    simulate_volume,
)
from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.io import read_volume
from LowLightDenoiseLib.volume import Volume

DEFAULTS = {name: cls() for name, cls in DEGRADATIONS.items()}


def _flat(value: float, shape=(200, 200)) -> np.ndarray:
    return np.full(shape, value, dtype=np.float64)


@pytest.mark.parametrize("peak,read_noise", [(10.0, 0.0), (100.0, 0.0), (50.0, 2.0)])
def test_lowlight_mean_and_variance_follow_poisson_gaussian_model(peak: float, read_noise: float) -> None:
    d = LowLight(peak=peak, read_noise=read_noise)
    rng = np.random.default_rng(0)
    for x in (0.1, 0.5, 1.0):
        y = d.apply(_flat(x), rng)
        var = x / peak + (read_noise / peak) ** 2
        assert abs(y.mean() - x) < 4 * math.sqrt(var / y.size)
        assert abs(y.var() / var - 1.0) < 0.03  # relative s.e. of a variance from 40k samples: 0.7 %


def test_lowlight_without_read_noise_gives_whole_photon_counts() -> None:
    y = LowLight(peak=30.0).apply(_flat(0.3, (50, 50)), np.random.default_rng(1))
    counts = y * 30.0
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert counts.min() >= 0


def test_lowlight_darkening_applies_brightness_and_gamma() -> None:
    d = LowLight(brightness=0.4, gamma=2.0, peak=1e6)
    y = d.apply(_flat(0.5), np.random.default_rng(2))
    assert abs(y.mean() - 0.4 * 0.25) < 1e-4
    np.testing.assert_allclose(d.darken(np.array([0.0, 0.5, 1.0])), [0.0, 0.1, 0.4])


def test_lowlight_noise_profile_matches_empirical_variance_on_an_image(phantom2d: np.ndarray) -> None:
    d = LowLight(brightness=0.5, gamma=1.5, peak=40.0, read_noise=1.5)
    p = d.noise_profile()
    assert p.a == pytest.approx(1 / 40.0) and p.b == pytest.approx((1.5 / 40.0) ** 2)
    rng = np.random.default_rng(3)
    ys = np.stack([d.apply(phantom2d, rng) for _ in range(400)])
    mean, var = ys.mean(axis=0), ys.var(axis=0)
    np.testing.assert_allclose(mean, d.darken(phantom2d), atol=5 * math.sqrt(p.a + p.b) / 20)
    np.testing.assert_allclose(var.mean(), (p.a * d.darken(phantom2d) + p.b).mean(), rtol=0.03)


def test_gaussian_noise_has_the_requested_sigma_and_zero_mean() -> None:
    y = Gaussian(sigma=0.07).apply(_flat(0.5, (300, 300)), np.random.default_rng(4))
    assert abs(y.std() - 0.07) < 0.07 * 0.015
    assert abs(y.mean() - 0.5) < 0.001


@pytest.mark.parametrize("amount,salt_fraction", [(0.05, 0.5), (0.2, 0.25)])
def test_salt_and_pepper_replaces_the_requested_fraction(amount: float, salt_fraction: float) -> None:
    x = _flat(0.5, (300, 300))
    y = SaltPepper(amount=amount, salt_fraction=salt_fraction).apply(x, np.random.default_rng(5))
    hit = y != 0.5
    assert abs(hit.mean() - amount) < 4 * math.sqrt(amount * (1 - amount) / x.size)
    assert set(np.unique(y[hit])) <= {0.0, 1.0}
    assert abs((y[hit] == 1.0).mean() - salt_fraction) < 0.03


@pytest.mark.parametrize("snr", [0.0, 0.5, 1.0, 2.0, 10.0])
def test_rician_mean_matches_theory_including_low_snr_bias(snr: float) -> None:
    sigma = 0.05
    y = Rician(sigma=sigma).apply(_flat(snr * sigma, (300, 300)), np.random.default_rng(6))
    expected = stats.rice.mean(snr, scale=sigma)
    assert abs(y.mean() - expected) < 0.01 * sigma + 4 * y.std() / math.sqrt(y.size)
    if snr == 0.0:  # Rayleigh background: mean sigma * sqrt(pi / 2), biased above the true 0
        assert y.mean() == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.01)
    assert y.min() >= 0


def test_speckle_is_multiplicative_variance_proportional_to_signal_squared() -> None:
    d = Speckle(sigma=0.3)
    rng = np.random.default_rng(7)
    lo, hi = d.apply(_flat(0.2), rng), d.apply(_flat(0.8), rng)
    assert hi.var() / lo.var() == pytest.approx(16.0, rel=0.05)
    assert lo.std() / 0.2 == pytest.approx(0.3, rel=0.03)
    assert hi.mean() == pytest.approx(0.8, rel=0.01)
    assert d.apply(_flat(0.0, (10, 10)), rng).max() == 0.0


def _neighbour_correlation(noise: np.ndarray, axis: int) -> float:
    a = np.moveaxis(noise, axis, 0)
    return float(np.corrcoef(a[1:].ravel(), a[:-1].ravel())[0, 1])


def test_correlated_noise_has_requested_sigma_and_neighbour_correlation() -> None:
    rng = np.random.default_rng(8)
    noise = CorrelatedGaussian(sigma=0.05, length=1.5).apply(np.zeros((24, 96, 96)), rng)
    assert noise.std() == pytest.approx(0.05, rel=0.05)
    theory = math.exp(-1.0 / (4 * 1.5 ** 2))  # autocorrelation of Gaussian-filtered white noise at lag 1
    for axis in (0, 1, 2):
        assert _neighbour_correlation(noise, axis) == pytest.approx(theory, abs=0.04)
    white = Gaussian(sigma=0.05).apply(np.zeros((24, 96, 96)), rng)
    assert abs(_neighbour_correlation(white, 2)) < 0.02


def test_correlated_noise_in_2d_correlates_in_plane_only() -> None:
    noise = CorrelatedGaussian(sigma=0.1, length=1.0).apply(np.zeros((1, 200, 200)), np.random.default_rng(9))
    assert noise.std() == pytest.approx(0.1, rel=0.05)
    assert _neighbour_correlation(noise[0], 0) > 0.6


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_same_seed_reproduces_and_other_seed_differs(name: str, phantom3d: np.ndarray) -> None:
    d = DEFAULTS[name]
    y1 = d.apply(phantom3d, np.random.default_rng(42))
    y2 = d.apply(phantom3d, np.random.default_rng(42))
    y3 = d.apply(phantom3d, np.random.default_rng(43))
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, y3)


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_works_on_2d_and_3d_keeps_shape_dtype_and_input(name: str, phantom2d: np.ndarray,
                                                        phantom3d: np.ndarray) -> None:
    d = DEFAULTS[name]
    for x in (phantom2d, phantom3d):
        before = x.copy()
        y = d.apply(x, np.random.default_rng(0))
        assert y.shape == x.shape and y.dtype == np.float32
        assert np.all(np.isfinite(y))
        assert not np.array_equal(y, x)
        np.testing.assert_array_equal(x, before)


def test_apply_rejects_nan() -> None:
    with pytest.raises(InputError):
        Gaussian().apply(np.array([[0.1, np.nan]]), np.random.default_rng(0))


@pytest.mark.parametrize("name,params", [
    ("lowlight", {"peak": -5}), ("lowlight", {"brightness": 0}), ("lowlight", {"read_noise": -1}),
    ("lowlight", {"peak": float("nan")}), ("gaussian", {"sigma": "big"}), ("salt_pepper", {"amount": 1.5}),
    ("speckle", {"sigma": 0}), ("correlated_gaussian", {"length": 0}), ("gaussian", {"peak": 3}),
    ("blur", {}),
])
def test_make_degradation_rejects_bad_names_and_values(name: str, params: dict) -> None:
    with pytest.raises(InputError) as err:
        make_degradation(name, **params)
    assert "\n" not in str(err.value)


def test_make_degradation_builds_by_name_and_describes_itself() -> None:
    d = make_degradation("Salt-Pepper", amount=0.1)
    assert d == SaltPepper(amount=0.1)
    assert d.describe() == "salt_pepper(amount=0.1, salt_fraction=0.5)"
    assert make_degradation("lowlight", **LowLight(peak=7).params()) == LowLight(peak=7)


def test_noise_profiles_are_true_parameters() -> None:
    assert Gaussian(0.1).noise_profile().b == pytest.approx(0.01)
    assert Rician(0.05).noise_profile().sigma == 0.05
    assert CorrelatedGaussian(0.02, 2.0).noise_profile().sigma == 0.02
    assert SaltPepper().noise_profile() is None
    assert Speckle(0.2).noise_profile() is None
    assert Speckle(0.2).noise_profile(np.full((4, 4), 0.5)).sigma == pytest.approx(0.1)


def test_simulate_volume_keeps_geometry_units_and_input_on_real_ct(ct_path) -> None:
    ct = read_volume(ct_path)
    before = ct.array.copy()
    out = simulate_volume(ct, LowLight(peak=1e7), seed=0)  # almost noiseless: values must stay in HU
    assert out.same_geometry(ct) and out.spacing == ct.spacing and out.direction == ct.direction
    assert out.array.dtype == np.float32 and out.array.shape == ct.array.shape
    np.testing.assert_allclose(out.array, ct.array, atol=5.0)  # HU
    np.testing.assert_array_equal(ct.array, before)
    assert out.metadata["degradation"].startswith("lowlight(") and out.metadata["degradation_seed"] == 0

    noisy = simulate_volume(ct, Gaussian(sigma=0.02), seed=1)
    hu_range = float(ct.array.max()) - float(ct.array.min())
    residual = noisy.array - ct.array
    assert residual.std() == pytest.approx(0.02 * hu_range, rel=0.05)  # sigma is a fraction of the range
    assert abs(residual.mean()) < 0.002 * hu_range


def test_simulate_volume_is_seeded(mr_path) -> None:
    mr = read_volume(mr_path)
    a = simulate_volume(mr, "rician", seed=3).array
    np.testing.assert_array_equal(a, simulate_volume(mr, "rician", seed=3).array)
    assert not np.array_equal(a, simulate_volume(mr, "rician", seed=4).array)


def test_simulate_volume_degrades_each_colour_channel(fundus_path) -> None:
    rgb = read_volume(fundus_path)
    assert rgb.is_color
    out = simulate_volume(rgb, LowLight(peak=20.0), seed=0)
    assert out.array.shape == rgb.array.shape and out.is_color
    for c in range(3):
        chan = rgb.array[..., c].astype(np.float64)
        assert not np.array_equal(out.array[..., c], chan)
        assert abs(out.array[..., c].mean() - chan.mean()) < 0.03 * np.ptp(chan)
    assert not np.array_equal(out.array[..., 0] - rgb.array[..., 0], out.array[..., 1] - rgb.array[..., 1])


def test_simulate_volume_rejects_constant_volume() -> None:
    with pytest.raises(InputError):
        simulate_volume(Volume(np.zeros((2, 8, 8), dtype=np.float32)), Gaussian())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_degradation_draws_within_documented_ranges(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = random_degradation(rng)
    assert d.name in DEGRADATIONS
    if isinstance(d, LowLight):
        assert 10 <= d.peak <= 1000 and 0 <= d.read_noise <= 3
        assert 0.1 <= d.brightness <= 1 and 1 <= d.gamma <= 2.5
    elif isinstance(d, (Gaussian, Rician)):
        assert 0.01 <= d.sigma <= 0.15
    elif isinstance(d, SaltPepper):
        assert 0.005 <= d.amount <= 0.1
    assert dataclasses.replace(d) == d


def test_random_degradation_is_reproducible_restrictable_and_mostly_lowlight() -> None:
    draws = [random_degradation(np.random.default_rng(s)) for s in range(300)]
    assert draws[:20] == [random_degradation(np.random.default_rng(s)) for s in range(20)]
    share = np.mean([d.name == "lowlight" for d in draws])
    assert 0.35 < share < 0.65  # weight 4 of 9
    only = {random_degradation(np.random.default_rng(s), kinds=["speckle", "rician"]).name for s in range(30)}
    assert only == {"speckle", "rician"}
    with pytest.raises(InputError):
        random_degradation(np.random.default_rng(0), kinds=["blur"])


def test_low_light_darkens_a_colour_photograph_as_a_whole_and_keeps_its_colour_balance(fundus_path):
    """Each channel darkened towards its own minimum would leave a red fundus bright (issue 12, item 2)."""
    from LowLightDenoiseLib.degrade import LowLight, simulate_volume
    from LowLightDenoiseLib.io import read_volume

    photo = read_volume(fundus_path)
    assert photo.is_color
    dark = simulate_volume(photo, LowLight(brightness=0.2, gamma=1.5, peak=1000.0), seed=0)
    before = photo.array.reshape(-1, photo.channels).astype(np.float64).mean(axis=0)
    after = dark.array.reshape(-1, photo.channels).astype(np.float64).mean(axis=0)
    low = float(photo.array.min())
    # every channel is dark now: its mean above the image's black level shrinks at least 5 times
    assert np.all(after - low < (before - low) / 5), (before, after)
    # the brightest channel stays the brightest: hue kept
    assert int(np.argmax(after)) == int(np.argmax(before))
