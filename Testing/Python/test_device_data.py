"""train/device_data.py: the training scans packed under a size budget for a GPU machine and unpacked there into
train/data's format, on real crops (a CT volume, a radiograph, a colour fundus photograph)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from train.dataset import PreparedScan
from train.device_data import LEVELS, crop, main, pack, unpack


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, ct_path, xray_path, fundus_path):
    """Prepared scans in train/data's format (NAME.npy + NAME.json)."""
    folder = tmp_path_factory.mktemp("data")
    for sid, path, dims in (("ct", ct_path, 3), ("xray", xray_path, 2), ("fundus", fundus_path, 2)):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
        if a.ndim == 3 and a.shape[-1] == 3 and dims == 2:  # colour: channels first, as prepare_data stores it
            a = np.moveaxis(a, -1, 0)
        a = a[np.newaxis] if a.ndim == 2 else a
        np.save(folder / f"{sid}.npy", a)
        (folder / f"{sid}.json").write_text(json.dumps({
            "id": sid, "modality": sid, "dims": dims, "channels": 3 if sid == "fundus" else 1,
            "min": float(a.min()), "max": float(a.max()), "spacing_xyz": [1.0, 1.0, 2.0]}))
    return folder


def test_a_crop_is_central_keeps_the_channels_and_holds_at_most_the_voxels():
    volume = np.arange(20 * 30 * 40, dtype=np.float32).reshape(20, 30, 40)
    part = crop(volume, 3, 4 * 10 * 10, depth=4)
    assert part.shape == (4, 10, 10)
    assert np.array_equal(part, volume[8:12, 10:20, 15:25])
    colour = np.zeros((3, 30, 40), np.float32)
    assert crop(colour, 2, 3 * 100, depth=4).shape == (3, 10, 10)
    assert crop(colour, 2, 10 ** 6, depth=4).shape == (3, 30, 40)  # never larger than the scan


def test_packed_scans_come_back_as_central_crops_in_physical_units(data_dir, tmp_path):
    archive = tmp_path / "scans.npz"
    held = pack(["ct", "xray", "fundus"], archive, budget_mb=0.05, depth=4, data_dir=data_dir)
    assert archive.stat().st_size == held["bytes"] <= 0.05 * 2 ** 20
    out = tmp_path / "device" / "data"
    assert unpack(archive, out) == ["ct", "xray", "fundus"]
    for sid in ("ct", "xray", "fundus"):
        meta = json.loads((data_dir / f"{sid}.json").read_text())
        back = json.loads((out / f"{sid}.json").read_text())
        assert {k: back[k] for k in meta} == meta  # the full scan's range: the training normalises alike
        array = np.load(out / f"{sid}.npy")
        assert array.dtype == np.float32 and list(array.shape) == back["packed_shape"] == held["scans"][sid]
        original = crop(np.load(data_dir / f"{sid}.npy"), meta["dims"], array.size, depth=4)
        assert original.shape == array.shape
        assert np.abs(array - original).max() <= (meta["max"] - meta["min"]) / LEVELS
        scan = PreparedScan.load(sid, out)  # what train/train.py reads
        assert scan.low == meta["min"] and scan.high == meta["max"]
    assert held["scans"]["ct"][0] == 4 and held["scans"]["fundus"][0] == 3


def test_a_larger_budget_keeps_more_of_each_scan(data_dir, tmp_path):
    small = pack(["ct", "xray"], tmp_path / "a.npz", budget_mb=0.03, depth=4, data_dir=data_dir)
    large = pack(["ct", "xray"], tmp_path / "b.npz", budget_mb=0.3, depth=4, data_dir=data_dir)
    assert np.prod(large["scans"]["xray"]) > np.prod(small["scans"]["xray"])
    assert small["bytes"] <= 0.03 * 2 ** 20 and large["bytes"] <= 0.3 * 2 ** 20


def test_bad_requests_get_one_sentence_and_nothing_is_overwritten(data_dir, tmp_path, capsys):
    archive = tmp_path / "scans.npz"
    pack(["ct"], archive, budget_mb=0.05, depth=4, data_dir=data_dir)
    with pytest.raises(ValueError, match="not prepared in"):
        pack(["ct", "nothing"], tmp_path / "x.npz", data_dir=data_dir)
    with pytest.raises(ValueError, match="do not fit in"):
        pack(["ct"], tmp_path / "y.npz", budget_mb=1e-5, data_dir=data_dir)
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "y.npz").exists()
    before = (data_dir / "ct.npy").read_bytes()
    with pytest.raises(ValueError, match="already holds 1 of these scans"):
        unpack(archive, data_dir)
    assert (data_dir / "ct.npy").read_bytes() == before
    assert main(["unpack", "--archive", str(tmp_path / "none.npz"), "--data-dir", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err.strip() == f"error: No packed data at {tmp_path / 'none.npz'}; pack it with " \
                                               "python train/device_data.py pack."
