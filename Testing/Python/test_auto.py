"""``--method auto``: the noise classified once per volume, the matched method run, the choice in the table.

Real crops of Testing/Data, degraded by the library's simulator; the command line runs in-process
(``cli.main``) on real files.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from LowLightDenoiseLib import DEFAULT_METHOD, DEFAULT_MODEL, cli
from LowLightDenoiseLib.degrade import LowLight, SaltPepper, Speckle, simulate_volume
from LowLightDenoiseLib.io import read_volume
from LowLightDenoiseLib.methods import Method, MethodContext, get_method, list_methods
from LowLightDenoiseLib.methods.auto import AUTO_NAME, ROUTES, AutoMethod, Route, choose_route
from LowLightDenoiseLib.methods.logdomain import LogDomain, from_log, to_log
from LowLightDenoiseLib.noise import CLASSIFIER_PATH, NoiseProfile
from LowLightDenoiseLib.volume import Volume


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows_of(path: Path):
    return {r["method"]: r for r in json.loads(path.read_text())}


def test_auto_is_the_default_and_listed(capsys):
    assert DEFAULT_METHOD == AUTO_NAME and DEFAULT_MODEL == "default-2d"
    assert list_methods()[0]["name"] == AUTO_NAME
    code, out, err = run(capsys, "methods")
    assert code == 0, err
    assert any(line.split()[:2] == ["auto", "automatic"] for line in out.splitlines())


@pytest.mark.parametrize("crop", ["ct", "mr"])
@pytest.mark.parametrize("peak", [300, 100, 30])
def test_photon_noise_on_the_real_crops_routes_to_the_default_model(crop, peak, ct_path, mr_path):
    """The classifier fires once per volume: a photon-noise case read as anything else would leave the default."""
    clean = read_volume(ct_path if crop == "ct" else mr_path)
    noisy = simulate_volume(clean, LowLight(peak=peak, read_noise=1.0), seed=1)
    choice = AutoMethod().choose(noisy)
    assert choice.route == DEFAULT_MODEL, choice


def test_salt_and_pepper_on_the_mr_crop_routes_to_median_and_beats_the_default(capsys, tmp_path, mr_path):
    pytest.importorskip("torch")
    noisy = tmp_path / "mr_sp.nrrd"
    assert run(capsys, "simulate", mr_path, noisy, "--noise", "salt_pepper", "--amount", 0.05, "--seed", 1)[0] == 0
    code, out, err = run(capsys, "compare", noisy, "--methods", "auto,default-2d,median", "--reference", mr_path,
                         "--json", tmp_path / "table.json")
    assert code == 0, err
    rows = rows_of(tmp_path / "table.json")
    auto = rows["auto"]
    assert auto["route"] == "median" and auto["noise_type"] == "salt_pepper"
    assert ROUTES["salt_pepper"].min_probability <= auto["noise_probability"] <= 1.0
    assert auto["psnr"] == pytest.approx(rows["median"]["psnr"])  # the same method ran
    assert auto["psnr"] > rows["default-2d"]["psnr"] + 3.0  # 32.8 against 25.9 dB when written
    assert "warnings" not in auto or not auto["warnings"]


def test_auto_classifies_slices_along_the_runs_axis_and_checks_the_mode_before_loading(mr_path):
    """A volume stored with its slices along axis 1 is classified on those slices (it was always axis 0, where a
    thin volume is 'too small to classify'); a mode auto cannot run is refused before any model loads."""
    from LowLightDenoiseLib.errors import InputError
    from LowLightDenoiseLib.pipeline import denoise_volume

    clean = read_volume(mr_path)
    noisy = simulate_volume(clean, SaltPepper(amount=0.05), seed=1)
    turned = Volume(np.ascontiguousarray(np.moveaxis(noisy.array, 0, 1)), spacing=noisy.spacing)
    straight = AutoMethod().choose(noisy)
    along = AutoMethod().choose(turned, axis=1)
    assert straight.route == along.route == "median"
    assert along.probability == pytest.approx(straight.probability, abs=1e-6)
    result = denoise_volume(turned, "auto", mode="2d", axis=1, device="cpu")
    assert result.summary()["route"] == "median"
    loads = []
    method = get_method("auto")
    method.loader = lambda name, device="cpu": loads.append(name)
    with pytest.raises(InputError, match="works on 2D slices only"):
        denoise_volume(noisy, method, mode="3d", device="cpu")
    assert loads == []


def test_photon_noise_on_the_ct_crop_runs_the_default_model_unchanged(capsys, tmp_path, ct_path):
    """Without --method the command runs auto; on photon noise its output is default-2d's, voxel for voxel."""
    pytest.importorskip("torch")
    noisy, a, b = tmp_path / "low.nrrd", tmp_path / "auto.nrrd", tmp_path / "model.nrrd"
    assert run(capsys, "simulate", ct_path, noisy, "--peak", 100, "--read-noise", 1, "--seed", 1)[0] == 0
    code, out, err = run(capsys, "denoise", noisy, a, "--reference", ct_path, "--metrics", tmp_path / "m.json")
    assert code == 0, err
    row = rows_of(tmp_path / "m.json")["auto"]
    assert row["route"] == DEFAULT_MODEL and row["noise_type"] == "poisson" and 0 < row["noise_probability"] <= 1
    assert run(capsys, "denoise", noisy, b, "--method", DEFAULT_MODEL)[0] == 0
    assert np.array_equal(read_volume(a).array, read_volume(b).array)


def _renamed_classifier(tmp_path: Path, old: str, new: str) -> Path:
    params = json.loads(Path(CLASSIFIER_PATH).read_text())
    params["labels"] = [new if label == old else label for label in params["labels"]]
    path = tmp_path / "classifier.json"
    path.write_text(json.dumps(params))
    return path


def test_a_label_without_a_route_falls_back_to_the_default_model_and_says_so(tmp_path, ct_path):
    noisy = simulate_volume(read_volume(ct_path), LowLight(peak=100, read_noise=1.0), seed=1)
    method = get_method("auto", classifier_path=_renamed_classifier(tmp_path, "poisson", "dim_light"))
    choice = method.choose(noisy)
    assert (choice.label, choice.route) == ("dim_light", DEFAULT_MODEL)
    assert "dim_light" in choice.note and "has no route" in choice.note and DEFAULT_MODEL in choice.note
    pytest.importorskip("torch")
    from LowLightDenoiseLib.evaluation import run_methods

    row = run_methods(noisy, [method]).rows[0]
    assert (row["method"], row["route"], row["noise_type"]) == ("auto", DEFAULT_MODEL, "dim_light")
    assert choice.note in row["warnings"]


def test_an_unsure_route_or_an_unclassifiable_image_runs_the_default_model():
    sure, unsure = choose_route("speckle", 0.9), choose_route("speckle", 0.55)
    assert sure.route == ROUTES["speckle"].method and sure.note is None
    assert unsure.route == DEFAULT_MODEL and "0.55" in unsure.note
    assert choose_route("poisson", 0.2).route == DEFAULT_MODEL  # the default needs no confidence
    tiny = Volume(np.random.default_rng(0).random((1, 6, 6)).astype(np.float32))
    choice = AutoMethod().choose(tiny)
    assert choice.route == DEFAULT_MODEL and "could not be classified" in choice.note


def test_a_colour_photograph_takes_one_route_for_all_channels(fundus_path):
    noisy = simulate_volume(read_volume(fundus_path), SaltPepper(amount=0.05), seed=3)
    assert noisy.is_color
    choice = AutoMethod().choose(noisy)
    assert (choice.label, choice.route) == ("salt_pepper", "median")


def test_routes_delegate_to_a_method_chosen_once_per_volume(mr_path):
    """The engine runs the chosen method; a fake loader shows which one (no model needed)."""
    from LowLightDenoiseLib.pipeline import denoise_volume

    loaded = []

    def loader(name, device="cpu"):
        loaded.append(name)
        return get_method("median" if name == DEFAULT_MODEL else name)

    method = AutoMethod(loader=loader, routes={"salt_pepper": Route("wavelet", 0.5)})
    noisy = simulate_volume(read_volume(mr_path), SaltPepper(amount=0.05), seed=1)
    result = denoise_volume(noisy, method, mode="2d", flips=2, slice_batch=4)
    assert loaded == ["wavelet"] and result.method == "auto" and result.columns["route"] == "wavelet"
    expected = denoise_volume(noisy, "wavelet", mode="2d", flips=2, slice_batch=4)
    assert np.array_equal(result.volume.array, expected.volume.array)
    with pytest.raises(Exception, match="2D slices only"):
        denoise_volume(noisy, method, mode="3d")


class _Identity(Method):
    name, title = "identity", "returns its block"

    def apply(self, block, context):
        return np.array(block, dtype=np.float32)


def test_the_log_domain_round_trip_and_strength_zero_keep_the_image():
    x = np.linspace(-0.05, 1.2, 4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16)
    assert np.allclose(from_log(to_log(np.maximum(x, 0))), np.maximum(x, 0), atol=1e-5)
    context = MethodContext(spatial_dims=2, noise=NoiseProfile(0.05))
    assert np.allclose(LogDomain(_Identity(), sigma=0.0).apply(x, context), x, atol=1e-5)
    off = MethodContext(spatial_dims=2, noise=NoiseProfile(0.05), strength=0)
    assert np.array_equal(LogDomain(_Identity(), sigma=0.1).apply(x, off), x)


def test_speckle_in_the_log_domain_keeps_the_mean_and_removes_noise(ct_path):
    """default-2d's classical stand-in (wavelet) in the log domain on speckled CT: means kept, noise down."""
    from LowLightDenoiseLib.metrics import psnr
    from LowLightDenoiseLib.pipeline import denoise_volume

    clean = read_volume(ct_path)
    noisy = simulate_volume(clean, Speckle(sigma=0.3), seed=2)
    out = denoise_volume(noisy, LogDomain(get_method("wavelet")), mode="2d").volume.array
    bright = clean.array > np.percentile(clean.array, 60)
    assert abs(out[bright].mean() - clean.array[bright].mean()) < 0.03 * np.ptp(clean.array)
    assert psnr(out, clean.array) > psnr(noisy.array, clean.array) + 5


def test_the_routing_thresholds_were_measured_with_the_shipped_classifier():
    """ROUTES' probabilities belong to one classifier: a new NoiseClassifier.json needs the routing measured again."""
    from LowLightDenoiseLib.files import sha256_of

    measured = json.loads((Path(__file__).resolve().parents[2] / "train/reports/routing.json").read_text())
    assert measured["classifier_sha256"] == sha256_of(CLASSIFIER_PATH), (
        "Resources/NoiseClassifier.json changed since train/reports/routing.md was measured: run "
        "train/routing_report.py again (its docstring has the test and validation commands) and check the "
        "thresholds of LowLightDenoiseLib/methods/auto.py ROUTES.")
    assert measured["decision"]["auto_never_worse"] and measured["routes"]["speckle"]["min_probability"] == \
        ROUTES["speckle"].min_probability


def test_the_module_and_batch_know_auto():
    from LowLightDenoiseLib import mrml
    from LowLightDenoiseLib.batch.sidecar import method_identity

    assert mrml.method_choices()[0][:2] == ("auto", "Automatic")
    assert mrml.needs_torch(["auto"]) and mrml.needs_torch([" AUTO "])
    identity = method_identity("auto")
    assert identity["kind"] == "automatic" and identity["model"]["name"] == DEFAULT_MODEL
    with pytest.raises(Exception, match="has no option"):
        get_method("auto", calibrate=True)


def test_a_clean_scan_is_low_noise_and_runs_the_default_model_without_a_warning(ct_path):
    """Issue 12's classifier labels a clean scan ``low_noise``; auto had no route for it and warned on every
    clean scan that 'low_noise' has no route."""
    clean = read_volume(str(ct_path))
    routed = get_method("auto").for_volume(clean)
    assert routed.choice.label == "low_noise" and routed.choice.route == DEFAULT_MODEL
    assert routed.choice.note is None
