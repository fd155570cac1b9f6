"""The benchmark's figures, drawn by :mod:`LowLightDenoiseLib.figures` from the examples and table rows."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from .report import group_means
#: a :class:`.command.Benchmark` after its quality and speed runs (not imported: the command imports this module)
Bench = Any


def pick_results(results: Dict[str, np.ndarray], rows: List[Dict[str, Any]], scan: str,
                 degradation: str, limit: int = 5) -> Dict[str, np.ndarray]:
    """The ``limit`` best results of an example by PSNR (denoisers first), best first."""
    score: Dict[str, float] = {}
    for r in rows:
        if r["scan"] == scan and r["degradation"] == degradation and not r["resized"] and r["psnr"] is not None:
            bonus = 0.0 if r["category"] != "enhance" else -1000.0
            score[f"{r['method']} ({r['mode']})"] = r["psnr"] + bonus
    order = sorted(results, key=lambda k: -score.get(k, -1e9))
    return {k: results[k] for k in order[:limit]}


def make_figures(bench: Bench) -> List[Tuple[str, Path]]:
    """Draw every figure of the report into ``<out>/figures``; returns (caption, file) pairs.

    What cannot be drawn (no training curves given, no 2D learned model in the run) becomes a note.
    """
    from .. import figures
    from .quality import make_method

    cfg = bench.config
    fig_dir = cfg.out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    files: List[Tuple[str, Path]] = []
    examples = bench.examples.by_modality
    for modality, ex in sorted(examples.items()):
        if not ex["results"]:
            continue
        key = modality.lower().replace(" ", "_").replace("-", "")
        picks = pick_results(ex["results"], bench.quality, ex["scan"], ex["degradation"])
        title = f"{modality} ({ex['scan']}, {ex['degradation']})"
        files.append((f"Original / degraded / restored: {title}",
                      figures.comparison_grid(ex["clean"], ex["degraded"], picks, fig_dir / f"compare_{key}.png",
                                              title=title)))
        files.append((f"Residual maps (result minus degraded): {title}",
                      figures.residual_maps(ex["degraded"], picks, fig_dir / f"residuals_{key}.png", title=title)))
        best_label, best = next(iter(picks.items()))
        files.append((f"Intensity histograms before and after ({best_label}): {title}",
                      figures.histograms(ex["clean"], ex["degraded"], {best_label: best},
                                         fig_dir / f"histogram_{key}.png", title=title)))
        files.append((f"Surface plot of a central region before and after ({best_label}): {title}",
                      figures.surface_plot(ex["degraded"], best, fig_dir / f"surface_{key}.png",
                                           labels=("degraded", best_label), title=title)))
    low_light = {lv.label for lv in bench.levels if lv.columns["noise"] == "lowlight"}
    rows = [r for r in bench.summary["by_method_level"] if r["degradation"] in low_light]
    for data in dict.fromkeys(r["data"] for r in rows):
        subset = [r for r in rows if r["data"] == data]
        key = data.lower().replace(" ", "_")
        for metric in ("psnr", "ssim"):
            caption = f"Mean {metric.upper()} per method at each photon-limited low-light level, {data}"
            files.append((caption, figures.metric_bars(subset, metric, fig_dir / f"{metric}_bars_{key}.png",
                                                       title=caption)))
    timing = [r for r in bench.speed if not r.get("error")]
    if timing:
        files.append(("Throughput per method on the speed volume", figures.time_bars(timing, fig_dir / "time_bars.png")))
    else:
        q = group_means([r for r in bench.quality if r["seconds"] is not None], ("method", "mode"))
        files.append(("Seconds per evaluation volume per method (quality runs)",
                      figures.time_bars([{"method": f"{r['method']} ({r['mode']})", "device": bench.quality_device,
                                          "mvoxels_per_s": r["mvoxels_per_s"]} for r in q],
                                        fig_dir / "time_bars.png")))
    curves = figures.find_training_curves(cfg.training_runs)
    if curves:
        files.append(("Training curves", figures.training_curves(curves, fig_dir / "training_curves.png")))
    elif cfg.training_runs:
        bench.notes.append("Training curves: no CSV file with a loss column under "
                           + ", ".join(f"`{p}`" for p in cfg.training_runs) + ".")
    else:
        bench.notes.append("Training curves: not drawn (give training-run folders with `--training-runs`).")
    learned = [n for n in bench.methods if n in bench.models and 2 in (np.atleast_1d(
        bench.models[n].get("spatial_dims") or [2]).tolist())]  # feature maps are drawn on a 2D slice
    example = next(iter(examples.values()), None)
    if learned and example is not None:
        path = figures.feature_maps(make_method(learned[0], "cpu"), example["degraded"],
                                    fig_dir / "feature_maps.png", title=f"first-layer feature maps of {learned[0]}")
        if path is not None:
            files.append((f"First-layer feature maps of {learned[0]}", path))
    else:
        bench.notes.append("Feature maps: no 2D learned model was part of this run.")
    return files
