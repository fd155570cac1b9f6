"""Probe: can a small learned fusion of default-2d and oidn-2d beat their plain average (ensemble-2d)?

Issue 14 asks for a default 0.3 dB above BM3D-VST given the true noise; on the test split ensemble-2d
draws level with it. Training a bigger network needs a GPU; a fusion head on top of the two frozen
networks' outputs trains in minutes on a CPU because the networks run once per training image.

1. ``collect``: central crops of the train and validation scans, degraded through the engine's own
   ``simulate_volume`` (train: peak log-uniform 10-1000 photons, read noise 0-3, several seeds; val: the
   levels and seeds of ``train/evaluate.py``), run through the engine with ``oidn-2d`` and ``default-2d``
   (blind, as a user would), saved in the engine's normalised units with the engine's noise estimate.
2. ``fit``: a small dilated CNN sees ``[(o - d) / s, (y - m) / s, m, s]`` (``o, d``: the two outputs,
   ``m`` their mean, ``y`` the noisy input, ``s`` the estimated noise std at ``m``) and predicts a
   correction ``r * s`` to ``m``; its last layer starts at zero, so before training it is ensemble-2d.
   Loss: MSE relative to the noise variance (default-2d's recipe). Reported: validation PSNR in physical
   units of oidn-2d, default-2d, their mean and the fusion, per level (the evaluate.py levels).

    python train/probe_fusion.py collect --out /tmp/fusion
    python train/probe_fusion.py fit --data /tmp/fusion --minutes 8 --threads 1 --out train/reports/fusion-probe-val
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parent
if str(TRAIN_DIR.parent) not in sys.path:
    sys.path.insert(0, str(TRAIN_DIR.parent))

from LowLightDenoiseLib.degrade import LowLight, simulate_volume  # noqa: E402
from LowLightDenoiseLib.methods import get_method  # noqa: E402
from LowLightDenoiseLib.metrics import psnr  # noqa: E402
from LowLightDenoiseLib.noise import estimate_noise  # noqa: E402
from LowLightDenoiseLib.normalize import Normalizer  # noqa: E402
from LowLightDenoiseLib.pipeline import denoise_volume  # noqa: E402
from train.evaluate import DENOISE_LEVELS, load_test_scans, task_levels  # noqa: E402


def _sample(scan, degradation, seed: int, methods) -> Dict[str, np.ndarray]:
    noisy = simulate_volume(scan.clean, degradation, seed=seed)
    norm = Normalizer.fit(noisy.array)
    outs = [norm.forward(denoise_volume(noisy, m, device="cpu").volume.array) for m in methods]
    y = norm.forward(noisy.array)
    noise = estimate_noise(y)
    m = 0.5 * (outs[0] + outs[1])
    return {"y": y.astype(np.float32), "o": outs[0].astype(np.float32), "d": outs[1].astype(np.float32),
            "s": noise.std_at(m).astype(np.float32), "x": norm.forward(scan.clean.array).astype(np.float32),
            "scale": np.float32(norm.scale), "range": np.float32(scan.clean.array.max() - scan.clean.array.min())}


def collect(out: Path, slices: int, side: int, draws: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    methods = [get_method("oidn-2d"), get_method("default-2d")]
    rng = np.random.default_rng(1234)
    for split in ("val", "train"):
        scans = load_test_scans(split, slices=slices if split == "train" else 4,
                                side=side if split == "train" else None)
        samples: List[Dict[str, np.ndarray]] = []
        labels = []
        t0 = time.perf_counter()
        for scan in scans:
            if split == "val":
                for level in task_levels(DENOISE_LEVELS):
                    samples.append(_sample(scan, level.degradation, level.seed, methods))
                    labels.append(f"{scan.name}|{level.label}")
            else:
                for _ in range(draws):
                    peak = float(math.exp(rng.uniform(math.log(10), math.log(1000))))
                    deg = LowLight(peak=peak, read_noise=float(rng.uniform(0, 3)))
                    samples.append(_sample(scan, deg, int(rng.integers(1 << 30)), methods))
                    labels.append(f"{scan.name}|peak {peak:.0f}")
            print(f"{split} {scan.name}: {time.perf_counter() - t0:.0f} s", flush=True)
        np.savez(out / f"{split}.npz", labels=np.array(labels),
                 **{f"{k}{i}": v for i, s in enumerate(samples) for k, v in s.items()})


def _load(path: Path):
    z = np.load(path)
    labels = list(z["labels"])
    return labels, [{k: z[f"{k}{i}"] for k in ("y", "o", "d", "s", "x", "scale", "range")} for i in range(len(labels))]


def _inputs(s: Dict[str, np.ndarray]) -> np.ndarray:
    m = 0.5 * (s["o"] + s["d"])
    sd = np.maximum(s["s"], 1e-3)
    return np.stack([(s["o"] - s["d"]) / sd, (s["y"] - m) / sd, m, sd], axis=1).astype(np.float32)  # (z, 4, h, w)


def _network(width: int):
    import torch.nn as nn

    layers: List[nn.Module] = [nn.Conv2d(4, width, 3, padding=1), nn.ReLU()]
    for d in (1, 2, 4, 2, 1):
        layers += [nn.Conv2d(width, width, 3, padding=d, dilation=d), nn.ReLU()]
    last = nn.Conv2d(width, 1, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def _psnr(out: np.ndarray, s: Dict[str, np.ndarray]) -> float:
    """PSNR in physical units (normalised values times the normaliser's scale) over the clean crop's range."""
    return psnr(out * s["scale"], s["x"] * s["scale"], float(s["range"]))


def fit(data: Path, minutes: float, width: int, patch: int, batch: int, lr: float, threads: int,
        report: Optional[Path] = None) -> None:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    _, train = _load(data / "train.npz")
    vlabels, val = _load(data / "val.npz")
    xs = [(_inputs(s), s["x"], 0.5 * (s["o"] + s["d"]), np.maximum(s["s"], 1e-3)) for s in train
          if min(s["x"].shape[1:]) >= patch]
    net = _network(width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(0)

    def evaluate() -> Dict[str, Dict[str, float]]:
        table: Dict[str, Dict[str, List[float]]] = {}
        net.eval()
        for label, s in zip(vlabels, val):
            with torch.no_grad():
                r = net(torch.from_numpy(_inputs(s)))[:, 0].numpy()
            m = 0.5 * (s["o"] + s["d"])
            level = label.split("|")[1]
            for name, out in (("oidn-2d", s["o"]), ("default-2d", s["d"]), ("mean", m),
                              ("fusion", m + r * np.maximum(s["s"], 1e-3))):
                table.setdefault(level, {}).setdefault(name, []).append(_psnr(out, s))
        net.train()
        return {lv: {k: round(float(np.mean(v)), 3) for k, v in t.items()} for lv, t in table.items()}

    print(json.dumps(evaluate()), flush=True)
    t0, step = time.perf_counter(), 0
    while time.perf_counter() - t0 < minutes * 60:
        inp, tgt, mean, sd = [], [], [], []
        for _ in range(batch):
            a, x, m, s = xs[rng.integers(len(xs))]
            z = rng.integers(a.shape[0])
            i, j = rng.integers(a.shape[2] - patch + 1), rng.integers(a.shape[3] - patch + 1)
            sl = (slice(i, i + patch), slice(j, j + patch))
            inp.append(a[z][(slice(None),) + sl])
            tgt.append(x[z][sl]); mean.append(m[z][sl]); sd.append(s[z][sl])
        inp_t = torch.from_numpy(np.stack(inp))
        t, mm, ss = (torch.from_numpy(np.stack(v))[:, None] for v in (tgt, mean, sd))
        out = mm + net(inp_t) * ss
        loss = (((out - t) / ss) ** 2)[..., 8:-8, 8:-8].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 500 == 0:
            print(f"step {step} ({time.perf_counter() - t0:.0f} s) loss {loss.item():.4f}", flush=True)
        if step % 2000 == 0:
            print(json.dumps(evaluate()), flush=True)
    final = evaluate()
    print("final", json.dumps(final), flush=True)
    torch.save(net.state_dict(), data / "fusion.pt")
    if report is not None:
        command = "python train/probe_fusion.py " + " ".join(sys.argv[1:])
        names = ("oidn-2d", "default-2d", "mean", "fusion")
        lines = ["# A learned fusion of default-2d and oidn-2d against their mean (val split)", "",
                 f"Command: `{command}` (after `python train/probe_fusion.py collect --out {data}`)", "",
                 f"Fusion head: {sum(p.numel() for p in net.parameters())} parameters, {step} steps of {batch} patches "
                 f"of {patch} px in {minutes:g} min on {threads} CPU thread(s); training data: {len(xs)} low-light draws "
                 f"(central crops of the train-split images at least {patch} px wide, 3 draws each). Validation: the levels, "
                 "seeds and 4 central slices of train/evaluate.py; mean PSNR (dB) over the 6 validation scans. "
                 "`mean` is ensemble-2d.", "", "| level | " + " | ".join(names) + " | fusion - mean |",
                 "|---" * (len(names) + 2) + "|"]
        lines += [f"| {lv} | " + " | ".join(f"{t[n]:.2f}" for n in names) + f" | {t['fusion'] - t['mean']:+.2f} |"
                  for lv, t in final.items()]
        report.parent.mkdir(parents=True, exist_ok=True)
        report.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--slices", type=int, default=6)
    c.add_argument("--side", type=int, default=192)
    c.add_argument("--draws", type=int, default=3)
    f = sub.add_parser("fit")
    f.add_argument("--data", type=Path, required=True)
    f.add_argument("--minutes", type=float, default=20)
    f.add_argument("--width", type=int, default=32)
    f.add_argument("--patch", type=int, default=64)
    f.add_argument("--batch", type=int, default=16)
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--out", type=Path, default=None, help="write the final table to OUT.md")
    args = parser.parse_args()
    if args.command == "collect":
        collect(args.out, args.slices, args.side, args.draws)
    else:
        fit(args.data, args.minutes, args.width, args.patch, args.batch, args.lr, args.threads, args.out)


if __name__ == "__main__":
    main()
