"""Classical denoisers and enhancers: contract, automatic parameters, quality on real crops."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from LowLightDenoiseLib.degrade import LowLight, simulate_volume
from LowLightDenoiseLib.errors import CancelledError, InputError
from LowLightDenoiseLib.io import read_volume
from LowLightDenoiseLib.methods import MethodContext, get_method
from LowLightDenoiseLib.methods.classical import CLASSICAL_METHODS, ClassicalMethod, Denoiser, Enhancer
from LowLightDenoiseLib.metrics import psnr
from LowLightDenoiseLib.noise import NoiseProfile, estimate_noise
from LowLightDenoiseLib.normalize import Normalizer
from LowLightDenoiseLib.pipeline import denoise_volume
from LowLightDenoiseLib.progress import CancelToken, RunControl
from LowLightDenoiseLib.volume import Volume

ALL = sorted(CLASSICAL_METHODS)
DENOISERS = sorted(n for n, c in CLASSICAL_METHODS.items() if c.category == "denoise")
ENHANCERS = sorted(n for n, c in CLASSICAL_METHODS.items() if c.category == "enhance")
STRONG = ("nlm", "tv", "wavelet", "bilateral")
#: the parameter that carries each denoiser's automatic strength
STRENGTH_PARAMETER = {"gaussian": "blur", "median": "radius", "bilateral": "range_sigma",
                      "anisotropic-diffusion": "iterations", "tv": "weight", "wavelet": "sigma", "nlm": "h"}


def _noisy(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return (clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)).astype(np.float32)


def _roughness(a: np.ndarray) -> float:
    """Mean absolute in-plane pixel difference: falls as an image is smoothed."""
    return float(np.mean(np.abs(np.diff(a, axis=-1))) + np.mean(np.abs(np.diff(a, axis=-2))))


@pytest.fixture(scope="module")
def ct_lowlight(ct_path):
    """The real CT crop and its photon-limited version: 100 photons at full scale, read noise 1."""
    clean = read_volume(ct_path)
    return clean, simulate_volume(clean, LowLight(peak=100, read_noise=1), seed=1)


def test_registry_holds_every_method_of_the_brief():
    assert set(ALL) == {"gaussian", "median", "bilateral", "anisotropic-diffusion", "tv", "wavelet", "nlm",
                        "histeq", "clahe", "contrast-stretch", "gamma", "unsharp-mask"}
    for name, cls in CLASSICAL_METHODS.items():
        method = cls()
        assert method.name == name and method.kind == "classical"
        assert method.category in ("denoise", "enhance") and method.spatial_dims == (2, 3)
        assert isinstance(get_method(name), cls)
    assert set(ENHANCERS) == {"histeq", "clahe", "contrast-stretch", "gamma", "unsharp-mask"}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dims", [2, 3])
def test_method_keeps_shape_dtype_and_input(name, dims, phantom3d):
    block = _noisy(phantom3d[:8], 0.08)
    before = block.copy()
    ctx = MethodContext(spatial_dims=dims, noise=estimate_noise(block))
    out = CLASSICAL_METHODS[name]().apply(block, ctx)
    assert out.shape == block.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(block, before)
    assert not np.array_equal(out, block)


@pytest.mark.parametrize("name", ALL)
def test_2d_mode_treats_each_slice_on_its_own(name, phantom3d):
    block = _noisy(phantom3d[6:9], 0.08)
    ctx = MethodContext(spatial_dims=2, noise=NoiseProfile(0.08))
    method = CLASSICAL_METHODS[name]()
    whole = method.apply(block, ctx)
    alone = method.apply(block[1:2], ctx)
    np.testing.assert_allclose(whole[1:2], alone, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_3d_mode_differs_from_2d_mode(name, phantom3d):
    volume = Volume(_noisy(phantom3d, 0.08) * 1000.0)
    two = denoise_volume(volume, name, mode="2d", device="cpu").volume.array
    three = denoise_volume(volume, name, mode="3d", device="cpu").volume.array
    assert np.mean(np.abs(two - three)) > 1e-3 * 1000.0


@pytest.mark.parametrize("name", DENOISERS)
def test_every_denoiser_improves_the_photon_limited_real_ct(name, ct_lowlight):
    clean, noisy = ct_lowlight
    data_range = float(np.ptp(clean.array))
    before = psnr(noisy.array, clean.array, data_range=data_range)
    after = psnr(denoise_volume(noisy, name, mode="2d", device="cpu").volume.array, clean.array,
                 data_range=data_range)
    # measured gains (dB): nlm 10.9, tv 10.6, bilateral 9.9, gaussian 9.6, ad 9.5, wavelet 9.2, median 8.6
    assert after - before > (7.0 if name in STRONG else 5.0)


@pytest.mark.parametrize("name", DENOISERS)
def test_every_denoiser_improves_a_noisy_phantom_in_2d_and_3d(name, phantom3d):
    noisy = _noisy(phantom3d, 0.1, seed=3)
    for mode in ("2d", "3d"):
        out = denoise_volume(Volume(noisy), name, mode=mode, device="cpu").volume.array
        assert psnr(out, phantom3d, data_range=1.0) > psnr(noisy, phantom3d, data_range=1.0) + 3.0


@pytest.mark.parametrize("name", DENOISERS)
@pytest.mark.parametrize("dims", [2, 3])
def test_automatic_parameters_grow_with_the_noise_level(name, dims, phantom3d):
    method = CLASSICAL_METHODS[name](vst=False)
    image = phantom3d if dims == 3 else phantom3d[8]
    key = STRENGTH_PARAMETER[name]
    values = [method.chosen_parameters(image, MethodContext(dims, NoiseProfile(s)))[key]
              for s in (0.01, 0.05, 0.2)]
    assert values[0] <= values[1] <= values[2] and values[0] < values[2]


@pytest.mark.parametrize("name", DENOISERS)
def test_strength_multiplies_the_automatic_smoothing(name, phantom3d):
    noisy = _noisy(phantom3d[6:10], 0.08, seed=5)
    noise = NoiseProfile(0.08)
    outputs = {s: CLASSICAL_METHODS[name]().apply(noisy, MethodContext(2, noise, strength=s)) for s in (0.0, 0.5, 2.0)}
    np.testing.assert_array_equal(outputs[0.0], noisy)
    assert _roughness(outputs[2.0]) < _roughness(outputs[0.5]) < _roughness(noisy)
    fixed = CLASSICAL_METHODS[name](strength=2.0).apply(noisy, MethodContext(2, noise, strength=0.5))
    np.testing.assert_array_equal(fixed, outputs[2.0])  # the constructor's strength wins


def test_variance_stabilisation_is_automatic_for_photon_limited_noise(ct_lowlight):
    _, noisy = ct_lowlight
    method = CLASSICAL_METHODS["nlm"]()
    image = np.clip(noisy.array[6] / 3000.0 + 0.3, 0, 1)
    assert method.uses_vst(image, NoiseProfile(0.1, a=0.02, b=1e-4))
    assert not method.uses_vst(image, NoiseProfile(0.1))
    assert not method.uses_vst(image, NoiseProfile(0.1, a=1e-4, b=0.01))  # read noise dominates
    assert not CLASSICAL_METHODS["nlm"](vst=False).uses_vst(image, NoiseProfile(0.1, a=0.02, b=1e-4))


@pytest.mark.parametrize("name", ["nlm", "tv"])
def test_variance_stabilisation_helps_on_photon_limited_ct(name, ct_lowlight):
    clean, noisy = ct_lowlight
    data_range = float(np.ptp(clean.array))
    scores = {vst: psnr(denoise_volume(noisy, CLASSICAL_METHODS[name](vst=vst), mode="2d", device="cpu")
                        .volume.array, clean.array, data_range=data_range) for vst in (True, False)}
    assert scores[True] > scores[False] + 0.5


def test_self_supervised_calibration_picks_a_strength_that_denoises(phantom3d):
    clean = phantom3d[8]
    noisy = _noisy(clean[None], 0.1, seed=7)
    method = CLASSICAL_METHODS["tv"](calibrate=True, vst=False)
    ctx = MethodContext(2, NoiseProfile(0.1))
    weight = method.chosen_parameters(noisy[0], ctx)["weight"]
    assert 0.25 * 0.1 <= weight <= 2.0 * 0.1
    out = method.apply(noisy, ctx)
    assert psnr(out, clean[None], data_range=1.0) > psnr(noisy, clean[None], data_range=1.0) + 5.0


def test_parameters_can_be_fixed_by_hand(phantom3d):
    method = CLASSICAL_METHODS["gaussian"](blur=2.5)
    assert method.chosen_parameters(phantom3d[8], MethodContext(2, NoiseProfile(0.01)))["blur"] == 2.5
    with pytest.raises(InputError, match="has no parameter 'size'"):
        CLASSICAL_METHODS["median"](size=3)
    for bad in (-1, 3.5, 1e308, float("inf")):  # bounded: a huge strength would run for hours
        with pytest.raises(InputError, match="strength must be a number from 0"):
            CLASSICAL_METHODS["tv"](strength=bad)
    with pytest.raises(InputError, match="vst option"):
        CLASSICAL_METHODS["tv"](vst="yes")
    with pytest.raises(InputError, match="variant"):
        CLASSICAL_METHODS["anisotropic-diffusion"](variant="heat").apply(
            _noisy(phantom3d[:1], 0.1), MethodContext(2, NoiseProfile(0.1)))


@pytest.mark.parametrize("path_fixture", ["ct_path", "xray_path"])
def test_enhancers_brighten_a_darkened_real_crop(path_fixture, request):
    clean = read_volume(request.getfixturevalue(path_fixture)).array[:4]
    x = np.clip(Normalizer.fit(clean).forward(clean), 0, 1)
    dark = LowLight(brightness=0.3, gamma=2.0).darken(x).astype(np.float32)  # the simulator's darkening
    ctx = MethodContext(2, NoiseProfile(0.01))
    for name in ("gamma", "histeq", "clahe", "contrast-stretch"):
        assert CLASSICAL_METHODS[name]().apply(dark, ctx).mean() > dark.mean() + 0.1, name


def test_gamma_and_histeq_bring_crushed_shadows_to_mid_grey_through_the_engine(ct_path):
    clean = read_volume(ct_path)
    x = np.clip(Normalizer.fit(clean.array).forward(clean.array), 0, 1)
    dark = clean.with_array(1000.0 * x ** 3)  # shadows crushed: the median sits at 0.34 of the range
    for name in ("gamma", "histeq"):
        result = denoise_volume(dark, name, mode="3d", device="cpu")
        norm = result.normalizers[0]
        before, after = np.median(norm.forward(dark.array)), np.median(norm.forward(result.volume.array))
        assert before < 0.4 and abs(after - 0.5) < 0.02, name


def test_gamma_maps_the_median_brightness_to_mid_grey():
    method = CLASSICAL_METHODS["gamma"]()
    ctx = MethodContext(2, NoiseProfile(0.01))
    dark = np.linspace(0, 1, 64 * 64).reshape(1, 64, 64) ** 3
    assert method.chosen_parameters(dark[0], ctx)["gamma"] < 1 < method.chosen_parameters(1 - dark[0], ctx)["gamma"]
    assert abs(float(np.median(method.apply(dark.astype(np.float32), ctx))) - 0.5) < 0.01
    stronger = method.apply(dark.astype(np.float32), MethodContext(2, NoiseProfile(0.01), strength=2.0))
    assert np.median(stronger) > 0.6


@pytest.mark.parametrize("name", ["contrast-stretch", "clahe", "histeq"])
def test_contrast_enhancers_raise_the_contrast_of_a_flat_real_crop(name, mr_path):
    mr = read_volume(mr_path).array[4:6].astype(np.float32)
    flat = 0.4 + 0.2 * (mr - mr.min()) / np.ptp(mr)  # a low-contrast version in [0.4, 0.6]
    out = CLASSICAL_METHODS[name]().apply(flat, MethodContext(2, NoiseProfile(0.005)))
    assert out.std() > 1.5 * flat.std()


@pytest.mark.parametrize("name", ENHANCERS)
def test_enhancer_strength_goes_the_documented_way(name, mr_path):
    mr = read_volume(mr_path).array[5:6].astype(np.float32)
    x = ((0.05 + 0.5 * (mr - mr.min()) / np.ptp(mr)) ** 1.5).astype(np.float32)  # dark, some contrast
    method = CLASSICAL_METHODS[name]()

    def run(strength):
        return method.apply(x, MethodContext(2, NoiseProfile(0.01), strength=strength))

    weak, strong = run(0.5), run(2.0)
    if name == "gamma":
        assert strong.mean() > weak.mean() > x.mean()
    elif name == "unsharp-mask":
        assert _roughness(strong) > _roughness(weak) > _roughness(x)
    else:
        assert strong.std() > weak.std()
    if name != "contrast-stretch":  # strength 0 is the identity (0 % saturation still stretches)
        np.testing.assert_allclose(run(0.0), x, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in ALL if CLASSICAL_METHODS[n].min_size > 1])
def test_too_small_image_fails_through_the_engine_with_one_sentence(name):
    method = CLASSICAL_METHODS[name]()
    size = method.min_size - 1
    small = Volume(np.random.default_rng(0).random((1, size, 40)).astype(np.float32))
    with pytest.raises(InputError) as err:
        denoise_volume(small, name, mode="2d", device="cpu")
    message = str(err.value)
    assert "\n" not in message and message.endswith(".") and str(method.min_size) in message


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(ALL), dims=st.sampled_from([2, 3]), data=st.data(),
       noise=st.sampled_from([NoiseProfile(0.05), NoiseProfile(0.05, a=0.01, b=1e-4)]))
def test_any_image_at_least_min_size_is_processed(name, dims, data, noise):
    method = CLASSICAL_METHODS[name]()
    shape = tuple(data.draw(st.integers(method.min_size, method.min_size + 12)) for _ in range(3))
    block = np.random.default_rng(1).random(shape).astype(np.float32)
    out = method.apply(block, MethodContext(dims, noise))
    assert out.shape == shape and out.dtype == np.float32 and np.all(np.isfinite(out))


def test_cancellation_stops_between_slices(phantom3d):
    token = CancelToken()
    token.cancel()
    ctx = MethodContext(2, NoiseProfile(0.05), control=RunControl(cancel=token))
    with pytest.raises(CancelledError):
        CLASSICAL_METHODS["nlm"]().apply(phantom3d, ctx)


def test_base_classes_are_the_shared_interface():
    assert all(issubclass(c, ClassicalMethod) for c in CLASSICAL_METHODS.values())
    assert all(issubclass(CLASSICAL_METHODS[n], Denoiser) for n in DENOISERS)
    assert all(issubclass(CLASSICAL_METHODS[n], Enhancer) for n in ENHANCERS)


@pytest.mark.parametrize("name", ALL)
def test_a_constant_slice_in_a_stack_stays_finite(name, phantom3d):
    block = _noisy(phantom3d[6:9], 0.05)
    block[1] = 0.25  # e.g. a padding slice
    out = CLASSICAL_METHODS[name]().apply(block, MethodContext(2, NoiseProfile(0.05, a=0.01, b=1e-4)))
    assert np.all(np.isfinite(out)) and np.ptp(out[1]) < 1e-3


@pytest.mark.parametrize("method, gain", [
    ("gamma", 1.0),
    pytest.param("enhance-2d", 5.0, marks=pytest.mark.skipif(
        __import__("importlib").util.find_spec("torch") is None, reason="a learned model needs torch "
                                                                         "(the Python 3.9 run is torch-free)")),
])
def test_an_enhancer_brightens_a_dark_8_bit_photograph_into_an_8_bit_photograph(fundus_path, tmp_path, method, gain):
    """Issue 12 item 1: the output spans the type's display range (0-255) and is written as 8 bits."""
    from LowLightDenoiseLib.degrade import LowLight, simulate_volume
    from LowLightDenoiseLib.io import read_volume, write_volume
    from LowLightDenoiseLib.metrics import psnr
    from LowLightDenoiseLib.pipeline import denoise_volume

    photo = read_volume(fundus_path)
    dark = simulate_volume(photo, LowLight(brightness=0.3, gamma=1.5, peak=300.0), seed=1)
    dark = dark.with_array(np.clip(np.round(dark.array), 0, 255))  # a dark 8-bit photo as a camera writes it
    out = denoise_volume(dark, method, device="cpu").volume
    assert out.array.min() >= 0 and out.array.max() <= 255
    assert out.array.mean() > 1.5 * dark.array.mean()  # brighter, not capped at the dark input's range
    before = psnr(dark.array, photo.array.astype(np.float32), 255.0, channel_axis=-1)
    after = psnr(out.array, photo.array.astype(np.float32), 255.0, channel_axis=-1)
    assert after > before + gain, (before, after)  # was +0.1 (gamma) and +1.3 dB (enhance-2d) with the dark range
    write_volume(out, tmp_path / "bright.png")
    assert read_volume(tmp_path / "bright.png").source_dtype == "uint8"


def test_an_enhancer_on_a_16_bit_radiograph_keeps_its_detector_range(xray_path):
    """A 16-bit radiograph (values 23418-29979 of 0-65535) is not stretched to the type's range."""
    from LowLightDenoiseLib.io import read_volume
    from LowLightDenoiseLib.pipeline import denoise_volume

    xray = read_volume(xray_path)
    assert xray.source_dtype == "uint16"
    out = denoise_volume(xray, "clahe", device="cpu").volume.array
    low, high = np.percentile(xray.array, (0.5, 99.5))
    assert low - 0.05 * (high - low) <= out.min() and out.max() <= high + 0.05 * (high - low)
