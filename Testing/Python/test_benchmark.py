"""The benchmark package: a quick smoke run on the real crops (speed in real child processes), its report
files and tables, its helpers, its refusal of missing locations, and its independence from the repository."""
from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from LowLightDenoiseLib import bench
from LowLightDenoiseLib.bench import config, quality, report, scans, speed
from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.volume import Volume

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "LowLightDenoiseLib" / "bench"


def _args(argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
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
            "--speed-source", str(data_dir / "ct_chest_crop.nrrd"), "--resolutions", "48", "--out", str(out),
            "--quiet"]
    saved = sys.argv
    sys.argv = ["lowlightdenoise", "benchmark"] + argv
    try:
        assert bench.run(_args(argv)) == 0
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
    assert not r.get("error"), r.get("error")
    assert int(r["voxels"]) == 24 * 96 * 96 and r["mode"] == "2d"
    assert float(r["end_to_end_s"]) >= float(r["denoise_s"]) > 0
    assert float(r["peak_rss_mb"]) >= float(r["baseline_rss_mb"]) > 10
    if sys.platform.startswith("linux"):
        assert r["rss_source"] == "VmHWM", "the child's own high-water mark, not one inherited from the parent"
    text = (quick_report / "report.md").read_text()
    assert "`ct_chest_crop.nrrd` (96 x 96 x 12 x,y,z), extended to 24 slices by mirror reflection" in text
    assert "target" not in text.lower(), "the library measures; judging against targets is the project's business"


def test_speed_child_runs_as_its_own_process_and_reports_errors(tmp_path, ct_path):
    """The child command line works by itself; a failing child is a row with its last error line."""
    row = speed.run_speed_child("median", ct_path, tmp_path / "out.nrrd", "cpu", 1, 120)
    assert not row.get("error") and row["threads"] == 1 and row["voxels"] == 12 * 96 * 96
    from LowLightDenoiseLib import io

    assert io.read_volume(tmp_path / "out.nrrd").array.shape == (12, 96, 96)
    failed = speed.run_speed_child("median", tmp_path / "missing.nrrd", tmp_path / "o.nrrd", "cpu", 1, 120)
    assert failed["error"].startswith("exit code 1:") and "missing.nrrd" in failed["error"]


@given(n=st.integers(1, 20), depth=st.integers(1, 70))
@settings(max_examples=60, deadline=None)
def test_reflect_to_depth_mirrors_without_jumps(n, depth):
    a = np.arange(n)[:, None, None] * np.ones((1, 2, 2))
    out = speed.reflect_to_depth(a, depth)
    assert out.shape == (depth, 2, 2)
    k = min(n, depth)
    assert np.array_equal(out[:k], a[:k])
    steps = np.abs(np.diff(out[:, 0, 0]))
    assert np.all(steps == (1 if n > 1 else 0)), "neighbouring slices stay neighbours"


def test_speed_volume_is_built_from_the_real_ct_by_reflection(ct_path, tmp_path):
    path, how = speed.build_speed_volume(ct_path, (30, 64, 80), tmp_path / "v.nrrd")
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
    vol = scans.load_scan(tmp_path / "photo_x.npy")
    assert vol.is_color and vol.is_2d and vol.array.shape == (1, 20, 30, 3)
    assert np.array_equal(vol.array[0, ..., 1], rgb[1])
    assert vol.spacing == (0.5, 0.5, 1.0)
    found = scans.folder_scans(tmp_path)
    assert [(s.name, s.modality) for s in found] == [("photo_x", "photo")]


def test_prepare_clean_crops_centre_and_resizes(phantom3d):
    vol = Volume(phantom3d, spacing=(1.0, 1.0, 2.0))
    small = scans.prepare_clean(vol, max_slices=8, crop=32, resolution=None)
    assert small.array.shape == (8, 32, 32)
    assert np.array_equal(small.array, phantom3d[4:12, 8:40, 8:40])
    resized = scans.prepare_clean(vol, max_slices=0, crop=32, resolution=24)
    assert resized.array.shape == (16, 24, 24) and resized.spacing == (2.0, 2.0, 2.0), "whole slice, resized"
    assert abs(float(resized.array.mean()) - float(phantom3d.mean())) < 0.02
    assert vol.array is phantom3d, "input untouched"


def test_group_means_per_group():
    rows = [{"method": "a", "psnr": 30.0, "ssim": 0.5, "mse": 2.0, "mvoxels_per_s": 1.0},
            {"method": "a", "psnr": 32.0, "ssim": 0.7, "mse": 4.0, "mvoxels_per_s": None},
            {"method": "b", "psnr": 20.0, "ssim": 0.1, "mse": 9.0, "mvoxels_per_s": 3.0}]
    out = report.group_means(rows, ("method",))
    assert out[0] == {"method": "a", "n": 2, "psnr": 31.0, "ssim": 0.6, "mse": 3.0, "mvoxels_per_s": 1.0}
    assert out[1]["method"] == "b" and out[1]["psnr"] == 20.0


@pytest.mark.parametrize("argv, message", [
    (["--levels", "100,abc"], "--levels"),
    (["--levels", "0"], "positive"),
    (["--noise", "purple"], "Unknown noise type"),
    (["--modes", "4d"], "--modes"),
    (["--speed-shape", "10,20"], "three"),
])
def test_bad_arguments_give_one_sentence(argv, message, tmp_path, data_dir):
    with pytest.raises(InputError, match=message):
        bench.BenchmarkConfig.from_args(_args(argv + ["--data", str(data_dir), "--no-speed", "--out",
                                                      str(tmp_path / "r")]))
    assert not (tmp_path / "r").exists()


def _one_sentence(text: str) -> bool:
    return text.endswith(".") and ". " not in text.rstrip(".") and "\n" not in text


@pytest.mark.parametrize("argv, words", [
    ([], "--data DIR"),
    (["--data", "{tmp}/nowhere"], "does not exist"),
    (["--data", "{data}"], "--speed-source FILE"),
    (["--data", "{data}", "--speed-source", "{tmp}/no.nrrd"], "speed source"),
    (["--data", "{data}", "--no-speed", "--training-runs", "{tmp}/runs"], "training-run folder"),
])
def test_missing_locations_are_refused_with_one_sentence(argv, words, tmp_path, data_dir, capsys):
    """The benchmark has no default location: data, speed source and training runs are given or refused."""
    from LowLightDenoiseLib import cli

    argv = [a.format(tmp=tmp_path, data=data_dir) for a in argv]
    with pytest.raises(InputError) as error:
        bench.BenchmarkConfig.from_args(_args(argv + ["--out", str(tmp_path / "r")]))
    assert words in str(error.value) and _one_sentence(str(error.value)), str(error.value)
    assert cli.main(["benchmark"] + argv + ["--out", str(tmp_path / "r"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"lowlightdenoise: error: {error.value}"]
    assert not (tmp_path / "r").exists()


def test_unknown_method_is_refused_before_any_work(tmp_path, ct_path):
    args = _args(["--data", str(ct_path.parent), "--methods", "gaussian,no-such-method", "--out", str(tmp_path / "r"),
                  "--quiet", "--no-speed"])
    with pytest.raises(InputError, match="no-such-method"):
        bench.run(args)
    assert not (tmp_path / "r").exists()


def test_modality_guess_from_metadata_and_names():
    assert scans.guess_modality("x", {"modality": "CR"}) == "X-ray"
    assert scans.guess_modality("ct_chest_crop.nrrd") == "CT"
    assert scans.guess_modality("cxr.nii.gz") == "CT"
    assert scans.guess_modality("mr_brain_crop.nrrd") == "MR"
    assert scans.guess_modality("fundus_crop.png") == "fundus photo"
    assert scans.display_modality("xray") == "X-ray"


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
                  "--speed-source", str(ct_path), "--out", str(out), "--quiet"])
    assert bench.run(args) == 0
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
    cfg = bench.BenchmarkConfig.from_args(_args(["--noise", ",".join(config.EXTRA_NOISE), "--out", "unused",
                                                 "--data", str(ct_path), "--no-speed", "--seed", "5"]))
    levels = quality.benchmark_levels(cfg)
    assert [lv.columns["noise"] for lv in levels] == ["lowlight"] * 3 + list(config.EXTRA_NOISE)
    assert [lv.seed for lv in levels] == [5 + 1000 * i for i in range(len(levels))], "seed + 1000 x level index"
    for lv in levels:
        noisy = simulate_volume(clean, lv.degradation, seed=1)
        assert noisy.array.shape == clean.array.shape and not np.array_equal(noisy.array, clean.array)
        if lv.columns["noise"] == "dark":
            assert noisy.array.mean() < clean.array.mean(), "the dark degradation darkens"


def test_the_bench_package_imports_nothing_from_outside_the_library():
    """Relative imports stay inside LowLightDenoiseLib, no repository folder is imported, and no path is
    built above the package (``parents[...]``, ``.parent.parent``, repository folder names)."""
    repository_roots = {p.stem for p in REPO.iterdir() if p.name != "LowLightDenoiseLib"}
    wrong = []
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level > 2:
                wrong.append(f"{path.name}: from {'.' * node.level}{node.module or ''}")
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            wrong += [f"{path.name}: import {n}" for n in names if n and n.split(".")[0] in repository_roots]
        for needle in (r"parents\[", r"\.parent\.parent", r"\bTesting\b", r"\btrain/", r"\bbenchmarks/", r"\bREPO\b"):
            if re.search(needle, text):
                wrong.append(f"{path.name}: {needle}")
    assert len(list(PACKAGE.glob("*.py"))) >= 7 and not wrong, wrong


_AUDIT = '''
import os, sys
_repo = os.environ["LLD_AUDIT_REPO"]
_allowed = os.path.join(_repo, ".venv") + os.sep
_fd = os.open(os.environ["LLD_AUDIT_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
_busy = []

def _hook(event, args):
    if event == "subprocess.Popen":  # (executable, args, cwd, env): a child working in the repository
        args = (args[2],)
    elif event not in ("open", "os.listdir", "os.scandir"):
        return
    if _busy or not args or args[0] is None or isinstance(args[0], int):
        return
    _busy.append(1)
    try:
        path = os.path.abspath(os.fsdecode(args[0]))
        if (path == _repo or path.startswith(_repo + os.sep)) and not path.startswith(_allowed):
            os.write(_fd, (event + " " + path + "\\n").encode())
    finally:
        _busy.pop()

sys.addaudithook(_hook)
'''


def test_runs_from_a_wheel_layout_and_reads_nothing_of_the_repository(tmp_path, ct_path):
    """The library copied as a wheel installs it (Resources inside the package), run from elsewhere with
    a real speed child: every file or folder it opens outside the virtual environment is outside the repository."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "LowLightDenoiseLib", site / "LowLightDenoiseLib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "Resources", site / "LowLightDenoiseLib" / "Resources",
                    ignore=shutil.ignore_patterns("Icons", "ModelCards"))
    (site / "sitecustomize.py").write_text(_AUDIT)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(ct_path, data)
    log = tmp_path / "audit.log"
    env = dict(os.environ, PYTHONPATH=str(site), LLD_AUDIT_REPO=str(REPO), LLD_AUDIT_LOG=str(log))
    env.pop("LOWLIGHTDENOISE_RESOURCES", None)
    done = subprocess.run([sys.executable, "-m", "LowLightDenoiseLib", "benchmark", "--data", "data", "--quick",
                           "--methods", "gaussian", "--speed-source", "data/ct_chest_crop.nrrd", "--no-figures",
                           "--out", "report", "--quiet"], capture_output=True, text=True, env=env, cwd=str(tmp_path),
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert log.is_file(), "the audit hook ran"
    assert log.read_text() == "", "read from the repository:\n" + log.read_text()[:2000]
    speed_rows = json.loads((tmp_path / "report" / "speed.json").read_text())
    assert [r["method"] for r in speed_rows] == ["gaussian"] and not speed_rows[0].get("error")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["machine"]["git_commit"] is None, "an installed copy has no commit"
    assert "Command: `python -m LowLightDenoiseLib benchmark --data data --quick" in (
        tmp_path / "report" / "report.md").read_text()


def _speed_targets():
    import importlib.util

    spec = importlib.util.spec_from_file_location("speed_targets", REPO / "benchmarks" / "speed_targets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_project_targets_are_judged_beside_the_reports_not_by_the_library(quick_report, tmp_path):
    targets = _speed_targets()
    gb = 1024 ** 3
    rows = [{"method": "default-2d", "device": "cpu", "volume_bytes": gb // 4, "peak_rss_mb": 2000.0,
             "voxels_per_s": 0.6e6, "mvoxels_per_s": 0.6},
            {"method": "nlm", "device": "cpu", "volume_bytes": gb // 4, "peak_rss_mb": 2900.0,
             "voxels_per_s": 1e6, "mvoxels_per_s": 1.0},
            {"method": "tv", "device": "cpu", "error": "stopped after 10 s"}]
    verdicts = targets.judge(rows)
    assert [(v["method"], v["ram"]["met"]) for v in verdicts] == [("default-2d", True), ("nlm", False)]
    assert verdicts[0]["ram"]["limit_mb"] == 3 * 256 + 2048 and verdicts[0]["speed"]["met"] is True
    assert "speed" not in verdicts[1]
    assert targets.judge([dict(rows[0], voxels_per_s=0.4e6)])[0]["speed"]["met"] is False
    folder = tmp_path / "r"
    shutil.copytree(quick_report, folder)
    assert targets.main([str(folder)]) == 0
    text = (folder / "targets.md").read_text()
    assert "| gaussian | cpu | peak RAM |" in text and "| default-2d | cpu | throughput | not measured" in text
    assert "--quick" in text, "names the benchmark command it judged"
    assert targets.main([str(tmp_path / "none")]) == 2
