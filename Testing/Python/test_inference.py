"""The tiled inference engine: tile sizing from memory, stitching, OOM retries and CPU fallback, progress, cancel."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings as hsettings, strategies as st

from LowLightDenoiseLib.errors import CancelledError
from LowLightDenoiseLib.models.inference import (
    GiB, InferenceSettings, TilePlan, activation_elements_per_voxel, available_memory, infer,
    is_out_of_memory, memory_budget, plan_tiles, shrink, windows_per_image)
from LowLightDenoiseLib.models.networks import build_network
from LowLightDenoiseLib.progress import CancelToken, RunControl

torch.set_num_threads(1)


def identity_factory(calls=None):
    """Predictor factory whose windows come back unchanged (first channel), recording window shapes."""
    def factory(device):
        def predict(window):
            if calls is not None:
                calls.append((device, tuple(window.shape)))
            return window[:, :1].clone()
        return predict
    return factory


def oom_above(limit, calls, oom_devices=("cuda", "cpu")):
    """Simulates the GPU error: raises torch.cuda.OutOfMemoryError for windows with more than ``limit``
    voxels (per call) on the listed devices, as a real GPU would for tiles that do not fit."""
    def factory(device):
        def predict(window):
            calls.append((device, tuple(window.shape)))
            if device in oom_devices and window[:, :1].numel() > limit:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
            return window[:, :1] * 1.0
        return predict
    return factory


@pytest.fixture()
def ct_block(ct_path):
    import SimpleITK as sitk

    a = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path))).astype(np.float32)
    return (a - a.min()) / (a.max() - a.min())


@hsettings(max_examples=40, deadline=None)
@given(budget_mb=st.integers(1, 4096), factor=st.integers(2, 64), dims=st.sampled_from([2, 3]),
       multiple=st.sampled_from([1, 4, 16]))
def test_smaller_memory_budget_never_gives_bigger_tiles(budget_mb, factor, dims, multiple):
    shape = (300, 700, 500)[-dims:]
    big = plan_tiles(shape, 4, 3000.0, budget_mb * 2 ** 20, multiple=multiple)
    small = plan_tiles(shape, 4, 3000.0, budget_mb * 2 ** 20 // factor, multiple=multiple)
    assert small.voxels() <= big.voxels()
    assert math.prod(small.roi_size) <= math.prod(big.roi_size)
    for plan in (big, small):
        assert all(r % multiple == 0 for r in plan.roi_size)
        assert plan.sw_batch_size >= 1


def test_tile_and_batch_fit_the_budget_and_the_image():
    budget = 64 * 2 ** 20
    plan = plan_tiles((400, 512, 512), 1, 3000.0, budget, multiple=16)
    assert plan.voxels() * 3000.0 <= budget
    assert plan.roi_size[0] < 400 and all(r % 16 == 0 for r in plan.roi_size)
    # a small slice fits whole: one window per slice, many slices per network call
    small = plan_tiles((96, 96), 40, 3000.0, budget, multiple=16)
    assert small.roi_size == (96, 96) and small.sw_batch_size > 1
    # a thin volume (12 slices) lets the in-plane sides grow instead of wasting budget on depth
    thin = plan_tiles((12, 2000, 2000), 1, 3000.0, budget, multiple=1)
    assert thin.roi_size[0] == 12 and thin.roi_size[1] > round((budget / 3000.0) ** (1 / 3))


def test_fixed_tile_setting_overrides_memory():
    plan = plan_tiles((200, 200), 1, 1.0, 10 * GiB, InferenceSettings(tile=40, sw_batch_size=3), multiple=16)
    assert plan == TilePlan((48, 48), 3)


def test_memory_budget_is_capped_and_positive():
    assert available_memory("cpu") > 0
    cpu = memory_budget("cpu", InferenceSettings(cpu_memory_cap=100 * 2 ** 20))
    assert 0 < cpu <= 100 * 2 ** 20
    assert memory_budget("cuda", InferenceSettings(memory_budget=12345)) == 12345


def test_activation_estimate_grows_with_network_width():
    narrow = activation_elements_per_voxel(build_network("dncnn", 2, 1, features=8, depth=4), 2, 1)
    wide = activation_elements_per_voxel(build_network("dncnn", 2, 1, features=32, depth=4), 2, 1)
    assert narrow > 8 and wide > 3.5 * narrow


def test_shrink_halves_batch_then_tile_then_stops():
    s = InferenceSettings(min_tile=16)
    plan = TilePlan((64, 64), 4)
    seq = []
    while plan is not None:
        seq.append(plan)
        plan = shrink(plan, s, multiple=16)
    assert seq == [TilePlan((64, 64), 4), TilePlan((64, 64), 2), TilePlan((64, 64), 1),
                   TilePlan((32, 32), 1), TilePlan((16, 16), 1)]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_tiled_identity_reproduces_the_real_crop_and_leaves_it_untouched(ct_block, spatial_dims):
    x = torch.from_numpy(ct_block[:, None] if spatial_dims == 2 else ct_block[None, None])
    before = x.clone()
    calls = []
    plan = TilePlan((8, 40, 40)[-spatial_dims:], 3)
    y, report = infer(x, identity_factory(calls), "cpu", voxel_bytes=1.0, plan=plan)
    assert torch.equal(x, before)
    assert y.shape == (x.shape[0], 1) + tuple(x.shape[2:])
    np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-5)
    windows = x.shape[0] * windows_per_image(x.shape[2:], plan.roi_size, 0.25)
    assert report.windows == windows == sum(c[1][0] for c in calls)
    assert all(c[1][2:] == plan.roi_size for c in calls)


def test_out_of_memory_retries_with_smaller_tiles(ct_block, caplog):
    x = torch.from_numpy(ct_block[:, None])  # 12 slices of 96 x 96
    calls = []
    y, report = infer(x, oom_above(48 * 48, calls), "cuda", voxel_bytes=1.0,
                      plan=TilePlan((96, 96), 4), settings=InferenceSettings(min_tile=16), multiple=16)
    np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-5)
    assert [p.sw_batch_size for p in report.plans[:3]] == [4, 2, 1]
    assert report.plans[-1] == TilePlan((48, 48), 1)
    assert not report.fell_back_to_cpu and report.device == "cuda"
    assert len(report.warnings) == len(report.plans) - 1
    assert "Out of memory" in caplog.text


def test_out_of_memory_at_the_smallest_tile_falls_back_to_cpu(ct_block):
    x = torch.from_numpy(ct_block[:2, None])
    calls = []
    y, report = infer(x, oom_above(0, calls, oom_devices=("cuda",)), "cuda", voxel_bytes=1.0,
                      plan=TilePlan((64, 64), 2), settings=InferenceSettings(min_tile=32, memory_budget=2 ** 20),
                      multiple=16)
    np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-5)
    assert report.fell_back_to_cpu and report.device == "cpu"
    assert "CPU" in report.warnings[-1] and report.as_dict()["fell_back_to_cpu"] is True
    assert {d for d, _ in calls} == {"cuda", "cpu"}


def test_fallback_disabled_or_cpu_oom_raises():
    x = torch.rand(1, 1, 32, 32)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        infer(x, oom_above(0, [], oom_devices=("cuda",)), "cuda", voxel_bytes=1.0, plan=TilePlan((32, 32), 1),
              settings=InferenceSettings(min_tile=32, cpu_fallback=False))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        infer(x, oom_above(0, []), "cpu", voxel_bytes=1.0, plan=TilePlan((32, 32), 1),
              settings=InferenceSettings(min_tile=32))


def test_other_errors_are_not_mistaken_for_out_of_memory():
    def factory(device):
        def predict(window):
            raise ValueError("broken network")
        return predict

    with pytest.raises(ValueError, match="broken network"):
        infer(torch.rand(1, 1, 16, 16), factory, "cpu", voxel_bytes=1.0)
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20 MiB"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_progress_is_monotone_and_complete_even_across_retries(ct_block):
    x = torch.from_numpy(ct_block[:, None])
    seen = []
    control = RunControl(lambda f, m: seen.append(f)).sub(0.2, 0.7)
    infer(x, oom_above(40 * 40, []), "cuda", voxel_bytes=1.0, control=control,
          plan=TilePlan((64, 64), 2), settings=InferenceSettings(min_tile=16), multiple=16)
    assert len(seen) > 10
    assert all(b >= a for a, b in zip(seen, seen[1:]))
    assert seen[0] >= 0.2 and seen[-1] == pytest.approx(0.7)


def test_cancel_stops_within_the_next_window_batch(ct_block):
    x = torch.from_numpy(ct_block[:, None])
    token = CancelToken()
    calls = []

    def factory(device):
        def predict(window):
            calls.append(window.shape[0])
            if len(calls) == 2:
                token.cancel()
            return window[:, :1]
        return predict

    with pytest.raises(CancelledError):
        infer(x, factory, "cpu", voxel_bytes=1.0, control=RunControl(cancel=token), plan=TilePlan((48, 48), 2))
    assert len(calls) == 2


def test_per_axis_multiples_let_a_slab_model_take_any_number_of_slices():
    budget = 10 * GiB
    plan = plan_tiles((20, 250, 250), 1, 100.0, budget, multiple=(1, 16, 16))
    assert plan.roi_size == (20, 256, 256)  # the slices as they are; in-plane sides rounded to 16
    assert plan_tiles((20, 250, 250), 1, 100.0, budget, multiple=16).roi_size == (32, 256, 256)
    smaller = shrink(TilePlan((20, 256, 256), 1), InferenceSettings(min_tile=16), multiple=(1, 16, 16))
    assert smaller.roi_size == (16, 128, 128)
    assert shrink(TilePlan((16, 16, 16), 1), InferenceSettings(min_tile=16), multiple=(1, 16, 16)) is None
    with pytest.raises(ValueError, match="size multiples"):
        plan_tiles((20, 250, 250), 1, 100.0, budget, multiple=(1, 16))
