"""Adaptation to one scan (self-supervised): the losses, the guard, determinism, units, weights files.

Real crops of Testing/Data, the shipped default-2d, a few steps each (training is never a test here:
the budgets are tiny and what is checked holds after any number of steps).
"""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LowLightDenoiseLib.degrade import LowLight, simulate_volume
from LowLightDenoiseLib.errors import CancelledError, InputError, ModelNotAvailableError
from LowLightDenoiseLib.evaluation import run_methods
from LowLightDenoiseLib.methods import get_method
from LowLightDenoiseLib.methods.adaptation import AdaptSettings, adapt
from LowLightDenoiseLib.methods.adaptation_data import _parameters
from LowLightDenoiseLib.methods.adaptation_guard import fall_error
from LowLightDenoiseLib.methods.adapted import AdaptedMethod, load_weights_file, save_adapted
from LowLightDenoiseLib.methods.selfsupervised import (
    Domain, NetworkModel, blind_spot_mask, donut_mean, n2s_loss, n2v_loss, neighbour_choices, neighbour_subsample,
    random_neighbour, sure_risk)
from LowLightDenoiseLib.methods.wrappers import unwrap
from LowLightDenoiseLib.models.spec import finish_output, prepare_input
from LowLightDenoiseLib.noise import NoiseProfile
from LowLightDenoiseLib.options import RunOptions
from LowLightDenoiseLib.pipeline import denoise_volume
from LowLightDenoiseLib.progress import CancelToken
from LowLightDenoiseLib.volume import Volume

torch.set_num_threads(1)
FEW = AdaptSettings(max_steps=4, eval_every=2, batch=4, eval_patches=8, patch=32)


def _read(path) -> Volume:
    img = sitk.ReadImage(str(path))
    return Volume(sitk.GetArrayFromImage(img).astype(np.float32), img.GetSpacing(), img.GetOrigin(),
                  img.GetDirection(), metadata={"path": str(path)})


@pytest.fixture(scope="module")
def ct_clean(ct_path) -> Volume:
    return _read(ct_path)


@pytest.fixture(scope="module")
def ct_dark(ct_clean) -> Volume:
    """The real CT crop at 3 photons at full scale: fewer than default-2d was trained on (10-1000)."""
    return simulate_volume(ct_clean, LowLight(peak=3, read_noise=0.5), seed=1)


@pytest.fixture(scope="module")
def adapted(ct_dark) -> AdaptedMethod:
    return adapt(ct_dark, "default-2d", None, settings=FEW)


def _domain(noise, config, dims, count=2):
    return Domain(torch.tensor([_parameters(noise)] * count, dtype=torch.float32), config, dims)


def _weights(method):
    return {k: v.clone() for k, v in unwrap(method).network.state_dict().items()}


# --------------------------------------------------------------------------------------------------
# the losses


def test_blind_spot_mask_takes_one_pixel_per_cell_and_never_two_neighbours():
    mask = blind_spot_mask((3, 1, 32, 32), np.random.default_rng(0))
    for plane in mask.reshape(-1, 32, 32):
        cells = plane.reshape(8, 4, 8, 4).sum(axis=(1, 3))
        assert (cells == 1).all()
        ys, xs = np.nonzero(plane)
        assert len(set(ys % 4)) == 1 and len(set(xs % 4)) == 1  # one phase: masked pixels are 4 apart


def test_masked_pixels_are_replaced_by_their_neighbours_so_the_prediction_there_ignores_their_value():
    """J-invariance: what the network predicts at a masked pixel cannot depend on that pixel's noisy value."""
    method = unwrap(get_method("default-2d"))
    domain = _domain(NoiseProfile(0.05, 0.01, 1e-4), method.spec.input, 2)
    y = torch.from_numpy(np.random.default_rng(0).random((2, 1, 32, 32)).astype(np.float32))
    mask = torch.from_numpy(blind_spot_mask((2, 1, 32, 32), np.random.default_rng(3)))
    outputs = []
    for value in (0.0, 5.0):
        seen = torch.where(mask, donut_mean(torch.where(mask, torch.full_like(y, value), y)), y)
        with torch.no_grad():
            outputs.append(domain.denoise(method.network, seen)[mask])
    assert torch.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize("config", [{"vst": True, "noise_map": True, "vst_inverse": "algebraic"},
                                    {"vst": True, "vst_inverse": "unbiased"}, {"noise_map": True}, {}])
@pytest.mark.parametrize("noise", [NoiseProfile(0.05, 0.01, 1e-4), NoiseProfile(0.05, 0.0, 0.0025),
                                   NoiseProfile(0.05)])
def test_the_torch_domain_is_the_engine_input_and_inverse(config, noise):
    """Losses build the network input and invert its output in torch: exactly what the engine does in NumPy."""
    y = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    domain = _domain(noise, config, 2)
    net_in = domain.network_input(torch.from_numpy(y[:, None])).numpy()
    assert np.allclose(net_in, np.stack([prepare_input(im, noise, config) for im in y]), atol=1e-6)
    out = net_in[:, :1] * 0.9 + 0.05
    back = domain.inverse(torch.from_numpy(out)).numpy()[:, 0]
    assert np.allclose(back, np.stack([finish_output(o[0], im, noise, config) for o, im in zip(out, y)]), atol=1e-6)


def test_donut_mean_is_the_mean_of_the_eight_neighbours():
    image = torch.zeros(1, 1, 5, 5)
    image[0, 0, 2, 2] = 8.0
    image[0, 0, 1, 1] = 4.0
    out = donut_mean(image)
    assert out[0, 0, 2, 2] == pytest.approx(0.5)  # the centre itself is left out
    assert out[0, 0, 1, 2] == pytest.approx(1.5)  # 8 + 4 over 8 neighbours


def test_random_neighbour_gives_each_pixel_the_value_of_one_of_its_eight_neighbours():
    grid = torch.arange(2 * 36, dtype=torch.float32).reshape(2, 1, 6, 6)
    out = random_neighbour(grid, np.random.default_rng(0))
    padded = torch.nn.functional.pad(grid, (1, 1, 1, 1), mode="reflect")
    seen = set()
    for b in range(2):
        for i in range(6):
            for j in range(6):
                around = {float(padded[b, 0, i + 1 + dy, j + 1 + dx]) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                          if dy or dx}
                assert float(out[b, 0, i, j]) in around and float(out[b, 0, i, j]) != float(grid[b, 0, i, j])
                seen.add((float(out[b, 0, i, j]) - float(grid[b, 0, i, j])))
    assert len(seen) > 4  # the neighbour is drawn, not one fixed offset
    again = random_neighbour(grid, np.random.default_rng(0))
    assert torch.equal(out, again)


def test_the_n2v_loss_is_blind_to_the_masked_pixels_own_value():
    """Noise2Void's replacement keeps J-invariance: changing the masked pixels' values leaves the prediction and
    so the loss's output at them unchanged (the same draws), while n2s and n2v see different inputs."""
    method = unwrap(get_method("default-2d"))
    domain = _domain(NoiseProfile(0.05, 0.01, 1e-4), method.spec.input, 2)
    y = torch.from_numpy(np.random.default_rng(0).random((2, 1, 32, 32)).astype(np.float32))
    weights = torch.ones_like(y)
    outputs = []

    class Recording:
        def __init__(self):
            self.domain = domain

        def __call__(self, seen):
            with torch.no_grad():
                out = domain.denoise(method.network, seen)
            outputs.append(out)
            return out

    mask = torch.from_numpy(blind_spot_mask((2, 1, 32, 32), np.random.default_rng(3)))
    for value in (0.0, 5.0):
        n2v_loss(Recording(), torch.where(mask, torch.full_like(y, value), y), weights, np.random.default_rng(3))
    assert torch.allclose(outputs[0][mask], outputs[1][mask])
    n2s_loss(Recording(), y, weights, np.random.default_rng(3))
    n2v_loss(Recording(), y, weights, np.random.default_rng(3))
    assert not torch.allclose(outputs[2][mask], outputs[3][mask])


def test_neighbour_subsampling_takes_two_different_adjacent_pixels_of_every_cell():
    grid = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    first, second = neighbour_choices((1, 1, 8, 8), np.random.default_rng(0), "cpu")
    a, b = neighbour_subsample(grid, first), neighbour_subsample(grid, second)
    assert a.shape == (1, 1, 4, 4)
    ya, xa = np.divmod(a.numpy().astype(int), 8)
    yb, xb = np.divmod(b.numpy().astype(int), 8)
    assert ((np.abs(ya - yb) + np.abs(xa - xb)) == 1).all()
    assert ((ya // 2 == yb // 2) & (xa // 2 == xb // 2)).all()  # the same cell


def test_sure_estimates_the_true_error_of_a_smoother_without_seeing_the_clean_image(ct_clean):
    """Monte-Carlo SURE of a 3 x 3 mean filter on Gaussian noise of known level: the true MSE within a few %."""
    clean = torch.from_numpy(ct_clean.array[:4, :64, :64].copy())[:, None]
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    sigma = 0.05
    noisy = clean + sigma * torch.from_numpy(np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32))

    def smoother(x):
        return torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x[:, :1], (1, 1, 1, 1), mode="reflect"), 3, 1)

    smoother.domain = _domain(NoiseProfile(sigma, 0.0, sigma ** 2), {}, 2, count=4)
    total, weight = sure_risk(smoother, noisy, torch.ones_like(noisy), np.random.default_rng(1))
    true = float(((smoother(noisy) - clean) ** 2).mean())
    assert float(total / weight) == pytest.approx(true, rel=0.05)


@pytest.mark.parametrize("config", [{"vst": True, "noise_map": True, "vst_inverse": "algebraic"},
                                    {"vst": True, "vst_inverse": "unbiased"}])
def test_a_negative_b_goes_through_the_torch_domain_as_through_the_engine_with_finite_gradients(config):
    """Issue 12: estimates in normalised units may have b < 0 (the photon zero above 0). torch.where differentiates
    both branches, and sqrt(b) of the Gaussian-only one was NaN: the first step turned the weights into NaN."""
    noise = NoiseProfile(0.05, 0.01, -1e-3)
    y = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    domain = _domain(noise, config, 2)
    net_in = domain.network_input(torch.from_numpy(y[:, None])).numpy()
    # torch clamps the transform's argument at 1e-12, NumPy at 0: 1e-5 apart below the zero-variance level
    assert np.allclose(net_in, np.stack([prepare_input(im, noise, config) for im in y]), atol=2e-5)
    out = torch.from_numpy(net_in[:, :1] * 0.9 + 0.05).requires_grad_(True)
    back = domain.inverse(out)
    expected = np.stack([finish_output(o[0], im, noise, config) for o, im in zip(out.detach().numpy(), y)])
    assert np.allclose(back.detach().numpy()[:, 0], expected, atol=1e-6)
    back.sum().backward()
    assert torch.isfinite(out.grad).all()
    assert torch.isfinite(domain.weight(back.detach())).all() and float(domain.weight(back.detach()).max()) <= (
        8.0 / (3.0 * noise.a ** 2) * 1.001)
    network = copy.deepcopy(unwrap(get_method("default-2d")).network)
    for p in network.parameters():
        p.requires_grad_(True)
    model = NetworkModel(network, _domain(noise, {"vst": True, "noise_map": True, "vst_inverse": "algebraic"}, 2))
    total, count = n2s_loss(model, torch.rand(2, 1, 32, 32), torch.ones(2, 1, 32, 32), np.random.default_rng(0))
    (total / count).backward()
    grads = [p.grad for p in network.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_the_n2s_loss_counts_only_masked_training_pixels():
    model = NetworkModel(unwrap(get_method("default-2d")).network,
                         _domain(NoiseProfile(0.05, 0.01, 1e-4), {"vst": True, "noise_map": True}, 2))
    y = torch.rand(2, 1, 32, 32)
    weights = torch.zeros(2, 1, 32, 32)
    assert float(n2s_loss(model, y, weights, np.random.default_rng(0))[1]) == 0
    weights[:, :, :16] = 1
    total, count = n2s_loss(model, y, weights, np.random.default_rng(0))
    assert float(count) == 2 * 16 * 32 / 16  # one pixel in 16, in the upper half of each patch
    assert float(total.detach()) > 0


# --------------------------------------------------------------------------------------------------
# adapt: a method like any other


def test_adapted_model_runs_through_the_engine_and_its_row_records_the_adaptation(ct_dark, adapted):
    assert isinstance(adapted, AdaptedMethod)
    record = adapted.record
    assert record.steps == 4 and record.stopped == "steps" and record.loss == "n2s"
    done = run_methods(ct_dark, [adapted], RunOptions(device="cpu"))
    row = done.rows[0]
    for key in ("adapt_budget_s", "adapt_steps", "adapt_risk_before", "adapt_risk_after", "adapt_loss_before",
                "adapt_loss_after", "adapt_kept"):
        assert key in row
    assert row["adapt_steps"] == 4 and row["adapt_kept"] == record.kept
    out = done.outcomes[0].volume
    assert out.array.shape == ct_dark.array.shape and out.spacing == ct_dark.spacing
    assert np.isfinite(out.array).all()
    assert row["method"] == ("default-2d-adapted" if record.kept else "default-2d")


def test_evaluation_rows_of_an_adapted_model_carry_the_adaptation(ct_clean):
    """evaluate() with a factory that adapts to each degraded scan: the benchmark's path records it too."""
    from LowLightDenoiseLib.evaluation import Entry, Level, Scan, evaluate

    factory = Entry("adapted", lambda scan, level, noisy: adapt(noisy, "default-2d", None, settings=FEW))
    rows = evaluate([Scan("ct", "ct", ct_clean)], [Level("peak 3", LowLight(peak=3, read_noise=0.5), seed=1)],
                    [factory])
    assert rows[1]["method"] == "adapted" and rows[1]["adapt_steps"] == 4 and "adapt_kept" in rows[1]
    assert list(rows[1]).index("adapt_steps") < list(rows[1]).index("psnr")


def test_the_same_seed_gives_the_same_weights_and_another_seed_others(ct_dark, adapted):
    settings = AdaptSettings(max_steps=4, eval_every=2, batch=4, eval_patches=8, patch=32, min_gain=0.0,
                             confidence=0.0)
    first = adapt(ct_dark, "default-2d", None, settings=settings)
    again = adapt(ct_dark, "default-2d", None, settings=settings)
    assert first.kept and again.kept
    a, b = _weights(first), _weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.record.loss_after == again.record.loss_after and first.record.risk_after == again.record.risk_after
    other = adapt(ct_dark, "default-2d", None, RunOptions(seed=7), settings=settings)
    c = _weights(other)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_an_adaptation_that_makes_things_worse_is_refused_and_the_unadapted_model_is_used(ct_dark):
    """A learning rate far too high wrecks the network: the held-out loss rises, so the guard keeps the original."""
    wrecked = adapt(ct_dark, "default-2d", None,
                    settings=AdaptSettings(lr=0.05, max_steps=4, eval_every=2, batch=4, eval_patches=8, patch=32))
    assert not wrecked.kept
    assert wrecked.record.loss_after == wrecked.record.loss_before and wrecked.record.best_step == 0
    assert wrecked.record.risk_after == wrecked.record.risk_before
    assert "un-adapted model is used" in wrecked.record.sentence()
    base = denoise_volume(ct_dark, "default-2d", device="cpu").volume.array
    assert np.array_equal(denoise_volume(ct_dark, wrecked, device="cpu").volume.array, base)


def test_a_kept_adaptation_lowered_the_held_out_loss_and_changed_the_weights(ct_dark):
    kept = adapt(ct_dark, "default-2d", None, settings=AdaptSettings(
        max_steps=6, eval_every=3, batch=4, eval_patches=8, patch=32, min_gain=0.0))
    base = _weights(get_method("default-2d"))
    if kept.kept:
        assert kept.record.loss_after < kept.record.loss_before
        assert not all(torch.equal(base[k], v) for k, v in _weights(kept).items())
    else:
        assert kept.record.best_step == 0
        assert all(torch.equal(base[k], v) for k, v in _weights(kept).items())


def test_the_fall_of_the_held_out_loss_has_a_standard_error_over_the_patches():
    ones = np.ones(4)
    assert fall_error(ones, 0.9 * ones, ones) == pytest.approx(0.0)  # every patch fell alike: no doubt
    # the same mean fall (0.1) carried by one patch of four: its standard error is as large as the fall
    assert fall_error(np.array([1.0, 1.0, 1.0, 1.4]), ones, ones) == pytest.approx(0.1)
    # patches weigh by their pixel count: a fall proportional to the weights is certain
    w = np.array([1.0, 2.0, 3.0, 4.0])
    assert fall_error(w, 0.5 * w, w) == pytest.approx(0.0)
    assert fall_error(ones[:1], ones[:1], ones[:1]) == float("inf")  # one patch: no estimate


def test_the_guard_keeps_the_weights_only_when_the_fall_is_that_many_standard_errors(ct_dark):
    """The same seeded run kept below the fall's own signal-to-error ratio and refused just above it."""
    settings = AdaptSettings(max_steps=4, eval_every=2, batch=4, eval_patches=8, patch=32, min_gain=0.0,
                             confidence=0.0)
    first = adapt(ct_dark, "default-2d", None, settings=settings)
    record = first.record
    assert first.kept and record.loss_error > 0 and record.loss_after < record.loss_before
    ratio = (record.loss_before - record.loss_after) / record.loss_error
    refused = adapt(ct_dark, "default-2d", None, settings=dataclasses.replace(settings, confidence=ratio * 1.01))
    assert not refused.kept and refused.record.loss_error == pytest.approx(record.loss_error)
    assert "standard errors of its fall" in refused.record.sentence()
    kept = adapt(ct_dark, "default-2d", None, settings=dataclasses.replace(settings, confidence=ratio * 0.99))
    assert kept.kept and kept.record.best_step == record.best_step
    assert denoise_volume(ct_dark, first, device="cpu").summary()["adapt_loss_error"] == round(record.loss_error, 5)
    with pytest.raises(InputError, match="at least 2 held-out patches"):
        adapt(ct_dark, "default-2d", None, settings=dataclasses.replace(settings, eval_patches=1))


def test_the_guard_judges_a_running_average_of_the_weights_when_asked(ct_dark):
    """``average``: the guard sees (and keeps) ``decay * average + (1 - decay) * training weights`` after every
    step, starting from the model's own weights; the training itself is the same run."""
    def trajectory(average):
        seen = []
        settings = AdaptSettings(max_steps=3, eval_every=1, batch=4, eval_patches=8, patch=32, average=average)
        adapt(ct_dark, "default-2d", None, settings=settings,
              monitor=lambda step, loss, net: seen.append({k: v.detach().clone() for k, v in net.state_dict().items()}))
        return seen

    start = _weights(get_method("default-2d"))
    trained, averaged = trajectory(0.0), trajectory(0.75)
    expected = start
    for weights, average in zip(trained, averaged):
        expected = {k: 0.75 * expected[k] + 0.25 * weights[k] for k in expected}
        assert all(torch.allclose(average[k], expected[k], atol=1e-6) for k in expected)
    assert not all(torch.allclose(averaged[-1][k], trained[-1][k], atol=1e-6) for k in expected)
    with pytest.raises(InputError, match="weight average's decay must be in"):
        adapt(ct_dark, "default-2d", None, settings=dataclasses.replace(FEW, average=1.0))


def test_the_adapted_output_keeps_hounsfield_units(ct_clean, ct_dark, adapted):
    """Flat regions keep their mean HU within 0.1 noise standard deviation (median over the flattest tiles)."""
    out = denoise_volume(ct_dark, adapted, device="cpu").volume.array
    clean, noisy = ct_clean.array, ct_dark.array
    tiles = []
    for k in range(clean.shape[0]):
        for y in range(0, 96, 8):
            for x in range(0, 96, 8):
                sl = (k, slice(y, y + 8), slice(x, x + 8))
                tiles.append((float(np.std(clean[sl])), sl))
    tiles.sort(key=lambda t: t[0])
    shifts = [abs(float(out[sl].mean() - clean[sl].mean())) / float(np.std(noisy[sl] - clean[sl]))
              for _, sl in tiles[:len(tiles) // 10]]
    assert np.median(shifts) < 0.1


def test_progress_is_monotone_and_cancel_stops_the_adaptation(ct_dark):
    seen = []
    adapt(ct_dark, "default-2d", None, settings=FEW, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("adapting default-2d: step" in m for _, m in seen) and "held-out" in seen[-1][1]
    token = CancelToken()

    def cancel_at_step_2(fraction, message):
        if "step 2" in message:
            token.cancel()

    with pytest.raises(CancelledError):
        adapt(ct_dark, "default-2d", None, settings=FEW, progress=cancel_at_step_2, cancel=token)


def test_a_time_budget_stops_the_adaptation(ct_dark):
    done = adapt(ct_dark, "default-2d", 1.5, settings=AdaptSettings(batch=2, patch=32, eval_patches=4))
    assert done.record.stopped in ("budget", "early stop") and done.record.budget_seconds == 1.5
    assert done.record.seconds < 10


def test_a_colour_image_and_a_25d_model_adapt_too(fundus_path, ct_dark):
    from LowLightDenoiseLib.io import read_volume

    photo = read_volume(fundus_path)
    done = adapt(photo, "default-2d", None, settings=FEW)
    assert denoise_volume(photo, done, device="cpu").volume.array.shape == photo.array.shape
    slab = adapt(ct_dark, "volume-2.5d", None, settings=AdaptSettings(max_steps=2, eval_every=1, batch=2,
                                                                       eval_patches=2, patch=32, depth=4))
    assert denoise_volume(ct_dark, slab, device="cpu").volume.array.shape == ct_dark.array.shape


@pytest.mark.parametrize("call, words", [
    (lambda v: adapt(v, "tv", 5), "Only a learned model"),
    (lambda v: adapt(v, "enhance-2d", 5), "Only a denoising model"),
    (lambda v: adapt(v, "default-2d", -3), "positive number of seconds"),
    (lambda v: adapt(v, "default-2d", None), "time budget in seconds or a number of steps"),
    (lambda v: adapt(v, "default-2d", 5, settings=AdaptSettings(loss="n2n")), "Unknown adaptation loss"),
    (lambda v: adapt(v, "default-2d", 5, settings=AdaptSettings(guard="nb2nb")), "Unknown guard loss"),
    (lambda v: adapt(Volume(v.array[:, :12, :12]), "default-2d", 5), "too small to adapt"),
    (lambda v: adapt(Volume(v.array[:1]), "volume-2.5d", 5), "3D model"),
    (lambda v: adapt(v.array, "default-2d", 5), "needs a Volume"),
])
def test_bad_input_gets_one_sentence(ct_dark, call, words):
    with pytest.raises(InputError, match=words) as info:
        call(ct_dark)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


# --------------------------------------------------------------------------------------------------
# weights files: a series of scans from the same scanner, batch runs


def test_saved_weights_load_by_path_with_their_record_and_give_the_same_output(ct_dark, adapted, tmp_path):
    path = save_adapted(adapted, tmp_path / "scanner-a.safetensors")
    card = (tmp_path / "scanner-a.md").read_text()
    assert "ct_chest_crop.nrrd" in card and "Noise2Self" in card and "held-out" in card
    loaded = get_method(str(path))
    assert isinstance(loaded, AdaptedMethod) and loaded.record == adapted.record
    assert loaded.columns()["adapt_weights"] == str(path)
    a = denoise_volume(ct_dark, adapted, device="cpu").volume.array
    assert np.array_equal(denoise_volume(ct_dark, str(path), device="cpu").volume.array, a)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    assert json.loads(meta["adaptation"])["kept"] == adapted.kept and "spec" in meta


def test_weights_files_that_cannot_be_used_get_one_sentence(adapted, tmp_path):
    with pytest.raises(InputError, match="safetensors"):
        save_adapted(adapted, tmp_path / "weights.pt")
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        get_method(str(tmp_path / "missing.safetensors"))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ModelNotAvailableError, match="does not say which model"):
        load_weights_file(tmp_path / "bare.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "torn.safetensors"), metadata={"spec": "{not json"})
    with pytest.raises(ModelNotAvailableError, match="spec that cannot be read"):
        load_weights_file(tmp_path / "torn.safetensors")
    from LowLightDenoiseLib.batch.sidecar import method_identity

    with pytest.raises(ModelNotAvailableError, match="spec that cannot be read"):  # a batch plan: the same sentence
        method_identity(str(tmp_path / "torn.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelNotAvailableError, match="cannot be read"):
        load_weights_file(tmp_path / "junk.safetensors")


@pytest.mark.slow
def test_a_batch_over_a_folder_reuses_adapted_weights_and_its_sidecars_name_them(ct_dark, adapted, tmp_path):
    """Batch runs took only registered names (``--method scanner-a.safetensors`` was 'Unknown method')."""
    import subprocess
    import sys

    from LowLightDenoiseLib.cli import main
    from LowLightDenoiseLib.files import sha256_of
    from LowLightDenoiseLib.io import write_volume

    (tmp_path / "scanner").mkdir()
    weights = save_adapted(adapted, tmp_path / "scanner" / "scanner-a.safetensors")
    scans = tmp_path / "scans"
    scans.mkdir()
    for name, seed in (("first", 1), ("second", 2)):
        write_volume(simulate_volume(ct_dark, LowLight(peak=50, read_noise=0.5), seed=seed), scans / f"{name}.nrrd")
    done = subprocess.run([sys.executable, "-m", "LowLightDenoiseLib", "batch", "scans", "out", "--method",
                           "scanner/scanner-a.safetensors", "--workers", "1", "--device", "cpu", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    single = tmp_path / "single.nrrd"
    assert main(["denoise", str(scans / "first.nrrd"), str(single), "--method", str(weights), "--device", "cpu",
                 "-q"]) == 0
    assert (tmp_path / "out" / "first.nrrd").read_bytes() == single.read_bytes()
    side = json.loads((tmp_path / "out" / "second.nrrd.json").read_text())
    assert side["key"]["method"] == {"name": "scanner-a.safetensors", "kind": "weights file", "model": "default-2d",
                                     "version": adapted.record.version, "sha256": sha256_of(weights)}
    bad = subprocess.run([sys.executable, "-m", "LowLightDenoiseLib", "batch", "scans", "out2", "--method",
                          "scanner/missing.safetensors", "-q"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "does not exist" in bad.stderr and not (tmp_path / "out2" / "first.nrrd").exists()
