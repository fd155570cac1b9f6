"""The benchmark command: a quick smoke run on the real crops, its report files and tables, and its helpers."""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from LowLightDenoiseLib import benchmark
from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.volume import Volume


def _args(argv):
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory, request):
    """One quick run on copies of the real CT and X-ray crops, shared by the report tests."""
    data_dir = Path(request.config.rootpath) / "Testing" / "Data"
    data = tmp_path_factory.mktemp("data")
    shutil.copy(data_dir / "ct_chest_crop.nrrd", data)
    shutil.copy(data_dir / "xray_chest_crop.png", data)
    out = tmp_path_factory.mktemp("report")
    argv = ["--data", str(data), "--quick", "--methods", "gaussian,median", "--speed-methods", "gaussian",
            "--resolutions", "48", "--out", str(out), "--quiet"]
    saved = sys.argv
    sys.argv = ["lowlightdenoise", "benchmark"] + argv
    try:
        assert benchmark.run(_args(argv)) == 0
    finally:
        sys.argv = saved
    return out


def _rows(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_quick_run_writes_every_report_file(quick_report):
    for name in ("report.md", "quality.csv", "quality.json", "speed.csv", "speed.json", "summary.json"):
        assert (quick_report / name).stat().st_size > 0, name
    figures = {p.name for p in (quick_report / "figures").glob("*.png")}
    assert {"compare_ct.png", "residuals_ct.png", "histogram_ct.png", "surface_ct.png", "compare_xray.png",
            "psnr_bars_volumes.png", "ssim_bars_2d_images.png", "time_bars.png"} <= figures
    assert not (quick_report / "_work").exists(), "the speed volume and outputs are cleaned up"
    assert not list(quick_report.rglob("*.tmp*")), "no temporary files left"


def test_quality_table_has_every_scan_method_and_mode(quick_report):
    rows = [r for r in _rows(quick_report / "quality.csv") if r["resized"] == "False"]
    keys = {(r["scan"], r["method"], r["mode"]) for r in rows}
    # the CT crop (8 slices in quick mode) runs 2D and 3D; the 2D radiograph only 2D
    assert {("ct_chest_crop", "gaussian", "2d"), ("ct_chest_crop", "gaussian", "3d"),
            ("ct_chest_crop", "median", "2d"), ("ct_chest_crop", "median", "3d"),
            ("ct_chest_crop", "noisy input", "-"), ("xray_chest_crop", "gaussian", "2d"),
            ("xray_chest_crop", "median", "2d"), ("xray_chest_crop", "noisy input", "-")} == keys
    assert {r["degradation"] for r in rows} == {"peak 100"}
    assert {r["modality"] for r in rows} == {"CT", "X-ray"}
    for r in rows:
        assert float(r["psnr"]) > 0 and 0 < float(r["ssim"]) <= 1 and float(r["mse"]) > 0


def test_resized_variants_feed_only_the_resolution_table(quick_report):
    rows = _rows(quick_report / "quality.csv")
    assert {r["resolution"] for r in rows} == {"96 x 96 crop", "128 x 128 crop", "48 px whole, resized"}
    summary = json.loads((quick_report / "summary.json").read_text())
    noisy = [(r["data"], r["n"]) for r in summary["by_method_level"] if r["method"] == "noisy input"]
    assert noisy == [("volumes", 1), ("2D images", 1)], "main tables: native scans only, volumes apart from 2D"
    assert {r["resolution"] for r in summary["by_resolution"]} == {r["resolution"] for r in rows}
    # a 3D-only method must not top a column averaged over other scans: resolutions are summarised per data kind
    assert {(r["data"], r["resolution"]) for r in summary["by_resolution"] if r["method"] == "noisy input"} == {
        ("volumes", "96 x 96 crop"), ("volumes", "48 px whole, resized"), ("2D images", "128 x 128 crop"),
        ("2D images", "48 px whole, resized")}
    text = (quick_report / "report.md").read_text()
    section = text.split("## PSNR (dB) per image resolution")[1].split("## Per architecture")[0]
    assert "### volumes" in section and "### 2D images" in section


def test_gaussian_filter_beats_the_noisy_input_on_real_crops(quick_report):
    rows = json.loads((quick_report / "quality.json").read_text())
    for scan in ("ct_chest_crop", "xray_chest_crop"):
        noisy = next(r for r in rows if r["scan"] == scan and r["method"] == "noisy input")
        filtered = next(r for r in rows if r["scan"] == scan and r["method"] == "gaussian" and r["mode"] == "2d")
        assert filtered["psnr"] > noisy["psnr"] + 1.0
        assert filtered["mse"] < noisy["mse"]


def test_report_states_command_machine_date_and_gpu(quick_report):
    text = (quick_report / "report.md").read_text()
    assert "Command: `lowlightdenoise benchmark --data " in text and "--quick" in text
    assert "torch " in text and "threads" in text and "Date: " in text and "CPU cores" in text
    assert "| gaussian | denoise | 2d |" in text and "| noisy input | - | - |" in text
    assert "## PSNR (dB) per modality" in text and "| CT | X-ray |" in text
    assert "## PSNR (dB) per image resolution" in text
    assert "### PSNR (dB), volumes (ct_chest_crop)" in text and "### SSIM, 2D images (xray_chest_crop)" in text
    import torch

    if not torch.cuda.is_available():
        assert "not measured: no GPU" in text
    summary = json.loads((quick_report / "summary.json").read_text())
    assert summary["machine"]["torch"] == torch.__version__


def test_speed_row_measures_file_to_file_in_a_child_process(quick_report):
    rows = _rows(quick_report / "speed.csv")
    assert [(r["method"], r["device"]) for r in rows] == [("gaussian", "cpu")]
    r = rows[0]
    assert int(r["voxels"]) == 24 * 96 * 96
    assert float(r["end_to_end_s"]) >= float(r["denoise_s"]) > 0
    assert float(r["peak_rss_mb"]) >= float(r["baseline_rss_mb"]) > 10
    summary = json.loads((quick_report / "summary.json").read_text())
    ram = summary["speed_targets"][0]["ram"]
    assert ram["met"] == (ram["peak_mb"] <= ram["limit_mb"])


@given(n=st.integers(1, 20), depth=st.integers(1, 70))
@settings(max_examples=60, deadline=None)
def test_reflect_to_depth_mirrors_without_jumps(n, depth):
    a = np.arange(n)[:, None, None] * np.ones((1, 2, 2))
    out = benchmark.reflect_to_depth(a, depth)
    assert out.shape == (depth, 2, 2)
    k = min(n, depth)
    assert np.array_equal(out[:k], a[:k])
    steps = np.abs(np.diff(out[:, 0, 0]))
    assert np.all(steps == (1 if n > 1 else 0)), "neighbouring slices stay neighbours"


def test_speed_volume_is_built_from_the_real_ct_by_reflection(ct_path, tmp_path):
    path, how = benchmark.build_speed_volume(ct_path, (30, 64, 80), tmp_path / "v.nrrd")
    from LowLightDenoiseLib import io

    vol = io.read_volume(path)
    src = io.read_volume(ct_path)
    assert vol.array.shape == (30, 64, 80)
    assert np.array_equal(vol.array[:12], src.array[:, 16:80, 8:88])
    assert np.array_equal(vol.array[12], src.array[10, 16:80, 8:88])
    assert "mirror reflection" in how and "int16" in how


def test_prepared_colour_photo_loads_as_a_colour_volume(tmp_path):
    rgb = np.random.default_rng(0).random((3, 20, 30)).astype(np.float32)
    np.save(tmp_path / "photo_x.npy", rgb)
    (tmp_path / "photo_x.json").write_text(json.dumps({"modality": "photo", "dims": 2, "channels": 3,
                                                        "spacing_xyz": [0.5, 0.5, 1.0]}))
    vol = benchmark.load_scan(tmp_path / "photo_x.npy")
    assert vol.is_color and vol.is_2d and vol.array.shape == (1, 20, 30, 3)
    assert np.array_equal(vol.array[0, ..., 1], rgb[1])
    assert vol.spacing == (0.5, 0.5, 1.0)
    scans = benchmark._folder_scans(tmp_path)
    assert [(s.name, s.modality) for s in scans] == [("photo_x", "photo")]


def test_prepare_clean_crops_centre_and_resizes(phantom3d):
    vol = Volume(phantom3d, spacing=(1.0, 1.0, 2.0))
    small = benchmark.prepare_clean(vol, max_slices=8, crop=32, resolution=None)
    assert small.array.shape == (8, 32, 32)
    assert np.array_equal(small.array, phantom3d[4:12, 8:40, 8:40])
    resized = benchmark.prepare_clean(vol, max_slices=0, crop=32, resolution=24)
    assert resized.array.shape == (16, 24, 24) and resized.spacing == (2.0, 2.0, 2.0), "whole slice, resized"
    assert abs(float(resized.array.mean()) - float(phantom3d.mean())) < 0.02
    assert vol.array is phantom3d, "input untouched"


def test_summarise_means_per_group():
    rows = [{"method": "a", "psnr": 30.0, "ssim": 0.5, "mse": 2.0, "mvoxels_per_s": 1.0},
            {"method": "a", "psnr": 32.0, "ssim": 0.7, "mse": 4.0, "mvoxels_per_s": None},
            {"method": "b", "psnr": 20.0, "ssim": 0.1, "mse": 9.0, "mvoxels_per_s": 3.0}]
    out = benchmark.summarise(rows, ("method",))
    assert out[0] == {"method": "a", "n": 2, "psnr": 31.0, "ssim": 0.6, "mse": 3.0, "mvoxels_per_s": 1.0}
    assert out[1]["method"] == "b" and out[1]["psnr"] == 20.0


@pytest.mark.parametrize("argv, message", [
    (["--levels", "100,abc"], "--levels"),
    (["--levels", "0"], "positive"),
    (["--noise", "purple"], "Unknown noise type"),
    (["--modes", "4d"], "--modes"),
    (["--speed-shape", "10,20"], "three"),
])
def test_bad_arguments_give_one_sentence(argv, message, tmp_path):
    with pytest.raises(InputError, match=message):
        benchmark.BenchmarkConfig.from_args(_args(argv + ["--out", str(tmp_path / "r")]))
    assert not (tmp_path / "r").exists()


def test_unknown_method_is_refused_before_any_work(tmp_path, ct_path):
    args = _args(["--data", str(ct_path.parent), "--methods", "gaussian,no-such-method", "--out", str(tmp_path / "r"),
                  "--quiet", "--no-speed"])
    with pytest.raises(InputError, match="no-such-method"):
        benchmark.run(args)
    assert not (tmp_path / "r").exists()


def test_modality_guess_from_metadata_and_names():
    assert benchmark.guess_modality("x", {"modality": "CR"}) == "X-ray"
    assert benchmark.guess_modality("ct_chest_crop.nrrd") == "CT"
    assert benchmark.guess_modality("cxr.nii.gz") == "CT"
    assert benchmark.guess_modality("mr_brain_crop.nrrd") == "MR"
    assert benchmark.guess_modality("fundus_crop.png") == "fundus photo"
    assert benchmark.display_modality("xray") == "X-ray"


def test_learned_model_gets_architecture_row_speed_and_feature_maps(tmp_path, monkeypatch, ct_path):
    """A tiny registered model (random weights) goes through quality, speed, the per-architecture
    table and the first-layer feature-map figure."""
    import hashlib

    from LowLightDenoiseLib.models.spec import ModelSpec, save_weights
    from LowLightDenoiseLib.models.networks import count_parameters

    spec = ModelSpec(name="tiny-2d", architecture="dncnn", spatial_dims=2, network={"features": 6, "depth": 3},
                     input={"noise_map": True}, min_size=8)
    net = spec.build_network()
    models = tmp_path / "models"
    models.mkdir()
    weights = save_weights(models / "tiny.safetensors", net, spec)
    entry = dict(spec.to_dict(), file=weights.name, sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
                 size=weights.stat().st_size, training={"seconds": 12.5})
    registry = tmp_path / "Models.json"
    registry.write_text(json.dumps({"schema_version": 1, "models": [entry]}))
    monkeypatch.setenv("LOWLIGHTDENOISE_REGISTRY", str(registry))
    monkeypatch.setenv("LOWLIGHTDENOISE_MODELS_DIR", str(models))
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(ct_path, data)
    out = tmp_path / "report"
    args = _args(["--data", str(data), "--quick", "--methods", "gaussian,tiny-2d", "--speed-methods", "tiny-2d",
                  "--out", str(out), "--quiet"])
    assert benchmark.run(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    arch = summary["architectures"]
    assert len(arch) == 1 and arch[0]["model"] == "tiny-2d" and arch[0]["architecture"] == "dncnn"
    assert arch[0]["parameters"] == count_parameters(net)
    assert arch[0]["training_time"] == "12.5 s"
    assert arch[0]["speed_mvoxels_per_s"]["cpu"] > 0
    rows = json.loads((out / "quality.json").read_text())
    assert {r["mode"] for r in rows if r["method"] == "tiny-2d"} == {"2d"}, "a 2D model runs in 2D mode only"
    assert (out / "figures" / "feature_maps.png").stat().st_size > 0
    assert "| tiny-2d | dncnn |" in (out / "report.md").read_text()


def test_every_extra_noise_type_builds_and_degrades(ct_path):
    from LowLightDenoiseLib import io
    from LowLightDenoiseLib.degrade import simulate_volume

    clean = io.read_volume(ct_path)
    cfg = benchmark.BenchmarkConfig.from_args(_args(["--noise", ",".join(benchmark.EXTRA_NOISE), "--out", "unused"]))
    degs = benchmark.degradations(cfg)
    assert [d.kind for d in degs] == ["lowlight"] * 3 + list(benchmark.EXTRA_NOISE)
    for d in degs:
        noisy = simulate_volume(clean, d.build(), seed=1)
        assert noisy.array.shape == clean.array.shape and not np.array_equal(noisy.array, clean.array)
        if d.kind == "dark":
            assert noisy.array.mean() < clean.array.mean(), "the dark degradation darkens"
