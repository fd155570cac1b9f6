"""Generalised Anscombe transform: variance stabilisation and the exact unbiased inverse."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.vst import (
    algebraic_inverse_generalized_anscombe,
    generalized_anscombe,
    inverse_generalized_anscombe,
)


def _poisson_gaussian(rng: np.random.Generator, x: float, a: float, b: float, n: int) -> np.ndarray:
    """Samples with mean x and variance a * x + b (a * Poisson(x / a) + N(0, b))."""
    return a * rng.poisson(x / a, n) + rng.normal(0.0, np.sqrt(b), n)


@pytest.mark.parametrize("a,b", [(0.01, 0.0), (0.01, 1e-4), (0.002, 4e-6), (0.05, 2.5e-3)])
def test_forward_stabilises_variance_to_one_over_intensities(a: float, b: float) -> None:
    rng = np.random.default_rng(0)
    for x in (0.25, 0.5, 0.75, 1.0):  # at least 5 photons: where the GAT is accurate
        y = generalized_anscombe(_poisson_gaussian(rng, x, a, b, 100_000), a, b)
        assert abs(float(y.var()) - 1.0) < 0.06, (a, b, x, float(y.var()))


def test_raw_variance_grows_with_intensity_but_stabilised_does_not() -> None:
    rng = np.random.default_rng(1)
    a, b = 0.02, 1e-4
    raw = [float(_poisson_gaussian(rng, x, a, b, 50_000).var()) for x in (0.2, 0.8)]
    stab = [float(generalized_anscombe(_poisson_gaussian(rng, x, a, b, 50_000), a, b).var()) for x in (0.2, 0.8)]
    assert raw[1] / raw[0] > 3.0
    assert abs(stab[1] / stab[0] - 1.0) < 0.06


@settings(max_examples=12, deadline=None)
@given(photons=st.floats(0.5, 200.0), a=st.floats(1e-3, 0.2), read_photons=st.floats(0.0, 3.0),
       seed=st.integers(0, 2 ** 31 - 1))
def test_unbiased_inverse_of_mean_forward_recovers_the_mean(photons: float, a: float, read_photons: float,
                                                            seed: int) -> None:
    """inverse(E[f(z)]) = E[z] within 0.08 photons (closed-form error measured < 0.04) plus sampling error."""
    b = (read_photons * a) ** 2
    x = photons * a
    n = 60_000
    rng = np.random.default_rng(seed)
    d = float(generalized_anscombe(_poisson_gaussian(rng, x, a, b, n), a, b).mean())
    estimate = float(inverse_generalized_anscombe(np.array(d), a, b))
    sampling = a * max(d, 1.0) / 2.0 / np.sqrt(n)  # |dx/dD| * standard error of the mean of D
    assert abs(estimate - x) <= a * 0.08 + 4.0 * sampling


def test_algebraic_inverse_is_biased_at_low_counts_where_unbiased_is_not() -> None:
    rng = np.random.default_rng(2)
    a, b, x = 0.1, 0.0, 0.1  # one photon per pixel on average
    d = generalized_anscombe(_poisson_gaussian(rng, x, a, b, 400_000), a, b).mean()
    assert abs(float(inverse_generalized_anscombe(d, a, b)) - x) < 0.003
    assert float(algebraic_inverse_generalized_anscombe(d, a, b)) < x - 0.01


@settings(max_examples=25, deadline=None)
@given(a=st.floats(1e-4, 1.0), b=st.floats(0.0, 0.1))
def test_algebraic_inverse_inverts_forward_exactly(a: float, b: float) -> None:
    x = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(algebraic_inverse_generalized_anscombe(generalized_anscombe(x, a, b), a, b), x,
                               atol=1e-9 + 1e-9 * b / a)


def test_unbiased_inverse_is_non_negative_and_monotone() -> None:
    d = np.linspace(0.0, 50.0, 2001)
    x = inverse_generalized_anscombe(d, 0.01, 1e-4)
    assert np.all(x >= 0)
    assert np.all(np.diff(x) >= 0)


def test_pure_gaussian_case_is_a_scaling() -> None:
    z = np.array([-0.2, 0.0, 0.3])
    np.testing.assert_allclose(generalized_anscombe(z, 0.0, 0.04), z / 0.2)
    np.testing.assert_allclose(inverse_generalized_anscombe(z / 0.2, 0.0, 0.04), z)


def test_dtype_and_input_are_preserved() -> None:
    x = np.full((3, 4, 4), 0.5, dtype=np.float32)
    before = x.copy()
    y = generalized_anscombe(x, 0.01, 1e-4)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert inverse_generalized_anscombe(y, 0.01, 1e-4).dtype == np.float32
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("a,b", [(-0.1, 0.0), (0.0, -1e-4), (0.0, 0.0), (float("nan"), 0.1), (0.1, float("inf"))])
def test_bad_noise_parameters_raise_input_error(a: float, b: float) -> None:
    with pytest.raises(InputError):
        generalized_anscombe(np.ones(3), a, b)
    with pytest.raises(InputError):
        inverse_generalized_anscombe(np.ones(3), a, b)


def _shifted(rng: np.random.Generator, x: float, x0: float, a: float, read: float, n: int) -> np.ndarray:
    """Samples whose photon-zero level is ``x0``: ``x0 + a * Poisson((x - x0) / a) + N(0, read)``, so that
    var = a * x + b with b = read - a * x0 (negative for x0 > read / a): a window that starts below the zero."""
    return x0 + a * rng.poisson((x - x0) / a, n) + rng.normal(0.0, np.sqrt(read), n)


@pytest.mark.parametrize("a,x0,read", [(0.01, 0.1, 1e-4), (0.05, 0.2, 0.0), (0.002, 0.05, 4e-6)])
def test_negative_b_is_accepted_and_stabilises_like_the_shifted_zero(a: float, x0: float, read: float) -> None:
    """A photon-zero level above 0 gives b < 0 (the engine's normalised units); the transform is the one of
    z - x0 with the read noise, so it stabilises the variance and its unbiased inverse recovers the mean."""
    b = read - a * x0
    assert b < 0
    rng = np.random.default_rng(7)
    for x in (x0 + 5 * a, 0.5, 1.0):  # at least 5 photons above the zero: where the GAT is accurate
        z = _shifted(rng, x, x0, a, read, 200_000)
        y = generalized_anscombe(z, a, b)
        assert abs(float(y.var()) - 1.0) < 0.06, (a, x0, x, float(y.var()))
        assert abs(float(inverse_generalized_anscombe(np.array(y.mean()), a, b)) - x) < 0.08 * a + 1e-3 * x
    grid = np.linspace(x0, 1.0, 11)
    np.testing.assert_allclose(algebraic_inverse_generalized_anscombe(generalized_anscombe(grid, a, b), a, b), grid,
                               atol=1e-9)


def test_negative_b_inverse_is_continuous_and_monotone_down_to_the_zero_variance_level() -> None:
    """Below the transform's zero-photon value the inverse gives -b / a (the level where a x + b = 0), as it
    gives 0 there when b >= 0, so the output neither jumps nor leaves the data's range."""
    a, b = 0.01, -1e-3
    d = np.linspace(0.0, 40.0, 4001)
    x = inverse_generalized_anscombe(d, a, b)
    assert np.all(np.diff(x) >= 0)
    assert np.all(x >= -b / a - 1e-12)
    assert x[0] == pytest.approx(-b / a)
    assert np.max(np.abs(np.diff(x))) < 0.01


def test_non_negative_b_inverse_is_unchanged() -> None:
    """The b >= 0 path computes what it did before b < 0 was accepted (models' outputs stay bit-identical)."""
    d = np.linspace(0.0, 30.0, 301)
    for a, b in ((0.01, 0.0), (0.01, 1e-4), (0.05, 2.5e-3)):
        s2 = b / (a * a)
        valid = d >= 2.0 * np.sqrt(3.0 / 8.0)
        dv = np.where(valid, d, 1.0)
        photons = (0.25 * dv * dv + 0.25 * np.sqrt(1.5) / dv - 1.375 / dv ** 2
                   + 0.625 * np.sqrt(1.5) / dv ** 3 - 0.125 - s2)
        old = a * np.where(valid, np.maximum(photons, 0.0), 0.0)
        np.testing.assert_array_equal(inverse_generalized_anscombe(d, a, b), old)
