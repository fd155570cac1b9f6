"""The command line: the real workflow on the CT crop, tables, and one-line errors that write nothing."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LowLightDenoiseLib import DEFAULT_METHOD, cli

REPO = Path(__file__).resolve().parents[2]
FAST = "tv"  # a quick automatic classical denoiser


def run(capsys, *argv):
    """Run ``lowlightdenoise ARGV`` in-process; return (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def listing(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture()
def work(tmp_path: Path, ct_path: Path) -> Path:
    shutil.copy(ct_path, tmp_path / "ct.nrrd")
    return tmp_path


@pytest.fixture()
def empty_registry(tmp_path_factory, monkeypatch) -> Path:
    """A registry that lists default-2d without installed weights or a download address."""
    folder = tmp_path_factory.mktemp("registry")
    entry = {"name": "default-2d", "version": "0.0.0", "spatial_dims": 2, "architecture": "dncnn",
             "category": "denoise", "file": "missing-default-2d.safetensors", "sha256": "0" * 64, "size": 1000}
    path = folder / "Models.json"
    path.write_text(json.dumps({"schema_version": 1, "models": [entry]}))
    monkeypatch.setenv("LOWLIGHTDENOISE_REGISTRY", str(path))
    monkeypatch.setenv("LOWLIGHTDENOISE_CACHE", str(folder / "cache"))
    monkeypatch.delenv("LOWLIGHTDENOISE_MODELS_DIR", raising=False)
    return path


def test_simulate_denoise_evaluate_on_the_real_ct_crop_improves_psnr(capsys, work: Path):
    ref, low, den = work / "ct.nrrd", work / "low.nrrd", work / "den.nrrd"
    code, _, err = run(capsys, "simulate", ref, low, "--peak", 100, "--read-noise", 1, "--seed", 1)
    assert code == 0, err
    code, out, err = run(capsys, "denoise", low, den, "--method", FAST, "--reference", ref,
                         "--metrics", work / "m.csv")
    assert code == 0, err
    with open(work / "m.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["(input)", FAST] and rows[1]["mode"] == "2d"
    assert float(rows[1]["psnr"]) > float(rows[0]["psnr"]) + 3
    assert float(rows[1]["ssim"]) > float(rows[0]["ssim"])
    assert float(rows[1]["noise_reduction"]) > 2
    assert "psnr" in out.splitlines()[0]  # the table is printed too

    code, out, err = run(capsys, "evaluate", ref, low, den, "--input", low, "--json", work / "e.json",
                         "--csv", work / "e.csv")
    assert code == 0, err
    table = json.loads((work / "e.json").read_text())
    assert [Path(r["image"]).name for r in table] == ["low.nrrd", "den.nrrd"]
    assert table[1]["psnr"] > table[0]["psnr"] + 3
    # evaluate recomputes the same PSNR as denoise --reference (the file is rounded to int16 HU)
    assert table[1]["psnr"] == pytest.approx(float(rows[1]["psnr"]), abs=0.05)
    assert table[0]["psnr"] == pytest.approx(float(rows[0]["psnr"]), rel=1e-9)
    assert table[1]["data_range"] == pytest.approx(3004 - (-1024))
    with open(work / "e.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert float(csv_rows[1]["ssim_3d"]) == pytest.approx(table[1]["ssim_3d"])
    # the written volume keeps geometry and the source pixel type (HU as int16)
    img, src = sitk.ReadImage(str(den)), sitk.ReadImage(str(ref))
    assert img.GetSpacing() == pytest.approx(src.GetSpacing()) and img.GetOrigin() == pytest.approx(src.GetOrigin())
    assert img.GetPixelIDTypeAsString() == src.GetPixelIDTypeAsString()


def test_evaluate_of_an_identical_image_writes_infinite_psnr_as_text(capsys, work: Path):
    code, out, _ = run(capsys, "evaluate", work / "ct.nrrd", work / "ct.nrrd", "--json", "-")
    assert code == 0
    rows = json.loads(out[out.index("["):])
    assert rows[0]["psnr"] == "inf" and rows[0]["ssim"] == pytest.approx(1.0)


def test_denoise_without_metrics_writes_only_the_output_and_keeps_the_input(capsys, work: Path):
    before = (work / "ct.nrrd").read_bytes()
    code, out, err = run(capsys, "denoise", work / "ct.nrrd", work / "out.nii.gz", "--method", "gaussian",
                         "--mode", "3d", "--dtype", "float32")
    assert code == 0, err
    assert listing(work) == ["ct.nrrd", "out.nii.gz"]
    assert (work / "ct.nrrd").read_bytes() == before
    assert out == ""  # no table without --reference/--metrics
    assert sitk.ReadImage(str(work / "out.nii.gz")).GetPixelID() == sitk.sitkFloat32


def test_denoise_without_method_uses_the_documented_default(capsys, work: Path):
    code, _, err = run(capsys, "denoise", work / "ct.nrrd", work / "out.nrrd", "--metrics", work / "m.json")
    assert code == 0, err
    rows = json.loads((work / "m.json").read_text())
    assert rows[0]["method"] == DEFAULT_METHOD and rows[0]["noise_reduction"] > 1


def test_compare_runs_several_methods_into_one_table(capsys, work: Path):
    ref, low = work / "ct.nrrd", work / "low.nrrd"
    assert run(capsys, "simulate", ref, low, "--noise", "gaussian", "--sigma", 0.05, "--seed", 2)[0] == 0
    code, out, err = run(capsys, "compare", low, "--methods", "gaussian,median", "--reference", ref,
                         "--output-dir", work / "res", "--csv", work / "cmp.csv")
    assert code == 0, err
    with open(work / "cmp.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["(input)", "gaussian", "median"]
    assert all(float(r["psnr"]) > float(rows[0]["psnr"]) for r in rows[1:])
    assert sorted(os.listdir(work / "res")) == ["low_gaussian.nrrd", "low_median.nrrd"]
    lines = out.strip().splitlines()
    assert lines[0].split()[0] == "method" and len(lines) == 4


def test_compare_with_an_unknown_method_fails_before_writing_anything(capsys, work: Path):
    before = listing(work)
    code, _, err = run(capsys, "compare", work / "ct.nrrd", "--methods", "gaussian,nonsense",
                       "--output-dir", work / "res")
    assert code == 2 and "nonsense" in err
    assert listing(work) == before


def test_simulate_is_seeded_and_rejects_parameters_of_another_noise_type(capsys, work: Path):
    for name in ("a.nrrd", "b.nrrd"):
        assert run(capsys, "simulate", work / "ct.nrrd", work / name, "--noise", "rician", "--sigma", 0.05,
                   "--seed", 7, "--dtype", "float32")[0] == 0
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "a.nrrd")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "b.nrrd")))
    np.testing.assert_array_equal(a, b)
    before = listing(work)
    code, _, err = run(capsys, "simulate", work / "ct.nrrd", work / "c.nrrd", "--noise", "gaussian", "--peak", 10)
    assert code == 2 and "peak" in err and len(err.strip().splitlines()) == 1
    assert listing(work) == before


def test_estimate_noise_reports_physical_and_normalised_parameters(capsys, work: Path):
    low = work / "low.nrrd"
    assert run(capsys, "simulate", work / "ct.nrrd", low, "--noise", "gaussian", "--sigma", 0.05,
               "--dtype", "float32")[0] == 0
    code, out, err = run(capsys, "estimate-noise", low, "--json")
    assert code == 0, err
    report = json.loads(out)
    ch = report["channels"][0]
    # sigma 0.05 of the full range (4028 HU), estimated by the wavelet MAD estimator
    assert ch["sigma"] == pytest.approx(0.05 * 4028, rel=0.3)
    scale = ch["normalization_high"] - ch["normalization_low"]
    assert ch["sigma"] == pytest.approx(ch["sigma_normalized"] * scale)
    assert ch["a"] == pytest.approx(ch["a_normalized"] * scale)
    assert ch["noise_type"] in ch["probabilities"]
    code, out, _ = run(capsys, "estimate-noise", low)
    assert code == 0 and "noise type" in out and "Poisson-Gaussian" in out


def test_models_list_works_with_the_shipped_registry(capsys, monkeypatch):
    monkeypatch.delenv("LOWLIGHTDENOISE_REGISTRY", raising=False)
    code, out, err = run(capsys, "models", "list")
    assert code == 0, err
    from LowLightDenoiseLib import registry

    names = registry.registered_names()
    if names:
        assert out.splitlines()[0].split()[0] == "name"
        assert {line.split()[0] for line in out.splitlines()[1:]} == set(names)
    else:
        assert "No models are registered" in out
    code, out, _ = run(capsys, "models", "list", "--json")
    assert code == 0 and [m["name"] for m in json.loads(out)] == names


def test_models_verify_and_import_report_a_missing_or_wrong_file_in_one_line(capsys, tmp_path, empty_registry):
    code, out, err = run(capsys, "models", "verify", "default-2d")
    assert code == 2 and "not installed" in out and len(err.strip().splitlines()) == 1
    wrong = tmp_path / "w.safetensors"
    wrong.write_bytes(b"x" * 10)
    code, _, err = run(capsys, "models", "import", "default-2d", wrong)
    assert code == 2 and err.startswith("lowlightdenoise: error: ") and len(err.strip().splitlines()) == 1
    assert not (empty_registry.parent / "cache" / "missing-default-2d.safetensors").exists()


def _write(path: Path, array: np.ndarray) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def _bad_case(name: str, work: Path):
    """(arguments, expected words in the message) for each user error of the task."""
    ct = work / "ct.nrrd"
    if name == "missing file":
        return ["denoise", work / "nope.nrrd", work / "out.nrrd"], "does not exist"
    if name == "unsupported format":
        (work / "image.xyz").write_text("not an image")
        return ["denoise", work / "image.xyz", work / "out.nrrd"], "not supported"
    if name == "4D input":
        frames = [sitk.GetImageFromArray(np.random.default_rng(t).random((3, 16, 16)).astype(np.float32))
                  for t in range(2)]
        sitk.WriteImage(sitk.JoinSeries(frames), str(work / "four.nrrd"))  # a real 4D (x, y, z, t) image
        return ["denoise", work / "four.nrrd", work / "out.nrrd"], "4D"
    if name == "NaN values":
        a = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
        a[1, 2, 3] = np.nan
        _write(work / "nan.nrrd", a)
        return ["denoise", work / "nan.nrrd", work / "out.nrrd", "--method", FAST], "NaN"
    if name == "Inf values":
        a = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
        a[0, 0, 0] = np.inf
        _write(work / "inf.nrrd", a)
        return ["denoise", work / "inf.nrrd", work / "out.nrrd", "--method", FAST], "infinite"
    if name == "constant image":
        _write(work / "flat.nrrd", np.full((4, 16, 16), 7, np.int16))
        return ["denoise", work / "flat.nrrd", work / "out.nrrd", "--method", FAST], "constant"
    if name == "too small":
        _write(work / "tiny.nrrd", np.arange(4, dtype=np.float32).reshape(1, 2, 2))
        return ["denoise", work / "tiny.nrrd", work / "out.nrrd", "--method", "nlm"], "at least"
    if name == "too thin for 3D":
        _write(work / "thin.nrrd", np.random.default_rng(0).random((2, 32, 32)).astype(np.float32))
        return ["denoise", work / "thin.nrrd", work / "out.nrrd", "--method", "gaussian", "--mode", "3d"], "slices"
    if name == "unavailable model":
        return ["denoise", ct, work / "out.nrrd", "--method", "default-2d"], "default-2d"
    if name == "unknown method":
        return ["denoise", ct, work / "out.nrrd", "--method", "magic"], "magic"
    if name == "output exists":
        (work / "out.nrrd").write_bytes(b"old")
        return ["denoise", ct, work / "out.nrrd", "--method", FAST], "already exists"
    if name == "output is input":
        return ["denoise", ct, ct, "--method", FAST, "--overwrite"], "is the input"
    if name == "reference of another size":
        _write(work / "small_ref.nrrd", np.random.default_rng(0).random((4, 16, 16)).astype(np.float32))
        return ["denoise", ct, work / "out.nrrd", "--method", FAST, "--reference", work / "small_ref.nrrd"], "size"
    if name == "bad metrics extension":
        return ["denoise", ct, work / "out.nrrd", "--method", FAST, "--metrics", work / "m.txt"], ".csv or .json"
    if name == "strength out of range":
        return ["denoise", ct, work / "out.nrrd", "--method", FAST, "--strength", "1e308"], "strength must be"
    if name == "bad flips count":
        return ["denoise", ct, work / "out.nrrd", "--method", FAST, "--flips", 3], "invalid choice"
    if name == "usage error":
        return ["denoise", ct], "required"
    raise AssertionError(name)


BAD_CASES = ["missing file", "unsupported format", "4D input", "NaN values", "Inf values", "constant image",
             "too small", "too thin for 3D", "unavailable model", "unknown method", "output exists", "output is input",
             "reference of another size", "bad metrics extension", "strength out of range",
             "bad flips count", "usage error"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_each_user_error_is_one_line_exit_2_and_writes_nothing(capsys, work: Path, empty_registry, case: str):
    argv, words = _bad_case(case, work)
    before = {p: (work / p).stat().st_mtime_ns for p in listing(work)}
    code, out, err = run(capsys, *argv, "--quiet")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lowlightdenoise: error: ")
    assert words in lines[0]
    assert {p: (work / p).stat().st_mtime_ns for p in listing(work)} == before  # nothing written or touched


def test_benchmark_subcommand_is_wired_to_the_benchmark_module(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["benchmark", "--help"])
    assert stop.value.code == 0
    assert "lowlightdenoise benchmark" in capsys.readouterr().out


def test_python_dash_m_runs_the_same_command_line(tmp_path: Path, ct_path: Path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "LowLightDenoiseLib", "--version"], capture_output=True,
                          text=True, env=env, cwd=str(tmp_path))
    assert done.returncode == 0 and "lowlightdenoise" in done.stdout
    done = subprocess.run([sys.executable, "-m", "LowLightDenoiseLib", "denoise", str(ct_path), str(ct_path),
                           "--overwrite"], capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("lowlightdenoise: error: ")
    assert "Traceback" not in done.stderr


def test_flips_average_any_method_and_the_table_says_so(capsys, work: Path):
    ct = work / "ct.nrrd"
    before = ct.read_bytes()
    for method in ("default-2d", FAST):  # a learned model and a classical filter, the same option
        assert run(capsys, "denoise", ct, work / f"{method}-1.nrrd", "--method", method, "--dtype", "float32",
                   "-q")[0] == 0
        code, out, err = run(capsys, "denoise", ct, work / f"{method}-2.nrrd", "--method", method, "--flips", 2,
                             "--dtype", "float32", "--metrics", work / f"{method}.json", "-q")
        assert code == 0, err
        assert json.loads((work / f"{method}.json").read_text())[0]["flips"] == 2  # the table says how it ran
        one = sitk.GetArrayFromImage(sitk.ReadImage(str(work / f"{method}-1.nrrd")))
        two = sitk.GetArrayFromImage(sitk.ReadImage(str(work / f"{method}-2.nrrd")))
        assert one.shape == two.shape
        assert 0 < np.abs(one - two).max() < 0.2 * (one.max() - one.min())  # another estimate of the same image
    code, _, err = run(capsys, "denoise", ct, work / "old.nrrd", "--method", FAST, "--ensemble", 2, "-q")
    assert code == 0, err  # the former option name still works
    assert ct.read_bytes() == before


def test_methods_lists_every_classical_and_learned_method_and_names_ignore_case(capsys, work: Path):
    from LowLightDenoiseLib.methods.classical import CLASSICAL_METHODS

    code, out, err = run(capsys, "methods", "--json")
    assert code == 0, err
    listed = {row["name"]: row for row in json.loads(out)}
    assert set(CLASSICAL_METHODS) < set(listed) and {"default-2d", "volume-2.5d", "enhance-2d"} < set(listed)
    assert all(row["title"] for row in listed.values())
    code, _, err = run(capsys, "denoise", work / "ct.nrrd", work / "o.nrrd", "--method", FAST.upper(), "-q")
    assert code == 0, err
    with pytest.raises(SystemExit):
        cli.main(["denoise", "--help"])
    assert "lowlightdenoise methods" in " ".join(capsys.readouterr().out.split())




def test_a_reference_on_another_voxel_grid_is_refused_unless_forced(capsys, work: Path, mr_path: Path):
    """The MR crop has the CT crop's voxel count but another spacing and origin: another scan."""
    ct = work / "ct.nrrd"
    code, _, err = run(capsys, "denoise", ct, work / "o.nrrd", "--method", FAST, "--reference", mr_path, "-q")
    assert code == 2 and "voxel grid" in err and "spacing" in err and "--force-reference" in err
    assert not (work / "o.nrrd").exists()
    code, _, err = run(capsys, "compare", ct, "--methods", FAST, "--reference", mr_path, "-q")
    assert code == 2 and "voxel grid" in err
    code, _, err = run(capsys, "evaluate", mr_path, ct, "-q")
    assert code == 2 and "voxel grid" in err
    code, out, err = run(capsys, "denoise", ct, work / "o.nrrd", "--method", FAST, "--reference", mr_path,
                         "--force-reference")
    assert code == 0 and "measured voxel by voxel anyway" in err and (work / "o.nrrd").exists()


def test_the_run_columns_come_before_the_metrics_in_every_row(capsys, work: Path):
    ct = work / "ct.nrrd"
    code, _, err = run(capsys, "compare", ct, "--methods", f"{FAST},gaussian", "--reference", ct, "--flips", 2,
                       "--strength", 0.5, "--csv", work / "t.csv", "-q")
    assert code == 0, err
    header = (work / "t.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["method", "mode", "axis", "device", "seconds", "strength", "flips"]


def test_calibrate_tunes_classical_denoisers_and_the_table_says_so(capsys, work: Path):
    """J-invariant self-calibration (issue 12 item 9) on the command line: denoise and compare."""
    ct = work / "ct.nrrd"
    low = work / "low.nrrd"
    assert run(capsys, "simulate", ct, low, "--peak", 100, "--seed", 3, "-q")[0] == 0
    code, _, err = run(capsys, "denoise", low, work / "auto.nrrd", "--method", "gaussian", "--reference", ct,
                       "--metrics", work / "auto.json", "-q")
    assert code == 0, err
    code, _, err = run(capsys, "denoise", low, work / "cal.nrrd", "--method", "gaussian", "--calibrate",
                       "--reference", ct, "--metrics", work / "cal.json", "-q")
    assert code == 0, err
    auto, cal = (json.loads((work / f"{n}.json").read_text()) for n in ("auto", "cal"))
    assert cal[1]["calibrate"] is True and "calibrate" not in cal[0] and "calibrate" not in auto[1]
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "auto.nrrd"))).astype(float)
    c = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "cal.nrrd"))).astype(float)
    assert np.abs(a - c).max() > 0  # another strength was chosen
    assert cal[1]["psnr"] > cal[0]["psnr"] + 3  # and it still denoises
    code, out, err = run(capsys, "compare", low, "--methods", "gaussian,median", "--calibrate", "--json", "-")
    assert code == 0, err
    rows = json.loads(out[out.index("["):])
    assert [r.get("calibrate") for r in rows] == [True, True]
    before = listing(work)
    for argv, words in [(["--method", "default-2d"], "learned model"), (["--method", "gamma"], "enhancement method"),
                        (["--method", "tv", "--strength", 2], "either --calibrate or --strength")]:
        code, _, err = run(capsys, "denoise", low, work / "x.nrrd", "--calibrate", *argv)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run(capsys, "compare", low, "--methods", "tv,default-2d", "--calibrate")
    assert code == 2 and "default-2d" in err
    assert listing(work) == before


def test_a_classical_denoise_imports_neither_torch_nor_monai(tmp_path, ct_path):
    """Issue 12 item 7: a classical method needs no torch. The command line resolved the device while checking
    its options, which imported torch (about 3 s) for every command, 'gaussian' included."""
    import subprocess
    import sys

    script = ("import sys\nfrom LowLightDenoiseLib.cli import main\n"
              f"code = main(['denoise', {str(ct_path)!r}, {str(tmp_path / 'g.nrrd')!r}, '--method', 'gaussian', '-q'])\n"
              "print(code, sorted(m for m in ('torch', 'monai') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout + done.stderr
