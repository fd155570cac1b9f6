"""Metrics against known values: hand-computed cases, scikit-image and MONAI references, real crops."""
from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from LowLightDenoiseLib import metrics
from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.volume import Volume


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    from conftest import DATA

    return sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "ct_chest_crop.nrrd"))).astype(np.float64)


@pytest.fixture(scope="module")
def noisy_ct(ct: np.ndarray) -> np.ndarray:
    return ct + np.random.default_rng(3).normal(0.0, 60.0, ct.shape)


def test_mse_mae_psnr_of_a_hand_computed_case():
    ref = np.array([[0.0, 10.0], [20.0, 30.0]])
    out = ref + np.array([[1.0, -1.0], [2.0, 0.0]])
    assert metrics.mse(out, ref) == pytest.approx((1 + 1 + 4 + 0) / 4)
    assert metrics.mae(out, ref) == pytest.approx((1 + 1 + 2 + 0) / 4)
    # default data range: reference max - min = 30
    assert metrics.psnr(out, ref) == pytest.approx(10 * math.log10(30.0 ** 2 / 1.5))
    assert metrics.psnr(out, ref, data_range=255) == pytest.approx(10 * math.log10(255.0 ** 2 / 1.5))


@settings(max_examples=25, deadline=None)
@given(st.floats(1e-3, 1e3), st.floats(1.0, 1e4), st.floats(-1e3, 1e3))
def test_psnr_of_a_known_mse_whatever_the_offset(err: float, rng_: float, offset: float):
    ref = np.zeros((4, 4)) + offset
    ref[0, 0] = offset + rng_
    out = ref + math.sqrt(err) * np.where(np.indices((4, 4)).sum(0) % 2 == 0, 1.0, -1.0)
    assert metrics.mse(out, ref) == pytest.approx(err, rel=1e-6)
    assert metrics.psnr(out, ref) == pytest.approx(10 * math.log10(rng_ ** 2 / err), rel=1e-5, abs=1e-6)


def test_identical_images_give_infinite_psnr_and_unit_ssim(ct: np.ndarray):
    assert metrics.psnr(ct, ct) == math.inf
    assert metrics.ssim(ct, ct) == pytest.approx(1.0)
    assert metrics.ssim(ct, ct, spatial_dims=3) == pytest.approx(1.0)
    assert metrics.mse(ct, ct) == 0.0


def test_psnr_matches_scikit_image(ct: np.ndarray, noisy_ct: np.ndarray):
    from skimage.metrics import peak_signal_noise_ratio

    expected = peak_signal_noise_ratio(ct, noisy_ct, data_range=ct.max() - ct.min())
    assert metrics.psnr(noisy_ct, ct) == pytest.approx(expected, rel=1e-9)


def test_ssim_2d_is_the_mean_of_scikit_image_per_slice_ssim_after_mapping_to_unit_range(ct, noisy_ct):
    from skimage.metrics import structural_similarity

    lo, rng_ = ct.min(), ct.max() - ct.min()
    expected = np.mean([
        structural_similarity((noisy_ct[i] - lo) / rng_, (ct[i] - lo) / rng_, data_range=1.0,
                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for i in range(ct.shape[0])])
    assert metrics.ssim(noisy_ct, ct) == pytest.approx(expected, rel=1e-9)


def test_ssim_2d_and_3d_agree_with_monai(ct: np.ndarray, noisy_ct: np.ndarray):
    import torch
    from monai.metrics import SSIMMetric

    lo, rng_ = ct.min(), ct.max() - ct.min()
    x = torch.as_tensor((noisy_ct - lo) / rng_)[None, None]
    y = torch.as_tensor((ct - lo) / rng_)[None, None]
    monai_3d = float(SSIMMetric(spatial_dims=3, data_range=1.0)(x, y).mean())
    monai_2d = float(SSIMMetric(spatial_dims=2, data_range=1.0)(x[0].transpose(0, 1), y[0].transpose(0, 1)).mean())
    assert metrics.ssim(noisy_ct, ct, spatial_dims=3) == pytest.approx(monai_3d, abs=1e-4)
    assert metrics.ssim(noisy_ct, ct, spatial_dims=2) == pytest.approx(monai_2d, abs=1e-4)


def test_3d_ssim_in_slabs_equals_the_whole_volume_value(monkeypatch, ct, noisy_ct):
    from skimage.metrics import structural_similarity

    lo, rng_ = ct.min(), ct.max() - ct.min()
    vol_a = np.concatenate([ct, ct[::-1]])  # 24 slices so several slabs are needed
    vol_b = np.concatenate([noisy_ct, noisy_ct[::-1]])
    whole = structural_similarity((vol_b - lo) / rng_, (vol_a - lo) / rng_, data_range=1.0, gaussian_weights=True,
                                  sigma=1.5, use_sample_covariance=False)
    monkeypatch.setattr(metrics, "_SLAB_VOXELS", 96 * 96 * 13)  # 3 output slices per slab
    assert metrics.ssim(vol_b, vol_a, spatial_dims=3) == pytest.approx(whole, rel=1e-9)


def test_ssim_is_undefined_for_images_smaller_than_the_window():
    rng = np.random.default_rng(0)
    a = rng.random((8, 32, 32))
    assert metrics.ssim(a + 0.1, a, spatial_dims=3) is None  # 8 slices < 11
    assert metrics.ssim(a + 0.1, a, spatial_dims=2) is not None
    assert metrics.ssim(a[:, :10] + 0.1, a[:, :10], spatial_dims=2) is None


def test_ssim_axis_selects_the_slice_direction(ct, noisy_ct):
    along_x = metrics.ssim(noisy_ct[:10], ct[:10], axis=2)
    assert along_x is None  # x-slices are 10 x 96: too thin in z for the 11-sample window
    assert metrics.ssim(noisy_ct[:10], ct[:10], axis=0) is not None
    along_z = metrics.ssim(noisy_ct, ct, axis=0)
    assert along_z == pytest.approx(metrics.ssim(np.moveaxis(noisy_ct, 0, 1), np.moveaxis(ct, 0, 1), axis=1))


def test_ssim_falls_as_noise_grows(ct):
    rng = np.random.default_rng(1)
    values = [metrics.ssim(ct + rng.normal(0, s, ct.shape), ct) for s in (10, 50, 200)]
    assert values[0] > values[1] > values[2]


def test_explicit_data_range_changes_psnr_and_ssim_in_the_expected_direction(ct, noisy_ct):
    assert metrics.psnr(noisy_ct, ct, data_range=8000) > metrics.psnr(noisy_ct, ct)
    assert metrics.ssim(noisy_ct, ct, data_range=8000) > metrics.ssim(noisy_ct, ct)


def test_constant_reference_and_bad_range_are_one_sentence_errors():
    with pytest.raises(InputError, match="constant"):
        metrics.psnr(np.ones((4, 4)), np.zeros((4, 4)))
    with pytest.raises(InputError, match="positive"):
        metrics.psnr(np.ones((4, 4)), np.eye(4), data_range=-1)
    with pytest.raises(InputError, match="differ in size"):
        metrics.mse(np.ones((4, 4)), np.ones((4, 5)))


def test_colour_metrics_average_channels_and_use_all_values():
    rng = np.random.default_rng(2)
    ref = rng.random((1, 24, 24, 3))
    out = ref + rng.normal(0, 0.05, ref.shape)
    assert metrics.mse(out, ref, channel_axis=-1) == pytest.approx(np.mean((out - ref) ** 2))
    per_channel = [metrics.ssim(out[..., c], ref[..., c], data_range=ref.max() - ref.min()) for c in range(3)]
    assert metrics.ssim(out, ref, channel_axis=-1) == pytest.approx(np.mean(per_channel))


def test_edge_preservation_is_one_for_identical_images_and_drops_with_blur(phantom3d):
    from scipy import ndimage

    assert metrics.edge_preservation(phantom3d, phantom3d) == pytest.approx(1.0)
    light = ndimage.gaussian_filter(phantom3d, (0, 1, 1))
    heavy = ndimage.gaussian_filter(phantom3d, (0, 4, 4))
    e_light = metrics.edge_preservation(phantom3d, light)
    e_heavy = metrics.edge_preservation(phantom3d, heavy)
    assert 1.0 > e_light > e_heavy
    assert metrics.edge_preservation(phantom3d, np.zeros_like(phantom3d)) is None


def test_rms_contrast_of_a_hand_computed_case():
    a = np.array([0.0, 10.0, 0.0, 10.0])
    assert metrics.rms_contrast(a, 0.0, 10.0) == pytest.approx(0.5)
    assert metrics.rms_contrast(a, 0.0, 20.0) == pytest.approx(0.25)


def test_reference_metrics_on_volumes(ct, noisy_ct):
    ref = Volume(ct)
    m = metrics.reference_metrics(Volume(noisy_ct), ref)
    assert set(m) == set(metrics.REFERENCE_KEYS)
    assert m["data_range"] == pytest.approx(ct.max() - ct.min())
    assert m["psnr"] == pytest.approx(10 * math.log10(m["data_range"] ** 2 / m["mse"]))
    assert 0 < m["ssim"] < 1 and 0 < m["ssim_3d"] < 1
    two_d = metrics.reference_metrics(Volume(noisy_ct[5]), Volume(ct[5]))
    assert two_d["ssim_3d"] is None and two_d["ssim"] is not None


def test_no_reference_metrics_see_noise_removed_by_smoothing(ct, noisy_ct):
    from scipy import ndimage

    smoothed = ndimage.gaussian_filter(noisy_ct, (0, 1.5, 1.5))
    m = metrics.no_reference_metrics(Volume(noisy_ct), Volume(smoothed))
    assert set(m) == set(metrics.NO_REFERENCE_KEYS)
    assert m["noise_sigma_input"] == pytest.approx(60.0, rel=0.25)  # the Gaussian noise added
    assert m["noise_reduction"] > 3
    assert m["noise_reduction"] == pytest.approx(m["noise_sigma_input"] / m["noise_sigma_output"])
    assert m["contrast_improvement"] < 1  # smoothing removes noise variance
    assert 0.8 < m["edge_preservation"] <= 1


def test_contrast_improvement_is_above_one_for_a_contrast_stretch(ct):
    mean = ct.mean()
    stretched = mean + 1.5 * (ct - mean)
    m = metrics.no_reference_metrics(Volume(ct), Volume(stretched))
    assert m["contrast_improvement"] == pytest.approx(1.5, rel=1e-6)
    assert m["edge_preservation"] == pytest.approx(1.0)


def test_metrics_on_the_real_rgb_fundus_crop(fundus_path):
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(fundus_path))).astype(np.float64)
    vol = Volume(img[np.newaxis])
    assert vol.is_color
    noisy = vol.with_array(vol.array + np.random.default_rng(4).normal(0, 10, vol.array.shape))
    ref_m = metrics.reference_metrics(noisy, vol, data_range=255)
    assert ref_m["psnr"] == pytest.approx(10 * math.log10(255 ** 2 / ref_m["mse"]))
    assert ref_m["ssim_3d"] is None and 0 < ref_m["ssim"] < 1
    nr = metrics.no_reference_metrics(noisy, vol)
    assert nr["noise_reduction"] > 1


def test_metrics_never_modify_their_inputs(ct, noisy_ct):
    a, b = ct.copy(), noisy_ct.copy()
    metrics.reference_metrics(Volume(b), Volume(a))
    metrics.no_reference_metrics(Volume(b), Volume(a))
    np.testing.assert_array_equal(a, ct)
    np.testing.assert_array_equal(b, noisy_ct)


def test_volume_metrics_reject_nan_and_mismatched_shapes(ct):
    bad = ct.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        metrics.reference_metrics(Volume(ct), Volume(bad))
    with pytest.raises(InputError, match="differ in size"):
        metrics.reference_metrics(Volume(ct[:5]), Volume(ct))


def test_float32_path_for_big_volumes_matches_float64(monkeypatch, ct, noisy_ct):
    exact = metrics.ssim(noisy_ct, ct, spatial_dims=3)
    monkeypatch.setattr(metrics, "_FLOAT32_VOXELS", 1000)
    assert metrics.ssim(noisy_ct, ct, spatial_dims=3) == pytest.approx(exact, abs=1e-5)
