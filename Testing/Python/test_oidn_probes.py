"""The issue-14 probes on a real CT crop: oidn-2d's other inputs (train/probe_oidn.py --inputs) and the learned
fusion of default-2d and oidn-2d (train/probe_fusion.py), as their reports ran them."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from LowLightDenoiseLib.degrade import LowLight, simulate_volume
from LowLightDenoiseLib.evaluation import Scan
from LowLightDenoiseLib.methods import get_method
from LowLightDenoiseLib.pipeline import denoise_volume
from LowLightDenoiseLib.volume import Volume
from train import probe_fusion
from train.probe_oidn import input_entries


def _ct_scan(ct_path) -> Scan:
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path))).astype(np.float32)[:2, :64, :64]
    return Scan("ct_crop", "ct", Volume(array))


def test_the_input_probe_at_scale_1_is_the_shipped_oidn_and_its_variants_differ(ct_path):
    noisy = simulate_volume(_ct_scan(ct_path).clean, LowLight(peak=100.0, read_noise=1.0), seed=3)
    entries = input_entries([1.0, 0.3])
    assert [e.label for e in entries[:2]] == ["oidn-2d (scale 1)", "oidn-2d (scale 0.3)"]
    assert any("VST input, pu" in e.label for e in entries)
    shipped = denoise_volume(noisy, "oidn-2d", device="cpu").volume.array
    outs = [denoise_volume(noisy, e.method, device="cpu").volume.array for e in (entries[0], entries[1], entries[2])]
    np.testing.assert_allclose(outs[0], shipped, atol=1e-5 * float(np.ptp(shipped)))
    for other in outs[1:]:
        assert np.all(np.isfinite(other)) and float(np.abs(other - shipped).max()) > 1e-3 * float(np.ptp(shipped))
    assert get_method("oidn-2d").network.input_scale == 1.0  # the probe changed copies, not the shipped method


def test_the_fusion_probe_starts_as_the_mean_of_two_networks_that_denoise(ct_path):
    scan = _ct_scan(ct_path)
    sample = probe_fusion._sample(scan, LowLight(peak=100.0, read_noise=1.0), 5,
                                  [get_method("oidn-2d"), get_method("default-2d")])
    assert {k: sample[k].shape for k in ("y", "o", "d", "s", "x")} == {k: (2, 64, 64) for k in ("y", "o", "d", "s", "x")}
    assert float(sample["s"].min()) > 0
    mean = 0.5 * (sample["o"] + sample["d"])
    noisy_psnr = probe_fusion._psnr(sample["y"], sample)
    assert probe_fusion._psnr(mean, sample) > noisy_psnr + 5  # both networks denoise this crop
    inputs = probe_fusion._inputs(sample)
    assert inputs.shape == (2, 4, 64, 64) and np.all(np.isfinite(inputs))
    net = probe_fusion._network(8)
    with torch.no_grad():
        correction = net(torch.from_numpy(inputs))[:, 0].numpy()
    np.testing.assert_array_equal(correction, 0.0)  # the zero last layer: before training it is ensemble-2d
