"""The report's figures as a reader sees them (issue 12, items 5 and 6), drawn from the real crops of
Testing/Data and read back from the PNG files: radiograph panels in a readable window, before/after
figures of the project's own methods (not the comparison-only BM3D), and the shipped models' training
curves, named, never the experiments' run logs in their place."""
from __future__ import annotations

import csv
import types
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("matplotlib", reason="the figures need matplotlib (the test extra installs it)")
from PIL import Image  # noqa: E402  (matplotlib depends on Pillow)

from LowLightDenoiseLib import figures, io, registry  # noqa: E402
from LowLightDenoiseLib.bench import plots  # noqa: E402
from LowLightDenoiseLib.degrade import make_degradation, simulate_volume  # noqa: E402
from LowLightDenoiseLib.metrics import psnr  # noqa: E402


def _slice(path: Path, peak: float = 100.0):
    """Middle slice of a real crop, the same after photon-limited low light (read noise 1), and a
    restored one (a Gaussian filter of it), in physical units."""
    volume = io.read_volume(path)
    noisy = simulate_volume(volume, make_degradation("lowlight", peak=peak, read_noise=1.0), seed=1)
    z = volume.array.shape[0] // 2
    clean = figures._gray(volume.array[z])
    degraded = figures._gray(noisy.array[z])
    return clean, degraded, ndimage.gaussian_filter(degraded, 1.5)


def _panels(png: Path):
    """The image panels of a one-row figure, as grey levels in [0, 1], found in the PNG read back: the
    rows where most pixels are not the white background, and in them the runs of such columns."""
    a = np.asarray(Image.open(png).convert("L"), dtype=np.float64) / 255.0
    ink = a < 1.0
    rows = np.flatnonzero(ink.mean(axis=1) > 0.5 * ink.mean(axis=1).max())
    band = a[rows.min():rows.max() + 1]
    cols = ink[rows.min():rows.max() + 1].mean(axis=0) > 0.5
    edges = np.flatnonzero(np.diff(np.concatenate([[0], cols.astype(int), [0]])))
    return [band[:, s:e] for s, e in zip(edges[::2], edges[1::2]) if e - s > 20]


def test_radiograph_panels_are_windowed_like_a_reader_not_washed_out(xray_path, tmp_path):
    clean, degraded, restored = _slice(xray_path)
    png = figures.comparison_grid(clean, degraded, {"gaussian (2d)": restored}, tmp_path / "compare_xray.png",
                                  title="X-ray", modality="X-ray")
    panels = _panels(png)
    assert len(panels) == 3
    for name, panel in zip(("original", "degraded", "restored"), panels):
        near_white = float(np.mean(panel >= 0.9))
        assert near_white < (0.25 if name == "degraded" else 0.10), (name, near_white)
    for name, panel in (("original", panels[0]), ("restored", panels[2])):
        # the tissue reads as grey: before, the median pixel of this crop showed at 0.84 (near white)
        assert 0.35 < float(np.median(panel)) < 0.72, name
        assert float(np.mean(panel <= 0.02)) < 0.2, name  # the floor is raised, not through the tissue


def test_ct_mr_and_photo_keep_the_percentile_window(ct_path, mr_path, fundus_path, tmp_path):
    for path, modality in ((ct_path, "CT"), (mr_path, "MR"), (fundus_path, "fundus photo")):
        clean, degraded, restored = _slice(path)
        expected = tuple(np.percentile(clean, [0.5, 99.5]))
        assert figures.display_window(clean, modality) == pytest.approx(expected), modality
    # the radiograph rule would have blackened this CT crop's lung (its bulk is the contrast-filled
    # heart, median at 0.77 of the range): read back, the lung stays grey with its vessels
    clean, degraded, restored = _slice(ct_path)
    lo, hi = np.percentile(clean, [0.5, 99.5])
    png = figures.comparison_grid(clean, degraded, {"gaussian (2d)": restored}, tmp_path / "compare_ct.png",
                                  modality="CT")
    original = _panels(png)[0]
    assert float(np.mean(original <= 0.02)) < 0.05
    assert figures.display_window(clean, "X-ray")[0] > lo + 300  # what the X-ray rule would have done (HU)


def _row(method, kind, psnr_db, mode="2d"):
    return {"scan": "xray_chest_crop", "degradation": "peak 100", "resized": False, "method": method, "mode": mode,
            "kind": kind, "category": "denoise", "psnr": psnr_db, "seconds": 1.0, "mvoxels_per_s": 0.1}


def _write_log(path: Path, epochs: int = 6) -> Path:
    """A run log with train.py's columns (epoch, losses, PSNR of the validation outputs and inputs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_loss", "val_loss", "val_psnr", "val_input_psnr", "lr", "elapsed_minutes"])
        for e in range(epochs):
            w.writerow([e, 0.3 / (e + 1), 0.28 / (e + 1) + 0.01, 28 + np.log1p(e), 21.1, 1e-3, 1.1 * (e + 1)])
    return path


def _trained_and_not(models):
    trained = [m for m in models if (m.get("training") or {}).get("epochs") is not None]
    return trained, [m for m in models if m not in trained]


def _bench(tmp_path, xray_path, training_runs):
    """A benchmark after its quality run (what make_figures reads), on the real radiograph crop: the
    comparison-only BM3D has the best PSNR, the project's gaussian and median follow."""
    clean, degraded, restored = _slice(xray_path)
    results = {"bm3d-vst (2d)": ndimage.median_filter(restored, 3), "gaussian (2d)": restored,
               "median (2d)": ndimage.median_filter(degraded, 3)}
    rng = float(clean.max() - clean.min())
    quality = [_row("noisy input", "input", psnr(degraded, clean, data_range=rng), mode="-")]
    for label, img in results.items():
        name = label.split(" ")[0]
        quality.append(_row(name, "comparison" if name == "bm3d-vst" else "classical",
                            psnr(img, clean, data_range=rng) + (5.0 if name == "bm3d-vst" else 0.0)))
    level = types.SimpleNamespace(label="peak 100", columns={"noise": "lowlight", "peak": 100.0})
    examples = types.SimpleNamespace(by_modality={"X-ray": {"scan": "xray_chest_crop", "degradation": "peak 100",
                                                             "clean": clean, "degraded": degraded,
                                                             "results": results}})
    config = types.SimpleNamespace(out=tmp_path / "report", training_runs=tuple(training_runs))
    return types.SimpleNamespace(config=config, examples=examples, quality=quality, levels=[level], speed=[],
                                 summary={"by_method_level": []}, quality_device="cpu", notes=[], methods=[],
                                 models={})


def test_histogram_and_surface_show_the_projects_best_method_never_the_peer(tmp_path, xray_path):
    bench = _bench(tmp_path, xray_path, [])
    files = dict((p.name, caption) for caption, p in plots.make_figures(bench))
    assert "bm3d" not in files["histogram_xray.png"] and "(gaussian (2d))" in files["histogram_xray.png"]
    assert "bm3d" not in files["surface_xray.png"] and "(gaussian (2d))" in files["surface_xray.png"]
    for name in ("compare_xray.png", "residuals_xray.png", "histogram_xray.png", "surface_xray.png"):
        assert Image.open(bench.config.out / "figures" / name).size[0] > 300, name
    # the comparisons keep the peer, marked as one
    picks = plots.pick_results(bench.examples.by_modality["X-ray"]["results"], bench.quality, "xray_chest_crop",
                               "peak 100")
    assert next(iter(picks)) == "bm3d-vst (2d)"
    assert list(plots.pick_results(bench.examples.by_modality["X-ray"]["results"], bench.quality,
                                   "xray_chest_crop", "peak 100", peers=False)) == ["gaussian (2d)", "median (2d)"]
    assert plots.peer_labels(bench.quality) == {"bm3d-vst (2d)"}


def test_training_curves_show_the_shipped_models_by_name_and_version(tmp_path, xray_path):
    models = registry.describe_models()
    trained, converted = _trained_and_not(models)
    assert len(trained) >= 2 and converted  # default-2d, volume-2.5d, enhance-2d trained; oidn-2d converted
    curves = tmp_path / "curves"
    kept = trained[:2]
    for m in kept:  # the committed compact copies, as train/export.py names them
        _write_log(curves / f"{m['name']}-{m['version']}.csv")
    # what sorted first before: experiments' run logs and an older version of a shipped model
    for decoy in ("aaa-experiment/log.csv", "compare-dae/log.csv", f"{kept[0]['name']}-v0.0.1/log.csv",
                  f"{kept[0]['name']}-0.0.1.csv"):
        _write_log(curves / decoy, epochs=3)
    found, missing = plots.shipped_curves([curves], models)
    assert [t for t, _ in found] == [f"{m['name']} v{m['version']}" for m in kept]
    assert [p.name for _, p in found] == [f"{m['name']}-{m['version']}.csv" for m in kept]
    assert {t for t, _ in missing} == {f"{m['name']} v{m['version']}" for m in models if m not in kept}
    notes = dict(missing)
    assert all("training log not kept" in notes[f"{m['name']} v{m['version']}"] for m in trained[2:])
    assert all("not trained here" in notes[f"{m['name']} v{m['version']}"] for m in converted)

    bench = _bench(tmp_path, xray_path, [curves])
    files = {p.name: caption for caption, p in plots.make_figures(bench)}
    caption = files["training_curves.png"]
    assert caption.startswith("Training curves of the shipped models: " + ", ".join(
        f"{m['name']} v{m['version']}" for m in kept))
    assert "experiment" not in caption and "compare-dae" not in caption and "0.0.1" not in caption
    width, height = Image.open(bench.config.out / "figures" / "training_curves.png").size
    assert width > 1500 and height > 250  # one panel per shipped model, four to a row


def test_no_shipped_curve_gives_a_note_and_no_stale_figure(tmp_path, xray_path):
    runs = tmp_path / "runs"
    _write_log(runs / "compare-dae" / "log.csv")  # an experiment only
    bench = _bench(tmp_path, xray_path, [runs])
    stale = bench.config.out / "figures" / "training_curves.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier run's figure")
    files = {p.name for _, p in plots.make_figures(bench)}
    assert "training_curves.png" not in files and not stale.exists()
    note = next(n for n in bench.notes if n.startswith("Training curves"))
    trained, converted = _trained_and_not(registry.describe_models())
    assert all(f"{m['name']} v{m['version']}: training log not kept" in note for m in trained)
    assert all(f"{m['name']} v{m['version']}: converted, not trained here" in note for m in converted)


def test_missing_panels_are_drawn_beside_the_curves(tmp_path):
    log = _write_log(tmp_path / "a.csv")
    png = figures.training_curves([log], tmp_path / "curves.png", titles=["model-x v1.0.0"],
                                  missing=[("model-y v2.0.0", "training log not kept. Recorded: 3 epochs")])
    one = figures.training_curves([log], tmp_path / "one.png", titles=["model-x v1.0.0"])
    assert Image.open(png).size[0] > 1.6 * Image.open(one).size[0]  # two panels side by side
