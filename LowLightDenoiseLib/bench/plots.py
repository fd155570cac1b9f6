"""The benchmark's figures, drawn by :mod:`LowLightDenoiseLib.figures` from the examples and table rows."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from .report import group_means
#: a :class:`.command.Benchmark` after its quality and speed runs (not imported: the command imports this module)
Bench = Any
#: the ``kind`` of a method that is measured beside the project's but not part of it (BM3D, never shipped)
PEER_KIND = "comparison"
CURVES_FIGURE = "training_curves.png"


def pick_results(results: Dict[str, np.ndarray], rows: List[Dict[str, Any]], scan: str,
                 degradation: str, limit: int = 5, peers: bool = True) -> Dict[str, np.ndarray]:
    """The ``limit`` best results of an example by PSNR (denoisers first), best first; ``peers=False``:
    the project's methods only (no comparison-only peer such as ``bm3d-vst``)."""
    score: Dict[str, float] = {}
    excluded: Set[str] = set()
    for r in rows:
        if r["scan"] == scan and r["degradation"] == degradation and not r["resized"] and r["psnr"] is not None:
            key = f"{r['method']} ({r['mode']})"
            if not peers and r.get("kind") == PEER_KIND:
                excluded.add(key)
                continue
            bonus = 0.0 if r["category"] != "enhance" else -1000.0
            score[key] = r["psnr"] + bonus
    order = sorted((k for k in results if k not in excluded), key=lambda k: -score.get(k, -1e9))
    return {k: results[k] for k in order[:limit]}


def peer_labels(rows: List[Dict[str, Any]]) -> Set[str]:
    """The ``"method (mode)"`` labels of comparison-only peers among ``rows``."""
    return {f"{r['method']} ({r['mode']})" for r in rows if r.get("kind") == PEER_KIND}


def _training_note(model: Dict[str, Any]) -> str:
    t = model.get("training") or {}
    if t.get("epochs") is None:
        return ("converted, not trained here" + (f" ({t['command']})" if t.get("command") else "")
                + (f". Training data: {t['data']}" if t.get("data") else ""))
    best = t.get("best_val_loss")
    return (f"training log not kept. Recorded: {t['epochs']} epochs, {t.get('minutes', '?')} min on "
            f"{t.get('device', '?')}, stopped by {str(t.get('stop_reason', '?')).replace('_', ' ')}"
            + (f", best validation loss {best:.4g}" if isinstance(best, (int, float)) else "")
            + (f". Recipe: {t['command']}" if t.get("command") else ""))


def shipped_curves(roots: Sequence[Path], models: Sequence[Dict[str, Any]]
                   ) -> Tuple[List[Tuple[str, Path]], List[Tuple[str, str]]]:
    """The loss curves of the shipped ``models`` (registry rows: ``name``, ``version``, ``training``) found
    under ``roots``, and the models without one.

    A model's curve is the CSV file with a loss column named ``<name>-<version>.csv`` (``default-2d-0.3.0.csv``),
    as the training code's export writes it;
    run folders of experiments and older versions are never taken for a shipped model. Returns
    ``([(title, csv)], [(title, why none)])``, titles ``"<name> v<version>"``.
    """
    from .. import figures

    by_stem: Dict[str, Path] = {}
    for p in figures.find_training_curves(roots):
        by_stem.setdefault(p.stem.lower(), p)
    found: List[Tuple[str, Path]] = []
    missing: List[Tuple[str, str]] = []
    for m in models:
        title = f"{m['name']} v{m.get('version', '?')}"
        path: Optional[Path] = by_stem.get(f"{m['name']}-{m.get('version')}".lower())
        if path is not None:
            found.append((title, path))
        else:
            missing.append((title, _training_note(m)))
    return found, missing


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
    peers = peer_labels(bench.quality)
    for modality, ex in sorted(examples.items()):
        if not ex["results"]:
            continue
        key = modality.lower().replace(" ", "_").replace("-", "")
        # the comparisons: the best five, a peer (BM3D) among them marked as such
        picks = {(f"{k}, peer" if k in peers else k): v for k, v in
                 pick_results(ex["results"], bench.quality, ex["scan"], ex["degradation"]).items()}
        title = f"{modality} ({ex['scan']}, {ex['degradation']})"
        files.append((f"Original / degraded / restored: {title}",
                      figures.comparison_grid(ex["clean"], ex["degraded"], picks, fig_dir / f"compare_{key}.png",
                                              title=title, modality=modality)))
        files.append((f"Residual maps (result minus degraded): {title}",
                      figures.residual_maps(ex["degraded"], picks, fig_dir / f"residuals_{key}.png", title=title)))
        # before and after: the best of the project's own methods (what a user can run), never the peer
        own = pick_results(ex["results"], bench.quality, ex["scan"], ex["degradation"], limit=1, peers=False)
        if not own:
            continue
        best_label, best = next(iter(own.items()))
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
    files += _curves_figure(bench, fig_dir)
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


def _curves_figure(bench: Bench, fig_dir: Path) -> List[Tuple[str, Path]]:
    """The shipped models' training curves (one panel per registered model, named with its version;
    a model whose log is not among ``--training-runs`` gets a panel saying so), or a note when no
    shipped model's curve is there (a figure left by an earlier run is removed, never kept stale)."""
    from .. import figures, registry

    cfg = bench.config
    target = fig_dir / CURVES_FIGURE
    models = registry.describe_models()
    found, missing = shipped_curves(cfg.training_runs, models)
    if found:
        caption = "Training curves of the shipped models: " + ", ".join(t for t, _ in found)
        if missing:
            caption += "; no log kept for " + ", ".join(t for t, _ in missing)
        return [(caption, figures.training_curves([p for _, p in found], target, limit=len(models),
                                                  titles=[t for t, _ in found], missing=missing))]
    if target.exists():
        target.unlink()
    where = ", ".join(f"`{p}`" for p in cfg.training_runs)
    bench.notes.append(
        "Training curves: not drawn: " + (f"no shipped model's curve (`<model>-<version>.csv`) under {where}"
                                          if cfg.training_runs else
                                          "give the folder of the shipped models' curves with `--training-runs`")
        + ". " + "; ".join(f"{t}: {why}" for t, why in missing) + ".")
    return []
