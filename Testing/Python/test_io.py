"""Image I/O: round trips of geometry and values for every format, DICOM in physical units,
pixel-type rules, atomic writes, and one clear sentence for every bad input."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from LowLightDenoiseLib import io
from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.io import read_volume, same_file, supported_extensions, write_volume
from LowLightDenoiseLib.volume import Volume

REPO = Path(__file__).resolve().parents[2]

def _rotation(ax: float, ay: float, az: float, flip: bool = False) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    r = rz @ ry @ rx
    if flip:
        r = r @ np.diag([1.0, 1.0, -1.0])
    return r


OBLIQUE = tuple(_rotation(0.3, -0.2, 0.5).ravel())  # no column along an axis


def _one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith(".") and len(message) < 300, message
    assert "Traceback" not in message and "itk::" not in message, message


def _listing(folder: Path) -> List[str]:
    return sorted(os.listdir(folder))


def _ct_like(rng: np.random.Generator, shape=(5, 12, 10)) -> np.ndarray:
    return rng.integers(-1024, 3000, size=shape).astype(np.int16)


# --------------------------------------------------------------------------- the real crops

def test_real_crops_load_with_their_shapes_types_units_and_geometry(ct_path, mr_path, xray_path, fundus_path):
    ct = read_volume(ct_path)
    assert ct.array.shape == (12, 96, 96) and ct.array.dtype == np.int16 and not ct.is_2d
    assert ct.array.min() == -1024 and ct.array.max() > 1000  # air and bone in HU
    assert np.allclose(ct.spacing, (0.703125, 0.703125, 2.5))
    assert np.allclose(np.reshape(ct.direction, (3, 3)), np.diag([1, -1, 1]))
    assert ct.metadata["format"] == "nrrd"

    mr = read_volume(mr_path)
    assert mr.array.shape == (12, 96, 96) and mr.array.dtype == np.int16 and mr.array.min() >= 0
    d = np.reshape(mr.direction, (3, 3))
    assert abs(d[1, 2]) > 0.1  # oblique acquisition kept
    assert np.allclose(d @ d.T, np.eye(3), atol=1e-6)

    xray = read_volume(xray_path)
    assert xray.is_2d and xray.array.shape == (1, 128, 128) and xray.array.dtype == np.uint16
    assert xray.spacing[2] == 1.0 and xray.origin[2] == 0.0 and 1000 < xray.array.max() < 65535

    fundus = read_volume(fundus_path)
    assert fundus.is_color and fundus.array.shape == (1, 128, 128, 3) and fundus.array.dtype == np.uint8
    assert fundus.metadata["channels"] == "RGB"


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("ext", [".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd"])
@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_volumetric_formats_round_trip_geometry_and_values_exactly(tmp_path, ext, dtype):
    rng = np.random.default_rng(1)
    a = _ct_like(rng).astype(dtype) + (np.float32(0.25) if dtype == "float32" else 0)
    vol = Volume(a, spacing=(0.7, 0.8, 2.5), origin=(-12.5, 30.25, -190.0), direction=OBLIQUE)
    out = write_volume(vol, tmp_path / f"img{ext}")
    back = read_volume(out)
    tol = 1e-5 if ext.startswith(".nii") else 1e-12  # NIfTI stores geometry in float32
    assert back.array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.array, a)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=tol)
    np.testing.assert_allclose(back.origin, vol.origin, atol=tol * 100)
    np.testing.assert_allclose(back.direction, vol.direction, atol=tol)
    assert not any(n.endswith(".tmp") for n in _listing(tmp_path))


def test_metaimage_header_and_its_data_file_both_land_and_reread(tmp_path):
    vol = Volume(_ct_like(np.random.default_rng(2)), spacing=(1, 2, 3))
    write_volume(vol, tmp_path / "scan.mhd")
    assert _listing(tmp_path) == ["scan.mhd", "scan.zraw"]
    np.testing.assert_array_equal(read_volume(tmp_path / "scan.mhd").array, vol.array)


@given(
    fmt=st.sampled_from([".nrrd", ".nii.gz", ".mha"]),
    dtype=st.sampled_from(["uint8", "int8", "uint16", "int16", "int32", "float32", "float64"]),
    shape=st.tuples(st.integers(2, 4), st.integers(1, 6), st.integers(1, 6)),
    spacing=st.tuples(*[st.floats(0.05, 20.0)] * 3),
    origin=st.tuples(*[st.floats(-500.0, 500.0)] * 3),
    angles=st.tuples(*[st.floats(-np.pi, np.pi)] * 3),
    flip=st.booleans(),
    seed=st.integers(0, 2 ** 16),
)
@settings(max_examples=40, deadline=None)
def test_random_geometry_and_pixel_types_round_trip(fmt, dtype, shape, spacing, origin, angles, flip, seed):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        a = (rng.standard_normal(shape) * 1000).astype(dt)
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)
    vol = Volume(a, spacing=spacing, origin=origin, direction=tuple(_rotation(*angles, flip=flip).ravel()))
    with tempfile.TemporaryDirectory() as tmp:
        back = read_volume(write_volume(vol, Path(tmp) / f"v{fmt}"))
        assert _listing(Path(tmp)) == [f"v{fmt}"]
    rel = 1e-6 if fmt == ".nii.gz" else 1e-12
    assert back.array.dtype == dt
    np.testing.assert_array_equal(back.array, a)
    np.testing.assert_allclose(back.spacing, spacing, rtol=rel)
    np.testing.assert_allclose(back.origin, origin, rtol=rel, atol=1e-3 if fmt == ".nii.gz" else 1e-9)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-5 if fmt == ".nii.gz" else 1e-12)


@pytest.mark.parametrize("ext,dtype", [(".png", "uint8"), (".png", "uint16"), (".tif", "uint16"),
                                       (".tiff", "int16"), (".tif", "float32"), (".bmp", "uint8")])
def test_2d_formats_round_trip_values_exactly_as_2d_images(tmp_path, xray_path, ext, dtype):
    xray = read_volume(xray_path).array.astype(np.float64)
    a = (xray if dtype != "uint8" else xray / 40).astype(dtype)
    vol = Volume(a, spacing=(0.25, 0.5, 1.0))
    path = write_volume(vol, tmp_path / f"img{ext}")
    assert sitk.ReadImage(str(path)).GetDimension() == 2  # a 2D file, not a one-slice volume
    back = read_volume(path)
    assert back.is_2d and back.array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.array, a)
    if ext != ".bmp":  # BMP keeps no spacing
        np.testing.assert_allclose(back.spacing[:2], (0.25, 0.5), rtol=1e-6)


def test_tiff_stack_keeps_slices_values_and_pixel_spacing(tmp_path):
    a = _ct_like(np.random.default_rng(3))
    back = read_volume(write_volume(Volume(a, spacing=(0.5, 0.25, 3.0)), tmp_path / "stack.tif"))
    np.testing.assert_array_equal(back.array, a)
    np.testing.assert_allclose(back.spacing[:2], (0.5, 0.25), rtol=1e-6)


def test_rgb_png_round_trips_the_real_fundus_photo(tmp_path, fundus_path):
    fundus = read_volume(fundus_path)
    back = read_volume(write_volume(fundus, tmp_path / "f.png"))
    assert back.is_color and back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, fundus.array)
    for ext in (".nrrd", ".tif"):  # colour in volumetric and TIFF files too
        np.testing.assert_array_equal(read_volume(write_volume(fundus, tmp_path / f"f{ext}")).array, fundus.array)


def test_jpeg_round_trip_is_close_and_8_bit(tmp_path, fundus_path):
    fundus = read_volume(fundus_path)
    back = read_volume(write_volume(fundus, tmp_path / "f.jpg"))
    assert back.array.dtype == np.uint8 and back.array.shape == fundus.array.shape
    err = np.abs(back.array.astype(float) - fundus.array)
    assert err.mean() < 3.0  # lossy at quality 95, but close


def test_rgba_png_reads_as_rgb_with_alpha_dropped(tmp_path, fundus_path):
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(fundus_path)))
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], axis=-1)
    sitk.WriteImage(sitk.GetImageFromArray(rgba, isVector=True), str(tmp_path / "a.png"))
    vol = read_volume(tmp_path / "a.png")
    assert vol.array.shape == (1, 128, 128, 3) and vol.metadata["alpha_dropped"]
    np.testing.assert_array_equal(vol.array[0], rgb)


def test_grey_bmp_reads_back_as_one_channel(tmp_path):
    a = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / "g.bmp"))
    vol = read_volume(tmp_path / "g.bmp")
    assert vol.channels == 1
    np.testing.assert_array_equal(vol.array[0], a)


def test_single_slice_with_oblique_geometry_keeps_it_in_volumetric_formats(tmp_path):
    vol = Volume(np.arange(30, dtype=np.int16).reshape(1, 5, 6), origin=(1.0, 2.0, -55.5), direction=OBLIQUE)
    back = read_volume(write_volume(vol, tmp_path / "s.nrrd"))
    assert back.is_2d
    np.testing.assert_allclose(back.origin, vol.origin)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-12)
    flat = Volume(vol.array)
    write_volume(flat, tmp_path / "flat.nrrd")
    assert sitk.ReadImage(str(tmp_path / "flat.nrrd")).GetDimension() == 2


# --------------------------------------------------------------------------- pixel-type rules

def test_negative_hu_survive_as_int16_after_float_processing(tmp_path, ct_path):
    ct = read_volume(ct_path)
    processed = ct.with_array(ct.array.astype(np.float32) + 0.3)  # what the engine returns
    back = read_volume(write_volume(processed, tmp_path / "out.nrrd"))
    assert back.array.dtype == np.int16 and back.source_dtype == "int16"
    np.testing.assert_array_equal(back.array, ct.array)
    assert back.array.min() == -1024


def test_small_overshoots_are_clipped_and_values_that_do_not_fit_become_float32(tmp_path):
    a = np.array([[-1.2, 0.4, 128.6, 256.3]], dtype=np.float32)
    vol = Volume(a, source_dtype="uint8")
    assert io.output_dtype(vol, "nrrd") == np.uint8
    back = read_volume(write_volume(vol, tmp_path / "u8.nrrd"))
    np.testing.assert_array_equal(back.array[0], [[0, 0, 129, 255]])

    wide = Volume(np.array([[-40000.0, 5.5, 40000.0]], dtype=np.float32), source_dtype="int16")
    assert io.output_dtype(wide, "nrrd") == np.float32
    np.testing.assert_array_equal(read_volume(write_volume(wide, tmp_path / "w.nrrd")).array, wide.array)


def test_explicit_dtype_wins_and_restricted_formats_get_a_type_they_store():
    floats = Volume(np.linspace(0, 1000, 64, dtype=np.float64).reshape(8, 8))
    assert io.output_dtype(floats, "nrrd") == np.float64
    assert io.output_dtype(floats, "tiff") == np.float32
    assert io.output_dtype(floats, "png") == np.uint16
    assert io.output_dtype(floats, "nrrd", dtype="int32") == np.int32
    small = Volume(np.linspace(0, 200, 64, dtype=np.float32).reshape(8, 8))
    assert io.output_dtype(small, "jpeg") == np.uint8


def test_monochrome1_dicom_comes_out_as_monochrome2_inverted_once_over_the_stored_bits(tmp_path, xray_path):
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(xray_path)))  # real 15-bit radiograph values
    image = sitk.GetImageFromArray(stored[np.newaxis])
    image.SetMetaData("0008|0060", "CR")
    raw = tmp_path / "raw.dcm"
    sitk.WriteImage(image, str(raw))  # GDCM writes MONOCHROME2 and 16 bits whatever the tags say
    data = raw.read_bytes().replace(b"MONOCHROME2", b"MONOCHROME1")
    data = _set_us_tag(_set_us_tag(data, b"\x28\x00\x01\x01", 15), b"\x28\x00\x02\x01", 14)
    (tmp_path / "cr").write_bytes(data)  # no extension, as DICOM files often come
    vol = read_volume(tmp_path / "cr")
    assert vol.metadata["photometric"] == "MONOCHROME2" and vol.metadata["photometric_source"] == "MONOCHROME1"
    assert vol.metadata["bits_stored"] == 15 and vol.array.dtype == np.uint16
    np.testing.assert_array_equal(vol.array[0], (2 ** 15 - 1) - stored.astype(np.int64))


def _set_us_tag(data: bytes, tag: bytes, value: int) -> bytes:
    """Set a 2-byte US element in an implicit-VR little-endian DICOM file (what GDCM writes here)."""
    i = data.find(tag)
    assert i > 0 and struct.unpack("<I", data[i + 4:i + 8])[0] == 2
    return data[:i + 8] + struct.pack("<H", value) + data[i + 10:]


# --------------------------------------------------------------------------- DICOM series

def _write_dicom_series(folder: Path, hu: np.ndarray, spacing, origin, uid: str, names=None, positions=None) -> None:
    """CT series as GDCM writes it: stored = HU + 1024 with Rescale Intercept -1024, one file a slice."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    n = hu.shape[0]
    names = names or [f"slice{k:03d}.dcm" for k in range(n)]
    positions = positions or list(range(n))  # slice index of each file's position
    for k in range(n):
        s = image[:, :, k]
        tags = {"0008|0060": "CT", "0020|000d": uid, "0020|000e": uid + ".1", "0008|0018": f"{uid}.2.{k}",
                "0028|1052": "-1024", "0028|1053": "1", "0028|1054": "HU", "0020|0013": str(k + 1),
                "0020|0032": "\\".join(f"{c:.6f}" for c in image.TransformContinuousIndexToPhysicalPoint((0, 0, positions[k]))),
                "0020|0037": "1\\0\\0\\0\\1\\0", "0008|103e": "test series"}
        for key, value in tags.items():
            s.SetMetaData(key, value)
        writer.SetFileName(str(folder / names[k]))
        writer.Execute(s)


def test_dicom_series_reads_in_hu_with_slice_order_and_spacing(tmp_path, ct_path):
    ct = read_volume(ct_path).array[:5, :24, :20]
    uid = f"1.2.826.0.1.3680043.9.7433.{int(time.time())}"
    names = [f"{name}.dcm" for name in ("e", "a", "d", "b", "c")]  # file order is not slice order
    _write_dicom_series(tmp_path / "ct", ct, (0.7, 0.7, 2.5), (-20.0, 61.0, -190.0), uid, names)
    vol = read_volume(tmp_path / "ct")
    assert vol.array.dtype == np.int16 and vol.metadata["units"] == "HU" and vol.metadata["modality"] == "CT"
    np.testing.assert_array_equal(vol.array, ct)
    np.testing.assert_allclose(vol.spacing, (0.7, 0.7, 2.5), atol=1e-5)
    np.testing.assert_allclose(vol.origin, (-20.0, 61.0, -190.0), atol=1e-5)
    assert vol.metadata["rescale_intercept"] == -1024.0 and vol.metadata["files"] == 5
    assert "slice_spacing_range" not in vol.metadata

    one = read_volume(tmp_path / "ct" / names[2])  # a single file: one slice, its own position
    np.testing.assert_array_equal(one.array[0], ct[2])
    assert one.is_2d and one.origin[2] == pytest.approx(-190.0 + 2 * 2.5, abs=1e-4)


def test_a_dicom_series_with_a_missing_duplicated_or_cut_slice_is_refused(tmp_path, ct_path):
    """ITK would read these silently with a mean slice spacing (and the wrong slice count)."""
    ct = read_volume(ct_path).array[:5, :8, :8]
    uid = f"1.2.826.0.1.3680043.9.7433.{int(time.time())}.3"
    _write_dicom_series(tmp_path / "gap", ct[:4], (1.0, 1.0, 2.5), (0.0, 0.0, 0.0), uid, positions=[0, 1, 2, 4])
    with pytest.raises(InputError, match="uneven slice spacing, from 2.5 to 5 mm .about 1 slice.s. missing") as e:
        read_volume(tmp_path / "gap")
    _one_sentence(str(e.value))

    _write_dicom_series(tmp_path / "dup", ct, (1.0, 1.0, 2.5), (0.0, 0.0, 0.0), uid + ".1")
    (tmp_path / "dup" / "copy.dcm").write_bytes((tmp_path / "dup" / "slice002.dcm").read_bytes())
    with pytest.raises(InputError, match="two slices at the same position") as e:
        read_volume(tmp_path / "dup")
    _one_sentence(str(e.value))

    for k in (0, 2):  # a cut first slice leaves no gap: found as a DICOM file that cannot be read
        folder = tmp_path / f"cut{k}"
        _write_dicom_series(folder, ct, (1.0, 1.0, 2.5), (0.0, 0.0, 0.0), uid + f".2{k}")
        data = (folder / f"slice00{k}.dcm").read_bytes()
        (folder / f"slice00{k}.dcm").write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match=f"slice00{k}.dcm in .* cannot be read") as e:
            read_volume(folder)
        _one_sentence(str(e.value))
    assert read_volume(tmp_path / "dup" / "copy.dcm").array.shape == (1, 8, 8)  # one file still reads


def test_a_dicom_series_with_the_position_jitter_of_a_real_scanner_reads(tmp_path, ct_path):
    """A GE brain MR series writes gaps from 6.96 to 7.07 mm (1.6 %): a regular volume, not a refusal."""
    ct = read_volume(ct_path).array[:5, :8, :8]
    uid = f"1.2.826.0.1.3680043.9.7433.{int(time.time())}.7"
    _write_dicom_series(tmp_path / "jitter", ct, (1.0, 1.0, 2.5), (0.0, 0.0, 0.0), uid,
                        positions=[0, 1.016, 2.0, 2.99, 4.0])
    vol = read_volume(tmp_path / "jitter")
    np.testing.assert_array_equal(vol.array, ct)
    assert vol.spacing[2] == pytest.approx(2.5, rel=0.02)


def test_folder_with_two_series_reads_the_largest_or_the_one_asked_for(tmp_path, mr_path):
    mr = read_volume(mr_path).array[:, :16, :16]
    base = f"1.2.826.0.1.3680043.9.7433.{int(time.time())}"
    _write_dicom_series(tmp_path / "study" / "big", mr[:4], (1, 1, 3), (0, 0, 0), base + ".10")
    _write_dicom_series(tmp_path / "study" / "small", mr[6:8], (1, 1, 3), (0, 0, 0), base + ".20")
    vol = read_volume(tmp_path / "study")
    assert vol.metadata["series_count"] == 2 and vol.array.shape[0] == 4
    np.testing.assert_array_equal(vol.array, mr[:4])
    other = read_volume(tmp_path / "study", series_uid=base + ".20.1")
    np.testing.assert_array_equal(other.array, mr[6:8])
    with pytest.raises(InputError, match="is not in") as e:
        read_volume(tmp_path / "study", series_uid="1.2.3")
    _one_sentence(str(e.value))


def test_writing_dicom_is_refused_with_one_sentence(tmp_path, ct_path):
    with pytest.raises(InputError, match="Writing DICOM is not supported") as e:
        write_volume(read_volume(ct_path), tmp_path / "out.dcm")
    _one_sentence(str(e.value))
    assert _listing(tmp_path) == []


# --------------------------------------------------------------------------- atomic writes

def test_writer_failure_mid_write_leaves_no_output_and_no_temp_file(tmp_path, ct_path, monkeypatch):
    vol = read_volume(ct_path)

    def half_write(self, image):
        Path(self.GetFileName()).write_bytes(b"NRRD0004\npartial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", half_write)
    with pytest.raises(InputError, match="Could not write out.nrrd") as e:
        write_volume(vol, tmp_path / "out.nrrd")
    _one_sentence(str(e.value))
    assert _listing(tmp_path) == []


def test_failed_overwrite_keeps_the_previous_file_intact(tmp_path, ct_path, monkeypatch):
    vol = read_volume(ct_path)
    out = write_volume(vol, tmp_path / "out.nrrd")
    before = out.read_bytes()

    def fail(self, image):
        raise RuntimeError("boom")

    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", fail)
    with pytest.raises(InputError):
        write_volume(vol.with_array(vol.array * 0), out, overwrite=True)
    assert out.read_bytes() == before and _listing(tmp_path) == ["out.nrrd"]


def test_values_a_format_cannot_hold_are_refused_before_anything_is_written(tmp_path, ct_path):
    with pytest.raises(InputError, match="PNG stores values from 0 to 65535 only") as e:
        write_volume(read_volume(ct_path).with_array(read_volume(ct_path).array[:1]), tmp_path / "ct.png")
    _one_sentence(str(e.value))
    nan = Volume(np.array([[1.0, np.nan]], dtype=np.float32), source_dtype="int16")
    with pytest.raises(InputError, match="NaN"):
        write_volume(nan, tmp_path / "nan.nrrd", dtype="int16")
    assert _listing(tmp_path) == []


def test_existing_output_is_refused_unless_overwrite_is_asked(tmp_path, ct_path):
    vol = read_volume(ct_path)
    out = write_volume(vol, tmp_path / "out.nrrd")
    with pytest.raises(InputError, match="already exists") as e:
        write_volume(vol.with_array(vol.array * 0), out)
    _one_sentence(str(e.value))
    np.testing.assert_array_equal(read_volume(out).array, vol.array)
    write_volume(vol.with_array(np.zeros_like(vol.array)), out, overwrite=True)
    assert read_volume(out).array.max() == 0 and _listing(tmp_path) == ["out.nrrd"]


def test_writing_does_not_modify_the_volume(tmp_path, ct_path):
    vol = read_volume(ct_path)
    f = vol.with_array(vol.array.astype(np.float32) + 0.4)
    copy = f.array.copy()
    write_volume(f, tmp_path / "a.nrrd")
    np.testing.assert_array_equal(f.array, copy)


# --------------------------------------------------------------------------- errors and helpers

def test_each_bad_input_gives_one_clear_sentence(tmp_path):
    bad = tmp_path / "bad.nrrd"
    bad.write_bytes(b"this is not an image")
    four_d = sitk.GetImageFromArray(np.zeros((3, 2, 4, 5), np.float32), isVector=False)
    sitk.WriteImage(four_d, str(tmp_path / "t.nii.gz"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    (tmp_path / "x.xyz").write_text("?")
    cases = [
        (lambda: read_volume(tmp_path / "missing.nrrd"), "does not exist"),
        (lambda: read_volume(tmp_path / "x.xyz"), "is not supported"),
        (lambda: read_volume(bad), "damaged or not a valid NRRD image"),
        (lambda: read_volume(tmp_path / "t.nii.gz"), "4D image"),
        (lambda: read_volume(tmp_path / "empty"), "contains no DICOM series"),
        (lambda: read_volume(tmp_path / "notes"), "contains no DICOM series"),
        (lambda: write_volume(Volume(np.ones((2, 3, 3))), tmp_path / "o.xyz"), "is not supported"),
        (lambda: write_volume(Volume(np.ones((2, 3, 3))), tmp_path / "o.png"), "holds one 2D image"),
        (lambda: write_volume(Volume(np.ones((2, 3, 3))), tmp_path / "no" / "o.nrrd"), "does not exist"),
        (lambda: write_volume(Volume(np.ones((2, 3, 3))), tmp_path / "empty"), "is a folder"),
        (lambda: write_volume(Volume(np.ones((2, 3, 3))), tmp_path / "o.nrrd", dtype="complex64"),
         "cannot store complex64"),
        (lambda: write_volume(Volume(np.ones((1, 3, 3))), tmp_path / "o.jpg", dtype="uint16"),
         "JPEG files cannot store uint16"),
        (lambda: write_volume(Volume(np.ones((1, 3, 3, 4), np.uint8)), tmp_path / "o.jpg"),
         "cannot store an alpha channel"),
    ]
    for call, expected in cases:
        with pytest.raises(InputError) as e:
            call()
        assert expected in str(e.value), (expected, str(e.value))
        _one_sentence(str(e.value))
    assert not any(n.startswith("o.") or n.endswith(".tmp") for n in _listing(tmp_path))


def test_supported_extensions_list_every_format_and_dicom_only_for_reading():
    read, write = supported_extensions(), supported_extensions(write=True)
    for ext in (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd", ".dcm", ".png", ".tif", ".jpg", ".bmp"):
        assert ext in read
    assert ".dcm" not in write and ".nii.gz" in write
    assert io.file_format("A/B/Scan.NII.GZ") == "nifti" and io.file_format("x.gz") is None


def test_same_file_sees_through_relative_paths_and_links(tmp_path):
    a = tmp_path / "a.nrrd"
    a.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert same_file(a, tmp_path / "sub" / ".." / "a.nrrd")
    os.symlink(a, tmp_path / "link.nrrd")
    assert same_file(a, tmp_path / "link.nrrd")
    assert not same_file(a, tmp_path / "b.nrrd")
    assert same_file(tmp_path / "new.nrrd", tmp_path / "sub" / ".." / "new.nrrd")  # neither exists yet


# --------------------------------------------------------------------------- issue 17: bad input, safe output

@pytest.mark.parametrize("name", ["cut.nii", "cut.nii.gz"])
def test_a_truncated_nifti_is_refused_not_read_as_zeros(tmp_path, ct_path, name):
    sitk.WriteImage(sitk.ReadImage(str(ct_path)), str(tmp_path / name))
    data = (tmp_path / name).read_bytes()
    read_volume(tmp_path / name)  # whole, it reads
    (tmp_path / name).write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InputError, match="is truncated") as e:
        read_volume(tmp_path / name)
    _one_sentence(str(e.value))


def test_a_multi_member_gzip_nifti_is_whole(tmp_path, ct_path):
    """Some tools write .nii.gz as several gzip members: the trailer then holds the last member's size only."""
    import gzip

    sitk.WriteImage(sitk.ReadImage(str(ct_path)), str(tmp_path / "a.nii"))
    raw = (tmp_path / "a.nii").read_bytes()
    (tmp_path / "b.nii.gz").write_bytes(gzip.compress(raw[:5000]) + gzip.compress(raw[5000:]))
    np.testing.assert_array_equal(read_volume(tmp_path / "b.nii.gz").array, read_volume(ct_path).array)


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint32", "uint64"])
def test_integer_outputs_are_clipped_at_the_ends_of_their_type_never_wrapped(tmp_path, dtype):
    from LowLightDenoiseLib.pipeline import denoise_volume

    info = np.iinfo(dtype)
    a = np.zeros((4, 24, 24), dtype=dtype)
    a[:, :, 12:] = info.max  # a bright half at the type's maximum, a dark half at its minimum or zero
    a[:, :, :12] = info.min
    a[:, 5, 5] = info.max // 2
    out = denoise_volume(Volume(a), "gaussian", device="cpu").volume
    written = read_volume(write_volume(out, tmp_path / "o.nrrd"))
    assert written.array.dtype == np.dtype(dtype)
    assert written.array[:, :, 20:].min() > info.max // 2 and written.array.max() == info.max  # no wrap to min
    assert written.array[:, :, :3].max() < info.max // 4
    from LowLightDenoiseLib.io.writing import to_integer

    edge = np.array([float(info.max) * 1.5, float(info.max), float(info.min), float(info.min) - 1e6])
    np.testing.assert_array_equal(to_integer(edge.astype(np.float32), np.dtype(dtype)),
                                  np.array([info.max, info.max, info.min, info.min], dtype=dtype))


def test_a_two_component_volume_is_refused_but_grey_with_alpha_is_read(tmp_path):
    vec = np.random.default_rng(0).random((4, 16, 16, 2)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(vec, isVector=True), str(tmp_path / "v.nrrd"))
    with pytest.raises(InputError, match="2 values per pixel") as e:
        read_volume(tmp_path / "v.nrrd")
    _one_sentence(str(e.value))
    ga = np.zeros((16, 16, 2), np.uint8)
    ga[..., 0] = np.arange(16, dtype=np.uint8)[None] * 10
    ga[..., 1] = 255
    sitk.WriteImage(sitk.GetImageFromArray(ga, isVector=True), str(tmp_path / "ga.tif"))  # (ITK cannot read it as PNG)
    vol = read_volume(tmp_path / "ga.tif")
    assert vol.array.shape == (1, 16, 16) and vol.metadata["alpha_dropped"]


def test_a_pipe_or_a_device_is_refused_without_blocking(tmp_path):
    """Reading a FIFO would wait for a writer forever: refused from its type, in a child with a deadline."""
    fifo = tmp_path / "in.nrrd"
    os.mkfifo(fifo)
    code = ("import sys; from LowLightDenoiseLib.io import read_volume\n"
            "for p in sys.argv[1:]:\n"
            "    try: read_volume(p)\n"
            "    except Exception as e: print(type(e).__name__, e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(fifo), "/dev/zero"], capture_output=True, text=True,
                          timeout=60, cwd=str(REPO))
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"InputError The input {fifo} is a pipe, not an image file."
    assert lines[1] == "InputError The input /dev/zero is a device, not an image file."


def test_names_that_are_not_utf8_are_refused_before_itk_could_abort(tmp_path, ct_path):
    bad = os.fsdecode(bytes(tmp_path) + b"/out\xff.nrrd")
    with pytest.raises(InputError, match="not valid UTF-8") as e:
        write_volume(read_volume(ct_path), bad)
    _one_sentence(str(e.value))
    with pytest.raises(InputError, match="not valid UTF-8"):
        read_volume(os.fsdecode(bytes(tmp_path) + b"/in\xff.nrrd"))
    assert _listing(tmp_path) == []


def _gzip_bomb(path: Path, n: int) -> None:
    """An n x n x n uint8 NRRD of zeros, gzip-compressed: about n**3 / 1000 bytes on disk."""
    import zlib

    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        fh.write(f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: {n} {n} {n}\nencoding: gzip\n\n".encode())
        plane = bytes(n * n)
        for _ in range(n):
            fh.write(packer.compress(plane))
        fh.write(packer.flush())


def test_an_image_that_decodes_beyond_the_memory_left_is_refused_with_a_sentence(tmp_path, ct_path):
    """Under a 1.3 GB address-space limit, a 2 MB file that decodes to 512 MB cannot be read twice over."""
    bomb = tmp_path / "bomb.nrrd"
    _gzip_bomb(bomb, 800)
    assert bomb.stat().st_size < 3_000_000
    limit = 1300 * 2 ** 20

    def pre():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "LowLightDenoiseLib", "denoise", str(bomb), str(tmp_path / "o.nrrd"),
                           "--method", "gaussian", "-q"], capture_output=True, text=True, timeout=300, cwd=str(REPO),
                          env=env, preexec_fn=pre)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "800 x 800 x 800 image of 512.0 MB" in lines[0] and "memory" in lines[0], lines
    done = subprocess.run([sys.executable, "-m", "LowLightDenoiseLib", "denoise", str(ct_path),
                           str(tmp_path / "o.nrrd"), "--method", "gaussian", "-q"], capture_output=True, text=True, timeout=300, cwd=str(REPO),
                          env=env, preexec_fn=pre)
    assert done.returncode == 0, done.stderr  # an ordinary image still fits under the same limit
    assert sorted(os.listdir(tmp_path)) == ["bomb.nrrd", "o.nrrd"]


def test_a_16_bit_photograph_stays_16_bit_with_a_saturated_channel_clipped(tmp_path):
    rgb = np.zeros((1, 8, 8, 3), np.float32)
    rgb[..., 0] = 67710.0  # a saturated red channel pushed past white by a filter
    rgb[..., 1] = 1000.0
    out = write_volume(Volume(rgb, source_dtype="uint16"), tmp_path / "o.png")
    back = read_volume(out)
    assert back.array.dtype == np.uint16 and back.array[..., 0].max() == 65535 and back.array[..., 1].max() == 1000


def test_check_output_refuses_what_a_format_cannot_hold_before_anything_is_computed(tmp_path, ct_path):
    from LowLightDenoiseLib.io import check_output

    ct = read_volume(ct_path)
    for path, dtype, volume, words in [(tmp_path / "o.png", "complex64", None, "cannot store complex64"),
                                       (tmp_path / "o.png", None, ct, "holds one 2D image"),
                                       (tmp_path / "o.png", None, ct.with_array(ct.array[:1]), "stores values from 0"),
                                       (tmp_path / "o.dcm", None, None, "Writing DICOM"),
                                       (tmp_path / "none" / "o.nrrd", None, None, "does not exist")]:
        with pytest.raises(InputError, match=words) as e:
            check_output(path, dtype=dtype, volume=volume)
        _one_sentence(str(e.value))
    assert check_output(tmp_path / "o.nii.gz", dtype="float32", volume=ct) == (tmp_path / "o.nii.gz", "nifti")


def test_outputs_get_the_permissions_the_umask_gives(tmp_path, ct_path):
    from LowLightDenoiseLib.tables import write_table

    old = os.umask(0o027)
    try:
        write_volume(read_volume(ct_path), tmp_path / "v.nrrd")
        write_volume(read_volume(ct_path), tmp_path / "v.mhd")
        write_table(tmp_path / "t.csv", [{"a": 1}])
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"v.nrrd": 0o640, "v.mhd": 0o640, "v.zraw": 0o640, "t.csv": 0o640}


def test_write_volume_never_replaces_a_file_that_appeared_while_it_wrote(tmp_path, ct_path, monkeypatch):
    vol = read_volume(ct_path)
    real = sitk.ImageFileWriter.Execute

    def and_meanwhile(self, image):
        real(self, image)
        (tmp_path / "o.mhd").write_bytes(b"another writer")  # the header name, published by someone else

    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", and_meanwhile)
    with pytest.raises(InputError, match="already exists"):
        write_volume(vol, tmp_path / "o.mhd")
    assert (tmp_path / "o.mhd").read_bytes() == b"another writer"
    assert _listing(tmp_path) == ["o.mhd"]  # our data file was taken back, no temporary left


def test_files_behind_a_path_are_found_for_header_formats_and_dicom_folders(tmp_path, ct_path):
    from LowLightDenoiseLib.io import files_read, files_written

    assert files_written(tmp_path / "o.mhd") == [tmp_path / "o.zraw", tmp_path / "o.mhd"]
    assert files_written(tmp_path / "o.nhdr") == [tmp_path / "o.raw.gz", tmp_path / "o.nhdr"]
    assert files_written(tmp_path / "o.nrrd") == [tmp_path / "o.nrrd"]
    (tmp_path / "x.mhd").write_text("NDims = 3\nElementDataFile = LIST 2D\na.raw\nb.raw\n")
    assert files_read(tmp_path / "x.mhd") == [tmp_path / "x.mhd", tmp_path / "a.raw", tmp_path / "b.raw"]
    (tmp_path / "y.nhdr").write_text("NRRD0004\ntype: short\ndata file: s%02d.raw 1 3 1\n")
    assert files_read(tmp_path / "y.nhdr") == [tmp_path / f for f in ("y.nhdr", "s01.raw", "s02.raw", "s03.raw")]


def test_volume_geometry_is_checked_when_the_volume_is_made(tmp_path):
    a = np.ones((2, 3, 3), np.float32)
    for kwargs, words in [({"direction": (1, 0, 0, 1)}, "direction must be 9 numbers"),
                          ({"spacing": (1, 1)}, "spacing must be 3 numbers"),
                          ({"spacing": (0, 1, 1)}, "spacing must be positive"),
                          ({"origin": (0, 0, float("nan"))}, "origin must be finite"),
                          ({"direction": (1, 0, 0, 1, 0, 0, 1, 0, 0)}, "not a rotation"),
                          ({"array": None}, "array of pixel values"),
                          ({"array": "ct.nrrd"}, "array of pixel values"),
                          ({"array": np.array([["a"]])}, "numeric pixel values")]:
        with pytest.raises(InputError, match=words) as e:
            Volume(**dict({"array": a}, **kwargs))
        _one_sentence(str(e.value))
    with pytest.raises(InputError, match="needs a Volume"):
        write_volume(a, tmp_path / "o.nrrd")
    with pytest.raises(InputError, match="must be given as a file name"):
        read_volume(None)
    assert _listing(tmp_path) == []


def test_a_scaled_int16_nifti_is_whole_though_itk_reads_it_as_float(tmp_path, ct_path):
    """Many CT NIfTI files store int16 with scl_slope/scl_inter (the dev CT cxr.nii.gz does): ITK hands them
    over as float32, twice the bytes on disk, so the size check must use the header's own bitpix."""
    import gzip
    import struct

    sitk.WriteImage(sitk.ReadImage(str(ct_path)), str(tmp_path / "a.nii"))  # int16 HU
    raw = bytearray((tmp_path / "a.nii").read_bytes())
    assert struct.unpack("<h", raw[72:74])[0] == 16
    raw[112:120] = struct.pack("<ff", 0.5, -10.0)  # scl_slope, scl_inter: stored values are not HU
    (tmp_path / "s.nii").write_bytes(bytes(raw))
    (tmp_path / "s.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    expected = read_volume(ct_path).array.astype(np.float64) * 0.5 - 10.0
    for name in ("s.nii", "s.nii.gz"):
        volume = read_volume(tmp_path / name)
        np.testing.assert_allclose(volume.array, expected)
    (tmp_path / "cut.nii").write_bytes(bytes(raw[: int(len(raw) * 0.6)]))
    with pytest.raises(InputError, match="is truncated"):
        read_volume(tmp_path / "cut.nii")
