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


@pytest.mark.parametrize("a,b", [(-0.1, 0.0), (0.1, -1.0), (0.0, 0.0), (float("nan"), 0.1)])
def test_bad_noise_parameters_raise_input_error(a: float, b: float) -> None:
    with pytest.raises(InputError):
        generalized_anscombe(np.ones(3), a, b)
