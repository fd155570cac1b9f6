"""Learned methods: input configurations, every architecture through the engine on the real CT crop, strength."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from hypothesis import given, settings as hsettings, strategies as st

from LowLightDenoiseLib.errors import CancelledError, InputError, ModelNotAvailableError
from LowLightDenoiseLib.models.inference import InferenceSettings
from LowLightDenoiseLib.methods.learned import LearnedMethod
from LowLightDenoiseLib.models.spec import (
    ModelSpec, finish_output, input_channels, load_state_dict, prepare_input, prepare_target, save_weights,
    validate_input_config)
from LowLightDenoiseLib.noise import NoiseProfile
from LowLightDenoiseLib.pipeline import denoise_volume
from LowLightDenoiseLib.progress import CancelToken
from LowLightDenoiseLib.volume import Volume

torch.set_num_threads(1)

TINY = {
    "dncnn": {"features": 4, "depth": 3},
    "unet": {"features": [4, 4, 4, 4, 4, 4]},
    "dae": {"features": [4, 8]},
    "dualpath": {"features": [4, 4, 4, 4, 4, 4], "curve_features": 4, "iterations": 2},
}


class Identity(torch.nn.Module):
    """Returns its image channel: what an ideal network does to a clean image."""

    def forward(self, x):
        return x[:, :1] * 1.0


def tiny_method(arch, dims, input_config=None, seed=0, **settings):
    spec = ModelSpec(name=f"tiny-{arch}-{dims}d", architecture=arch, spatial_dims=dims, network=TINY[arch],
                     input=input_config or {})
    torch.manual_seed(seed)
    return LearnedMethod(spec, spec.build_network(), settings=InferenceSettings(**settings))


@pytest.fixture(scope="module")
def ct_volume(ct_path):
    img = sitk.ReadImage(str(ct_path))
    return Volume(sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(), img.GetDirection())


def test_plain_config_is_the_image_itself(phantom2d):
    noise = NoiseProfile(sigma=0.05)
    x = phantom2d.copy()
    inp = prepare_input(x, noise, {})
    assert inp.shape == (1,) + x.shape and inp.dtype == np.float32
    np.testing.assert_array_equal(inp[0], x)
    np.testing.assert_array_equal(finish_output(inp[:1], x, noise, {}), x)
    np.testing.assert_array_equal(x, phantom2d)


def test_noise_map_channel_holds_the_per_pixel_noise_std(phantom3d):
    noise = NoiseProfile(sigma=0.05, a=0.01, b=0.0004)
    inp = prepare_input(phantom3d, noise, {"noise_map": True})
    assert inp.shape == (2,) + phantom3d.shape
    np.testing.assert_allclose(inp[1], np.sqrt(0.01 * phantom3d + 0.0004), rtol=1e-5)
    assert inp[1].max() > inp[1].min()  # signal-dependent: brighter pixels are noisier
    np.testing.assert_array_equal(finish_output(inp[0], phantom3d, noise, {"noise_map": True}), phantom3d)


@hsettings(max_examples=30, deadline=None)
@given(a=st.floats(1e-4, 0.2), b=st.floats(0.0, 1e-2), noise_map=st.booleans())
def test_vst_round_trip_is_exact_with_the_algebraic_inverse(a, b, noise_map):
    x = np.linspace(0.0, 1.2, 97, dtype=np.float32).reshape(1, 97)
    noise = NoiseProfile(sigma=0.0, a=a, b=b)
    cfg = {"vst": True, "noise_map": noise_map, "vst_inverse": "algebraic"}
    inp = prepare_input(x, noise, cfg)
    assert inp.shape[0] == input_channels(cfg)
    assert abs(inp[0, 0, 0]) < 1e-5 and abs(inp[0, 0, -1 - 16] - 1.0) < 1e-2  # f(0) -> 0, f(1) -> 1
    np.testing.assert_allclose(finish_output(inp[:1], x, noise, cfg), x, atol=2e-5)
    if noise_map:  # the stabilised noise level, constant over the image
        assert np.ptp(inp[1]) == 0 and inp[1, 0, 0] > 0


def test_vst_unbiased_inverse_recovers_the_mean_of_photon_limited_data():
    rng = np.random.default_rng(0)
    peak = 8.0
    clean = np.array([0.1, 0.3, 0.6, 1.0])
    z = rng.poisson(np.repeat(clean[:, None] * peak, 200_000, axis=1)) / peak
    noise = NoiseProfile(sigma=0.0, a=1 / peak, b=0.0)
    cfg = {"vst": True}
    stabilised = prepare_input(z.astype(np.float32), noise, cfg)[0]
    ideal = stabilised.mean(axis=1, keepdims=True) * np.ones_like(stabilised)  # a perfect denoiser: E[f(z)]
    restored = finish_output(ideal, z, noise, cfg)[:, 0]
    np.testing.assert_allclose(restored, clean, atol=0.02)
    biased = finish_output(ideal, z, noise, {"vst": True, "vst_inverse": "algebraic"})[:, 0]
    assert abs(biased[0] - clean[0]) > 2 * abs(restored[0] - clean[0])


def test_training_target_is_the_clean_image_in_the_network_domain(phantom2d):
    noise = NoiseProfile(sigma=0.0, a=0.02, b=1e-4)
    cfg = {"vst": True, "noise_map": True, "vst_inverse": "algebraic"}
    target = prepare_target(phantom2d, noise, cfg)
    assert target.shape == (1,) + phantom2d.shape
    np.testing.assert_array_equal(target[0], prepare_input(phantom2d, noise, cfg)[0])
    np.testing.assert_allclose(finish_output(target, phantom2d, noise, cfg), phantom2d, atol=2e-5)
    np.testing.assert_array_equal(prepare_target(phantom2d, noise, {"noise_map": True})[0], phantom2d)


def test_gaussian_only_noise_makes_the_vst_an_identity(phantom2d):
    noise = NoiseProfile(sigma=0.03)
    inp = prepare_input(phantom2d, noise, {"vst": True, "noise_map": True})
    np.testing.assert_allclose(inp[0], phantom2d, atol=1e-6)
    np.testing.assert_allclose(inp[1], 0.03, rtol=1e-6)


@pytest.mark.parametrize("bad", [{"noise_maps": True}, {"vst": 1}, {"vst": True, "vst_inverse": "exact"}])
def test_bad_input_configs_are_rejected(bad):
    with pytest.raises(ValueError):
        validate_input_config(bad)


@pytest.mark.parametrize("config", [{"noise_map": True}, {"vst": True, "vst_inverse": "algebraic", "noise_map": True}])
@pytest.mark.parametrize("dims", [2, 3])
def test_identity_network_through_the_engine_returns_the_input(ct_volume, config, dims):
    spec = ModelSpec(name="identity", architecture="dncnn", spatial_dims=dims, input=config)
    method = LearnedMethod(spec, Identity(), settings=InferenceSettings(tile=48, overlap=0.5))
    before = ct_volume.array.copy()
    out = denoise_volume(ct_volume, method, device="cpu").volume.array
    np.testing.assert_array_equal(ct_volume.array, before)
    np.testing.assert_allclose(out, before, atol=0.05)  # HU after float32 normalise / VST round trips


def test_identity_network_in_the_vst_domain_returns_a_real_radiograph(xray_path):
    img = sitk.ReadImage(str(xray_path))
    xray = Volume(sitk.GetArrayFromImage(img))
    spec = ModelSpec(name="identity", architecture="dncnn", spatial_dims=2,
                     input={"vst": True, "vst_inverse": "algebraic", "noise_map": True})
    result = denoise_volume(xray, LearnedMethod(spec, Identity(), settings=InferenceSettings(tile=64)), device="cpu")
    np.testing.assert_allclose(result.volume.array, xray.array.astype(np.float32), atol=0.02)


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("dims", [2, 3])
def test_every_architecture_runs_on_the_real_ct_crop(ct_volume, arch, dims, tmp_path):
    method = tiny_method(arch, dims, {"noise_map": True}, tile=64)
    before = ct_volume.array.copy()
    result = denoise_volume(ct_volume, method, device="cpu")
    assert result.mode == f"{dims}d"
    out = result.volume
    assert out.array.shape == before.shape and out.array.dtype == np.float32
    assert out.same_geometry(ct_volume) and np.isfinite(out.array).all()
    np.testing.assert_array_equal(ct_volume.array, before)
    assert method.last_report.device == "cpu" and not result.warnings
    # the same weights saved and loaded give the same numbers (deterministic, no pickling)
    path = save_weights(tmp_path / "w.safetensors", method.network, method.spec)
    again = LearnedMethod.from_weights(method.spec, path, settings=InferenceSettings(tile=64))
    np.testing.assert_array_equal(denoise_volume(ct_volume, again, device="cpu").volume.array, out.array)


def test_strength_blends_input_and_output(ct_volume):
    method = tiny_method("dncnn", 2, seed=3)
    full = denoise_volume(ct_volume, method, device="cpu").volume.array.astype(np.float64)
    half = denoise_volume(ct_volume, method, device="cpu", strength=0.5).volume.array.astype(np.float64)
    none = denoise_volume(ct_volume, method, device="cpu", strength=0.0).volume.array.astype(np.float64)
    src = ct_volume.array.astype(np.float64)
    np.testing.assert_allclose(none, src, atol=0.05)
    np.testing.assert_allclose(half, 0.5 * (src + full), atol=0.05)
    assert np.abs(full - src).max() > 1.0
    for bad in (-0.1, 3.01, float("nan"), "strong", True):
        with pytest.raises(InputError, match="strength must be a number from 0"):
            denoise_volume(ct_volume, method, device="cpu", strength=bad)


def test_two_d_model_refuses_three_d_mode_and_three_d_model_needs_slices(ct_volume, xray_path):
    with pytest.raises(InputError, match="2D slices only"):
        denoise_volume(ct_volume, tiny_method("dncnn", 2), mode="3d", device="cpu")
    img = sitk.ReadImage(str(xray_path))
    xray = Volume(sitk.GetArrayFromImage(img).astype(np.float32))
    with pytest.raises(InputError, match="3D mode needs"):
        denoise_volume(xray, tiny_method("dncnn", 3), device="cpu")


def test_weights_of_another_model_are_refused(tmp_path):
    path = save_weights(tmp_path / "unet.safetensors", tiny_method("unet", 2).network)
    with pytest.raises(ModelNotAvailableError, match="do not fit"):
        LearnedMethod.from_weights(tiny_method("dncnn", 2).spec, path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a weights file")
    with pytest.raises(ModelNotAvailableError, match="cannot be read"):
        load_state_dict(tmp_path / "junk.safetensors")


def test_torch_files_load_with_weights_only(tmp_path):
    method = tiny_method("dncnn", 2)
    torch.save(method.network.state_dict(), tmp_path / "w.pt")
    state = load_state_dict(tmp_path / "w.pt")
    assert set(state) == set(method.network.state_dict())

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelNotAvailableError):
        load_state_dict(tmp_path / "evil.pt")


def test_cancel_and_progress_through_the_engine(ct_volume):
    method = tiny_method("dncnn", 2, tile=32, sw_batch_size=2)
    seen = []
    denoise_volume(ct_volume, method, device="cpu", progress=lambda f, m: seen.append(f))
    assert len(seen) > 20 and all(b >= a for a, b in zip(seen, seen[1:])) and seen[-1] == 1.0
    token = CancelToken()

    def cancel_midway(fraction, message):
        if fraction > 0.3:
            token.cancel()

    with pytest.raises(CancelledError):
        denoise_volume(ct_volume, method, device="cpu", progress=cancel_midway, cancel=token)


class OomAbove(torch.nn.Module):
    """Identity that simulates the GPU error: raises torch.cuda.OutOfMemoryError for calls above ``limit`` pixels."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def forward(self, x):
        if x[:, :1].numel() > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return x[:, :1] * 1.0


def test_out_of_memory_retries_reach_the_engine_result(ct_volume):
    spec = ModelSpec(name="oom", architecture="dncnn", spatial_dims=2)
    method = LearnedMethod(spec, OomAbove(48 * 48), settings=InferenceSettings(tile=96, sw_batch_size=4, min_tile=16))
    result = denoise_volume(ct_volume, method, device="cpu")
    np.testing.assert_allclose(result.volume.array, ct_volume.array, atol=0.05)
    assert result.warnings and all("Out of memory" in w for w in result.warnings)
    assert result.summary()["warnings"] == result.warnings
    assert method.last_report.plans[-1].roi_size == (48, 48)
    again = denoise_volume(ct_volume, method, device="cpu")  # the smaller plan is remembered
    assert again.warnings == []


def _slab_and_its_2d_model(seed=0, neighbours=2):
    """A tiny 2D unet (random weights) and a slab_unet started from it."""
    from LowLightDenoiseLib.models.networks import initialise_from

    features = [4, 4, 4, 4, 4, 4]
    flat = ModelSpec(name="tiny-2d", architecture="unet", spatial_dims=2, network={"features": features, "norm": None},
                     input={"noise_map": True})
    slab = ModelSpec(name="tiny-slab", architecture="slab_unet", spatial_dims=3,
                     network={"features": features, "norm": None, "neighbours": neighbours}, input={"noise_map": True})
    torch.manual_seed(seed)
    net2d = flat.build_network()
    net3d = slab.build_network()
    assert "inflated" in initialise_from(net3d, net2d.state_dict())
    return flat, net2d, slab, net3d


def test_slab_unet_started_from_a_2d_unet_is_that_model_slice_by_slice_through_the_engine(ct_volume):
    flat, net2d, slab, net3d = _slab_and_its_2d_model()
    big = InferenceSettings(tile=256)  # one window: no blending differences between the two runs
    two = denoise_volume(ct_volume, LearnedMethod(flat, net2d, settings=big), mode="2d", device="cpu")
    three = denoise_volume(ct_volume, LearnedMethod(slab, net3d, settings=big), mode="3d", device="cpu")
    assert three.mode == "3d"
    np.testing.assert_allclose(three.volume.array, two.volume.array, atol=1e-2)  # HU; float32 rounding only
    assert np.abs(two.volume.array - ct_volume.array).max() > 1.0  # the random network did change the image


def test_slab_unet_sees_its_neighbours_mirrored_at_the_ends():
    _, _, _, net3d = _slab_and_its_2d_model(neighbours=2)
    with torch.no_grad():
        for p in net3d.parameters():  # give the neighbour inputs weight (they start at zero)
            if p.ndim == 4 and p.shape[1] == 2 * 5:
                p.add_(0.5)
    x = torch.rand(1, 2, 9, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = net3d(x)
        changed = x.clone()
        changed[:, :, 4] += 0.5
        moved = (net3d(changed) - base).abs().amax(dim=(0, 1, 3, 4))
        assert (moved[2:7] > 0).all() and (moved[:2] == 0).all() and (moved[7:] == 0).all()
        end = x.clone()
        end[:, :, 1] += 0.5  # slice 1 is slice 0's neighbour on both sides (mirror)
        moved = (net3d(end) - base).abs().amax(dim=(0, 1, 3, 4))
        assert (moved[:4] > 0).all() and (moved[4:] == 0).all()
        thin = net3d(x[:, :, :2])  # too thin to mirror two neighbours: repeated instead
        assert thin.shape == (1, 1, 2, 16, 16) and torch.isfinite(thin).all()


def test_a_slab_model_runs_a_volume_a_few_slices_at_a_time_with_the_result_of_one_pass(ct_volume, monkeypatch):
    from LowLightDenoiseLib.methods import learned

    _, _, slab, net3d = _slab_and_its_2d_model(neighbours=2)
    with torch.no_grad():
        for p in net3d.parameters():  # neighbours with weight, so wrong neighbours would show
            if p.ndim == 4 and p.shape[1] == 2 * 5:
                p.add_(0.3)
    x = torch.rand(1, 2, 9, 16, 16, generator=torch.Generator().manual_seed(2))
    whole = net3d.slab_batch(x)
    assert torch.equal(net3d.slab_batch(x, 3, 6), whole[3:6])  # neighbours from the volume, not the part
    assert torch.equal(net3d.slab_batch(x, 7, 9), whole[7:9])
    with pytest.raises(ValueError, match="not within"):
        net3d.slab_batch(x, 5, 12)

    big = InferenceSettings(tile=256)
    depth = ct_volume.array.shape[0]
    assert depth > 5
    monkeypatch.setattr(learned, "SLAB_SLICES_PER_PASS", depth)
    method = LearnedMethod(slab, net3d, settings=big)
    one = denoise_volume(ct_volume, method, mode="3d", device="cpu")
    assert len(method.last_report.plans) == 1 and len(method.last_report.plans[0].roi_size) == 2  # 2D tiles
    monkeypatch.setattr(learned, "SLAB_SLICES_PER_PASS", 5)
    method = LearnedMethod(slab, net3d, settings=big)
    parts = denoise_volume(ct_volume, method, mode="3d", device="cpu")
    assert len(method.last_report.plans) == -(-depth // 5)  # one plan per pass, reports merged
    np.testing.assert_allclose(parts.volume.array, one.volume.array, atol=1e-3)
    assert np.abs(one.volume.array - ct_volume.array).max() > 1.0


def test_flip_averaging_is_the_mean_over_flipped_and_rotated_inputs_mapped_back():
    from LowLightDenoiseLib.methods.base import MethodContext
    from LowLightDenoiseLib.methods.wrappers import FlipAveraging

    flat, net2d, slab, net3d = _slab_and_its_2d_model(seed=3)
    with torch.no_grad():
        for p in net3d.parameters():
            if p.ndim == 4 and p.shape[1] == 2 * 5:
                p.add_(0.3)
    block = np.random.default_rng(4).random((9, 32, 48)).astype(np.float32)  # not square: axes must come back
    for spec, net, dims in ((flat, net2d, 2), (slab, net3d, 3)):
        context = MethodContext(spatial_dims=dims, noise=NoiseProfile(sigma=0.05))
        single = LearnedMethod(spec, net, settings=InferenceSettings(tile=256))
        expected = []
        for turns, mirrored in [(0, False), (2, True), (1, False), (3, True)]:
            view = np.rot90(block, turns, axes=(1, 2))
            view = view[:, :, ::-1] if mirrored else view
            out = single.apply(np.ascontiguousarray(view), context)
            out = out[:, :, ::-1] if mirrored else out
            expected.append(np.rot90(out, -turns, axes=(1, 2)))
        four = FlipAveraging(single, 4).apply(block, context)
        assert four.shape == block.shape
        np.testing.assert_allclose(four, np.mean(expected, axis=0), atol=1e-5)
        assert np.abs(four - expected[0]).max() > 1e-4  # the network is not symmetric: averaging changed it
    with pytest.raises(ValueError, match="count must be one of 1, 2, 4, 8"):
        FlipAveraging(single, 3)


def test_the_engine_averages_flips_for_a_learned_model_and_records_it(ct_volume):
    flat, net2d, _, _ = _slab_and_its_2d_model(seed=5)
    method = LearnedMethod(flat, net2d, settings=InferenceSettings(tile=256))
    one = denoise_volume(ct_volume, method, device="cpu")
    two = denoise_volume(ct_volume, method, device="cpu", flips=2)
    assert two.options.flips == 2 and two.summary()["flips"] == 2 and "flips" not in one.summary()
    assert two.method == one.method == flat.name
    assert np.abs(two.volume.array - one.volume.array).max() > 1e-3


def test_strength_above_one_makes_a_learned_model_smooth_more(ct_volume):
    """One meaning for every method: 0 input, 1 automatic, more than 1 stronger (less noise left)."""
    from LowLightDenoiseLib.degrade import LowLight, simulate_volume
    from LowLightDenoiseLib.metrics import noise_sigma
    from LowLightDenoiseLib.methods import get_method

    noisy = simulate_volume(ct_volume, LowLight(peak=100.0, read_noise=1.0), seed=3)
    method = get_method("default-2d", device="cpu")
    sigmas = [noise_sigma(denoise_volume(noisy, method, device="cpu", strength=s).volume.array)
              for s in (0.5, 1.0, 2.0, 3.0)]
    assert sigmas[0] > sigmas[1] > sigmas[2] > sigmas[3], sigmas
    zero = denoise_volume(noisy, method, device="cpu", strength=0).volume.array
    np.testing.assert_allclose(zero, noisy.array, atol=1e-3 * float(np.ptp(noisy.array)))
    with pytest.raises(InputError, match="from 0"):
        denoise_volume(noisy, method, device="cpu", strength=3.5)


def test_slab_unet_is_3d_only_and_refuses_2d_weights_of_another_shape():
    from LowLightDenoiseLib.models.networks import build_network, initialise_from

    with pytest.raises(ValueError, match="spatial_dims must be 3"):
        build_network("slab_unet", 2, 2, features=[4] * 6)
    slab = build_network("slab_unet", 3, 2, features=[4] * 6, norm=None)
    other = build_network("unet", 2, 2, features=[8] * 6, norm=None)
    with pytest.raises(ValueError, match="does not inflate"):
        initialise_from(slab, other.state_dict())


def test_progress_says_what_happens_from_model_loading_to_the_last_slice(ct_volume):
    """Issue 12 item 10: no jump from 0 to 100 % on a small volume; loading is announced."""
    from LowLightDenoiseLib.evaluation import run_methods

    steps = []
    run_methods(ct_volume, ["default-2d", "tv"], progress=lambda f, m: steps.append((f, m)))
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert steps[0][1] == "default-2d: loading"
    assert len({round(f, 3) for f in fractions if 0 < f < 0.5}) >= 3  # several steps within the model's half
    assert any("slice" in m for _, m in steps)
