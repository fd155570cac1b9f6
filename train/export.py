"""Export a training run: safetensors weights, sha256 and size, a Models.json entry and a model card.

    python train/export.py train/runs/volume-2.5d --version 0.3.0 --modalities ct,mr
    python train/export.py train/runs/volume-2.5d --version 0.3.0 --report train/reports/volume-2.5d.json
    python train/export.py train/runs/default-2d-vst-rel --name default-2d --version 0.2.0   # candidate -> name

The weights go to ``Resources/Models/<name>-<version>.safetensors`` (at most 10 MB, so they are
bundled and the extension works offline); the entry in ``Resources/Models.json`` (schema:
``LowLightDenoiseLib/registry.py``) names the GitHub release asset it would be downloaded from. With
``--report`` (written by ``train/evaluate.py``) the test metrics go into the entry and the card. A compact
copy of the run's ``log.csv`` goes to ``train/reports/curves/<name>-<version>.csv`` (committed, unlike
``train/runs``), for the benchmark's training-curve figure.
Exporting the same checkpoint twice gives byte-identical weights (same sha256).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

TRAIN_DIR = Path(__file__).resolve().parent
REPO = TRAIN_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from LowLightDenoiseLib.models.spec import ModelSpec, save_weights  # noqa: E402
from LowLightDenoiseLib.models.networks import count_parameters  # noqa: E402
from LowLightDenoiseLib.registry import sha256_of  # noqa: E402
from train.train import load_checkpoint  # noqa: E402

MODELS_JSON = REPO / "Resources" / "Models.json"
MODELS_DIR = REPO / "Resources" / "Models"
CARDS_DIR = REPO / "Resources" / "ModelCards"
#: compact copies of the shipped models' training logs (``train/runs`` is not committed): the benchmark's
#: training-curve figure reads them (``--training-runs train/reports/curves``)
CURVES_DIR = TRAIN_DIR / "reports" / "curves"
#: the columns of a run's log.csv kept in the compact copy
CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "val_psnr", "val_input_psnr", "lr", "elapsed_minutes")
#: where a run's config is looked for (by its name) for the recorded training command: the configs of the
#: shipped models first, then the experiments
CONFIG_DIRS = (TRAIN_DIR / "configs" / "shipped", TRAIN_DIR / "configs" / "experiments")
URL_PATTERN = "https://github.com/lowlightdenoise/SlicerLowLightDenoise/releases/download/v{version}/{file}"
MAX_BYTES = 10 * 1024 * 1024
LICENCE = "Apache-2.0"


def spec_from_run(run_dir: Path, version: str, title: str = "", name: str = "") -> ModelSpec:
    """The model spec of a run; ``name`` registers it under another name than its config's (a candidate
    run such as ``default-2d-vst`` shipped as ``default-2d``)."""
    cfg = json.loads((run_dir / "config.json").read_text())
    return ModelSpec(name=name or cfg["name"], architecture=cfg["architecture"], spatial_dims=int(cfg["spatial_dims"]),
                     network=cfg["network"], input=cfg["input"], category=cfg["category"],
                     title=title or cfg.get("description", ""), version=version)


def export_weights(run_dir: Path, version: str, models_dir: Path = MODELS_DIR, title: str = "",
                   name: str = "") -> Dict[str, Any]:
    """Write the best checkpoint as safetensors; returns file name, path, sha256, size and parameters."""
    spec = spec_from_run(run_dir, version, title, name)
    network = spec.build_network()
    network.load_state_dict(load_checkpoint(run_dir / "checkpoint_best.pt")["model"], strict=True)
    models_dir.mkdir(parents=True, exist_ok=True)
    file = f"{spec.name}-{version}.safetensors"
    path = save_weights(models_dir / file, network, spec)
    size = path.stat().st_size
    if size > MAX_BYTES:
        path.unlink()
        raise ValueError(f"{file} is {size / 2**20:.1f} MB, over the 10 MB limit for bundled weights.")
    return {"spec": spec, "file": file, "path": path, "sha256": sha256_of(path), "size": size,
            "parameters": count_parameters(network)}


def write_curve(run_dir: Path, name: str, version: str, curves_dir: Path = CURVES_DIR) -> Optional[Path]:
    """A compact copy of the run's ``log.csv`` as ``<curves_dir>/<name>-<version>.csv``: the columns of
    :data:`CURVE_COLUMNS` it has, numbers to 6 significant digits (a few kB); ``None`` when the run has no
    log. The copy is what keeps a shipped model's training curve once the run folder is gone."""
    import csv

    log = run_dir / "log.csv"
    if not log.is_file():
        return None
    with open(log, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    keys = [k for k in CURVE_COLUMNS if k in rows[0]]

    def short(value: str) -> str:
        try:
            return f"{float(value):.6g}"
        except (TypeError, ValueError):
            return str(value)

    curves_dir.mkdir(parents=True, exist_ok=True)
    out = curves_dir / f"{name}-{version}.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        writer.writerows([short(r[k]) for k in keys] for r in rows)
    return out


def describe_input(input_config: Dict[str, Any]) -> str:
    """What the network is fed, in words, from its input configuration."""
    if input_config.get("vst"):
        text = ("normalised image in the generalised-Anscombe domain with the estimated Poisson-Gaussian "
                f"parameters, {input_config.get('vst_inverse', 'unbiased')} inverse")
        return text + (", plus the stabilised noise level as a channel" if input_config.get("noise_map") else "")
    return "normalised image" + (" plus estimated noise map" if input_config.get("noise_map") else "")


def training_summary(run_dir: Path, config_path: Optional[str]) -> Dict[str, Any]:
    cfg = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    splits = json.loads((TRAIN_DIR / "splits.json").read_text())
    split = {k: splits[k] for k in ("train", "val", "test")}
    split.update(summary.get("scans") or {})  # what the run itself trained and validated on, when it recorded it
    return {
        "data": "real scans and photographs from pinned registry packages (train/data_manifest.json)",
        "split": split,
        "recipe": {k: cfg[k] for k in ("data", "loss", "optim", "input", "network", "seed", "init_weights")
                   if cfg.get(k) not in (None, "")},
        "command": "python train/train.py " + (config_path or config_path_of(cfg["name"])),
        "epochs": summary.get("epochs"), "minutes": round(float(summary.get("minutes", 0.0)), 1),
        "stop_reason": summary.get("stop_reason"), "device": summary.get("device"),
        "best_val_loss": summary.get("best_val_loss"),
        "run": _repo_relative(run_dir), "run_name": cfg["name"],
    }


def config_path_of(name: str) -> str:
    """The repository-relative path of the config called ``name`` (``train/configs/shipped/`` first, then
    ``experiments/``); a config in neither is taken to be a new experiment's."""
    for folder in CONFIG_DIRS:
        if (folder / f"{name}.json").is_file():
            return _repo_relative(folder / f"{name}.json")
    return _repo_relative(CONFIG_DIRS[-1] / f"{name}.json")


def _repo_relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _registry_training(summary: Dict[str, Any]) -> Dict[str, Any]:
    """The short form kept in Models.json (the full recipe and split live in the model card)."""
    short = {k: v for k, v in summary.items() if k not in ("recipe", "split", "run", "run_name")}
    short["split"] = dict({k: len(v) for k, v in summary["split"].items()}, file="train/splits.json")
    return short


def metrics_from_report(report: Dict[str, Any], model: str) -> Dict[str, Any]:
    """Mean test PSNR/SSIM per level of the model and of the strongest baselines, and the targets."""
    out: Dict[str, Any] = {"command": report["command"], "task": report["task"], "levels": {}}
    for level, methods in report["summary"].items():
        row = {}
        for m, v in methods.items():
            if m == model or m in ("noisy input", "tuned:nlm", "tuned:tv", "bm3d-vst-true", "ffdnet-vst-true", "oidn-2d") \
                    or m.startswith("best-classical") \
                    or m in report.get("models", []):
                row[m] = {"psnr": round(v["psnr"], 2), "ssim": round(v["ssim"], 4)}
        autos = {m: v["psnr"] for m, v in methods.items() if m.startswith("auto:")}
        if autos:
            best = max(autos, key=autos.get)
            row[best] = {"psnr": round(methods[best]["psnr"], 2), "ssim": round(methods[best]["ssim"], 4)}
        out["levels"][level] = row
    out["targets"] = report.get("targets", [])
    if model in report.get("speed", {}):
        out["cpu_speed"] = report["speed"][model]
    return out


def update_registry(entry: Dict[str, Any], models_json: Path = MODELS_JSON) -> None:
    """Insert or replace ``entry`` (by name) in the registry file, keeping everything else, including the
    former names (``aliases``) of the entry it replaces; a former name is refused as a new name."""
    data = json.loads(models_json.read_text())
    for m in data.get("models", []):
        if entry["name"] in m.get("aliases", []):
            raise ValueError(f"{entry['name']!r} is a former name of {m['name']!r}: export it with --name {m['name']}.")
    old = [m for m in data.get("models", []) if m.get("name") == entry["name"]]
    if old and old[0].get("aliases") and "aliases" not in entry:
        entry = dict(entry, aliases=old[0]["aliases"])
    models: List[Dict[str, Any]] = [m for m in data.get("models", []) if m.get("name") != entry["name"]]
    models.append(entry)
    order = {"default-2d": 0, "volume-2.5d": 1, "enhance-2d": 2}
    data["models"] = sorted(models, key=lambda m: (order.get(m["name"], 9), m["name"]))
    models_json.write_text(json.dumps(data, indent=2) + "\n")


def render_metrics(report: Dict[str, Any], name: str) -> List[str]:
    """The model card's test-metrics section from a ``train/evaluate.py`` report (``name`` in bold)."""
    lines: List[str] = []
    lines += ["## Test metrics", "", f"Measured with `{report['command']}` (report: "
              f"`train/reports/{name}.md`). Images: "
              f"{', '.join(f'{i} ({m})' for i, m in report['images'])}.", ""]
    for level, methods in report["summary"].items():
        lines += [f"### {level}", "", "| method | PSNR (dB) | SSIM |", "|---|---|---|"]
        for m, v in sorted(methods.items(), key=lambda kv: -kv[1]["psnr"]):
            mark = "**" if m == name else ""
            lines.append(f"| {mark}{m}{mark} | {v['psnr']:.2f} | {v['ssim']:.4f} |")
        lines.append("")
    if report.get("targets"):
        lines += ["### Targets of the issue", "", "| level | target | margin (dB) | met |", "|---|---|---|---|"]
        lines += [f"| {x['level']} | {x['target']} | {x['margin_db']:+.2f} | {'yes' if x['met'] else 'NO'} |"
                  for x in report["targets"]]
        lines.append("")
    speed = report.get("speed", {}).get(name)
    if speed:
        lines += ["### CPU speed", "", f"{speed['mvoxel_per_s']} Mvoxel/s for a whole engine call on a "
                  f"{'x'.join(map(str, speed['shape']))} volume with {speed['threads']} thread(s) on the shared "
                  "2-core development machine (best of 2; other jobs were running).", ""]
    checks = [c for c in report.get("ct_checks", []) if c["method"] == name]
    if checks:
        lines += ["### CT intensities", "", "Median |mean HU shift| / noise std over the flattest tiles "
                  "(target < 0.1):", ""]
        lines += [f"- {c['level']}: {c['median_shift_over_noise_std']:.3f} "
                  f"({100 * c['share_below_0.1']:.0f}% of tiles below 0.1)" for c in checks]
        lines.append("")
    return lines


def render_card(entry: Dict[str, Any], exported: Dict[str, Any], report: Optional[Dict[str, Any]],
                training: Dict[str, Any], notes: str = "") -> str:
    t = training
    spec: ModelSpec = exported["spec"]
    lines = [f"# Model card: {entry['name']} {entry['version']}", "",
             entry["title"], "",
             "| | |", "|---|---|",
             f"| architecture | {spec.architecture} ({spec.spatial_dims}D), {exported['parameters']:,} parameters |",
             f"| network arguments | `{json.dumps(spec.network)}` |",
             f"| input | `{json.dumps(spec.input)}` ({describe_input(spec.input)}; blind) |",
             f"| category | {spec.category} |",
             "| intended use | Research use only; not for diagnosis. |",
             f"| modalities | {', '.join(entry['modalities'])} |",
             f"| weights | `Resources/Models/{entry['file']}`, {entry['size']:,} bytes, sha256 `{entry['sha256']}` |",
             f"| release asset | {entry['url']} |",
             f"| licence | {entry['licence']} (weights); training images MIT / BSD-3-Clause (see data) |", "",
             "## Data", "",
             "Real images only, from pinned registry packages (`train/prepare_data.py`, checksums in "
             "`train/data_manifest.json`). Split by scan or image, never by slice or patch (`train/splits.json`):", "",
             f"- train ({len(t['split']['train'])}): {', '.join(t['split']['train'])}",
             f"- validation ({len(t['split']['val'])}): {', '.join(t['split']['val'])}",
             f"- test ({len(t['split']['test'])}): {', '.join(t['split']['test'])}", "",
             "Pairs are made on the fly (`train/dataset.py`): augmented clean patch -> "
             "`LowLightDenoiseLib.degrade.random_degradation` (photon-limited low light mainly, levels drawn "
             "from ranges) -> normaliser and noise estimate on the noisy region, as at inference.", "",
             "## Recipe", "",
             f"```json\n{json.dumps(t['recipe'], indent=1)}\n```", "",
             f"Trained with `{t['command']}` on {t['device']} for {t['epochs']} epochs ({t['minutes']} min, "
             f"stopped by {t['stop_reason']}); exported with "
             f"`python train/export.py {t['run']}"
             f"{' --name ' + entry['name'] if t['run_name'] != entry['name'] else ''} --version {entry['version']} "
             f"--modalities {','.join(entry['modalities'])} --report train/reports/{entry['name']}.json`.", ""]
    lines += render_metrics(report, entry["name"]) if report is not None else \
        ["## Test metrics", "", "Not measured yet: run `train/evaluate.py` and export with `--report`.", ""]
    lines += ["## Limitations", "",
              "- Trained on a shared 2-core CPU for a short time budget; more training (a GPU) would help.",
              "- Few real scans per modality (three CT volumes, two radiographs); the test split holds one scan "
              "of each kind, so the numbers have a large uncertainty and other scanners may differ.",
              "- Blind: the noise level is estimated from the image; images whose noise is not "
              "photon-limited/Gaussian-like are outside what it was trained for."]
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Export a training run to Resources/ (weights, registry entry, card).")
    parser.add_argument("run", type=Path)
    parser.add_argument("--version", required=True)
    parser.add_argument("--modalities", default="ct,mr,xray")
    parser.add_argument("--title", default="")
    parser.add_argument("--name", default="", help="model name in the registry (default: the run config's name)")
    parser.add_argument("--config", default=None, help="config path for the recorded training command")
    parser.add_argument("--report", type=Path, default=None, help="evaluation JSON from train/evaluate.py")
    parser.add_argument("--notes", default="", help="extra Markdown appended to the card")
    parser.add_argument("--models-json", type=Path, default=MODELS_JSON)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--cards-dir", type=Path, default=CARDS_DIR)
    parser.add_argument("--curves-dir", type=Path, default=CURVES_DIR,
                        help="where the compact copy of the run's log.csv goes (<name>-<version>.csv)")
    args = parser.parse_args(argv)

    exported = export_weights(args.run, args.version, args.models_dir, args.title, args.name)
    spec: ModelSpec = exported["spec"]
    report = json.loads(args.report.read_text()) if args.report else None
    card = args.cards_dir / f"{spec.name}.md"
    try:
        card_rel = str(card.resolve().relative_to(REPO))
    except ValueError:
        card_rel = str(card)
    entry = {"name": spec.name, "version": args.version, "title": spec.title, "category": spec.category,
             "spatial_dims": spec.spatial_dims, "modalities": [m for m in args.modalities.split(",") if m],
             "architecture": spec.architecture, "network": spec.network,
             "input": {k: v for k, v in spec.input.items() if k in ("noise_map", "vst", "vst_inverse")},
             "min_size": spec.min_size, "file": exported["file"],
             "url": URL_PATTERN.format(version=args.version, file=exported["file"]),
             "sha256": exported["sha256"], "size": exported["size"], "licence": LICENCE,
             "training": _registry_training(training_summary(args.run, args.config)),
             "metrics": metrics_from_report(report, spec.name) if report else {}, "model_card": card_rel}
    update_registry(entry, args.models_json)
    args.cards_dir.mkdir(parents=True, exist_ok=True)
    card.write_text(render_card(entry, exported, report, training_summary(args.run, args.config), args.notes))
    curve = write_curve(args.run, spec.name, args.version, args.curves_dir)
    print(f"{exported['file']}: {exported['size']} bytes, sha256 {exported['sha256']}; card {card_rel}"
          + (f"; training curve {_repo_relative(curve)}" if curve else "; no log.csv: no training curve kept"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
