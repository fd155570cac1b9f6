"""Fit the noise-type classifier of ``LowLightDenoiseLib.noise.classify_noise`` on real images.

Every sample is a random crop of a real scan or photograph (the sources and the split by image of
``train/prepare_data.py``: CT, MR, X-ray, nuclear medicine, ultrasound, fundus, microscopy,
photographs), mapped to [0, 1] by its range and degraded with one noise type at a random level
(the blind ranges of ``LowLightDenoiseLib.degrade.random_degradation``):

=============  ====================================================================
label          degradation
=============  ====================================================================
gaussian       ``Gaussian(sigma)``, sigma log-uniform 0.01..0.15
poisson        ``LowLight(brightness, gamma, peak, read_noise)``, peak 10..1000 photons,
               read noise 0..3 photons (exactly 0 in a quarter of the samples)
salt_pepper    ``SaltPepper(amount, salt_fraction)``, amount 0.005..0.1
speckle        ``Speckle(sigma)``, sigma 0.05..0.5
rician         ``Rician(sigma)``, sigma log-uniform 0.01..0.15
=============  ====================================================================

The features are ``LowLightDenoiseLib.noise.noise_features``; the model is a multinomial logistic
regression (standardised features, L2 penalty chosen on the validation images) fitted with
L-BFGS. Training images: split "train"; penalty selection: split "val"; reported accuracy and
confusion matrix: split "test" (held-out scans never seen in fitting). The images are the prepared
``train/data/<id>.npy`` where present (what ``prepare_data.convert`` writes), else converted from
``--source-dir``. ``classify_noise``'s sixth label, ``low_noise``, is not fitted: it comes from the noise
level (``LowLightDenoiseLib.noise.low_noise_probability``); the report gives the whole rule's accuracy on
the held-out samples and its labels on clean held-out crops. Writes ``Resources/NoiseClassifier.json`` and
``train/reports/noise_classifier.md``.

Usage::

    python train/train_noise_classifier.py [--source-dir ~/.cache/lowlight-devdata/x] [--per-class 16]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy.optimize import minimize

TRAIN_DIR = Path(__file__).resolve().parent
REPO = TRAIN_DIR.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(TRAIN_DIR))

from LowLightDenoiseLib.degrade import Degradation, random_degradation  # noqa: E402
from LowLightDenoiseLib.noise import (  # noqa: E402
    FEATURE_NAMES,
    LOW_NOISE_SIGMA,
    MODEL_LABELS,
    NOISE_LABELS,
    classifier_probabilities,
    low_noise_probability,
    noise_features,
    relative_noise_sigma,
)
from prepare_data import DATA_DIR, DEFAULT_SOURCE, SOURCES, Source, convert  # noqa: E402

OUT_JSON = REPO / "Resources" / "NoiseClassifier.json"
OUT_REPORT = TRAIN_DIR / "reports" / "noise_classifier.md"
KIND_OF_LABEL = {"gaussian": "gaussian", "poisson": "lowlight", "salt_pepper": "salt_pepper",
                 "speckle": "speckle", "rician": "rician"}
PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def random_crop(array: np.ndarray, meta: Dict, rng: np.random.Generator) -> Optional[np.ndarray]:
    """A random 2D crop (or a few-slice 3D crop of a volume) with real content, or None."""
    if meta["dims"] == 3 and array.shape[0] >= 4:
        depth = int(rng.integers(4, min(12, array.shape[0]) + 1))
    else:
        depth = 1
    side_y = int(min(array.shape[1], rng.integers(64, 257)))
    side_x = int(min(array.shape[2], rng.integers(64, 257)))
    z0 = int(rng.integers(0, array.shape[0] - depth + 1))
    y0 = int(rng.integers(0, array.shape[1] - side_y + 1))
    x0 = int(rng.integers(0, array.shape[2] - side_x + 1))
    crop = array[z0:z0 + depth, y0:y0 + side_y, x0:x0 + side_x].astype(np.float64)
    lo, hi = float(crop.min()), float(crop.max())
    if not hi > lo:
        return None
    u = (crop - lo) / (hi - lo)
    if u.std() < 0.05:  # mostly background: no structure to degrade
        return None
    return u


def make_samples(sources: List[Tuple[Source, np.ndarray, Dict]], per_class: int, seed: int
                 ) -> Tuple[np.ndarray, np.ndarray, List[str], List[str], np.ndarray]:
    """Features, integer labels, image ids, degradation descriptions and relative noise sigmas
    (:func:`~LowLightDenoiseLib.noise.relative_noise_sigma`) of ``per_class`` crops per class and image."""
    rng = np.random.default_rng(seed)
    feats, labels, ids, descr, sigmas = [], [], [], [], []
    for source, array, meta in sources:
        for li, label in enumerate(MODEL_LABELS):
            made = 0
            for _ in range(per_class * 20):
                if made == per_class:
                    break
                u = random_crop(array, meta, rng)
                if u is None:
                    continue
                deg: Degradation = random_degradation(rng, kinds=[KIND_OF_LABEL[label]])
                if label == "poisson" and rng.random() < 0.25:  # pure shot noise: whole photon counts
                    deg = dataclasses.replace(deg, read_noise=0.0)
                y = deg.apply(u, rng)
                feats.append(noise_features(y))
                sigmas.append(relative_noise_sigma(y))
                labels.append(li)
                ids.append(source.id)
                descr.append(deg.describe())
                made += 1
    return np.array(feats), np.array(labels), ids, descr, np.array(sigmas)


def clean_crops(sources: List[Tuple[Source, np.ndarray, Dict]], per_image: int, seed: int
                ) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Features, relative noise sigmas and image ids of ``per_image`` crops per image with no added noise."""
    rng = np.random.default_rng(seed)
    feats, sigmas, ids = [], [], []
    for source, array, meta in sources:
        made = 0
        for _ in range(per_image * 20):
            if made == per_image:
                break
            u = random_crop(array, meta, rng)
            if u is None:
                continue
            feats.append(noise_features(u))
            sigmas.append(relative_noise_sigma(u))
            ids.append(source.id)
            made += 1
    return np.array(feats), np.array(sigmas), ids


def full_predictions(params: Dict, x: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Indices into NOISE_LABELS of ``classify_noise``'s label: the model's probabilities shared with low_noise."""
    probs = classifier_probabilities(x, params)
    impulses = 10.0 ** x[:, FEATURE_NAMES.index("log_impulse_fraction")] - 1e-4
    q = np.array([low_noise_probability(s, i) for s, i in zip(sigmas, impulses)])
    return np.argmax(np.concatenate([probs * (1.0 - q[:, None]), q[:, None]], axis=1), axis=1)


def fit_logistic(x: np.ndarray, y: np.ndarray, penalty: float) -> Dict:
    """Multinomial logistic regression on standardised features (mean cross-entropy + penalty * |W|^2)."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    n, f = z.shape
    k = len(MODEL_LABELS)
    onehot = np.eye(k)[y]

    def loss(theta: np.ndarray) -> Tuple[float, np.ndarray]:
        w, b = theta[: k * f].reshape(k, f), theta[k * f:]
        logits = z @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        value = -np.mean(np.sum(onehot * logp, axis=1)) + penalty * np.sum(w * w)
        g = (p - onehot) / n
        grad_w = g.T @ z + 2 * penalty * w
        return float(value), np.concatenate([grad_w.ravel(), g.sum(axis=0)])

    res = minimize(loss, np.zeros(k * f + k), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    w, b = res.x[: k * f].reshape(k, f), res.x[k * f:]
    return {"labels": list(MODEL_LABELS), "features": list(FEATURE_NAMES), "mean": mean.tolist(),
            "scale": scale.tolist(), "weights": w.tolist(), "bias": b.tolist(), "penalty": penalty}


def confusion(params: Dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    pred = np.argmax(classifier_probabilities(x, params), axis=1)
    k = len(MODEL_LABELS)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y, pred):
        cm[t, p] += 1
    return cm


def _markdown_confusion(cm: np.ndarray) -> str:
    head = "| true \\ predicted | " + " | ".join(MODEL_LABELS) + " | recall |\n"
    head += "|---" * (len(MODEL_LABELS) + 2) + "|\n"
    rows = []
    for i, label in enumerate(MODEL_LABELS):
        recall = cm[i, i] / max(cm[i].sum(), 1)
        rows.append(f"| {label} | " + " | ".join(str(v) for v in cm[i]) + f" | {recall:.1%} |")
    return head + "\n".join(rows) + "\n"


def load_split(root: Path, split: str, data_dir: Path = DATA_DIR) -> List[Tuple[Source, np.ndarray, Dict]]:
    """The split's images: the prepared ``train/data/<id>.npy`` where present (what ``convert`` wrote), else
    converted from the unpacked packages under ``root``."""
    out = []
    for source in SOURCES:
        if source.split == split:
            npy, meta_path = data_dir / f"{source.id}.npy", data_dir / f"{source.id}.json"
            if npy.is_file() and meta_path.is_file():
                array, meta = np.load(npy, mmap_mode="r"), json.loads(meta_path.read_text())
            else:
                array, meta = convert(source, root)
            out.append((source, array, meta))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-dir", type=Path, default=DEFAULT_SOURCE,
                        help=f"unpacked development data (default {DEFAULT_SOURCE}; see train/prepare_data.py)")
    parser.add_argument("--per-class", type=int, default=16, help="crops per class and training image")
    parser.add_argument("--heldout-per-class", type=int, default=40, help="crops per class and held-out image")
    parser.add_argument("--clean-per-image", type=int, default=20, help="clean crops per held-out image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-json", type=Path, default=OUT_JSON)
    parser.add_argument("--out-report", type=Path, default=OUT_REPORT)
    args = parser.parse_args(argv)
    if not args.source_dir.is_dir() and not DATA_DIR.is_dir():
        parser.error(f"{args.source_dir} does not exist; run /work/shared/data/fetch_dev_data.sh or "
                     "train/prepare_data.py first")

    t0 = time.perf_counter()
    splits = {name: load_split(args.source_dir, name) for name in ("train", "val", "test")}
    per_class = {"train": args.per_class, "val": args.heldout_per_class // 2, "test": args.heldout_per_class}
    data = {}
    for i, (name, sources) in enumerate(splits.items()):
        data[name] = make_samples(sources, per_class[name], args.seed + 1000 * i)
        print(f"{name}: {len(data[name][1])} samples from {len(sources)} images "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

    xtr, ytr = data["train"][:2]
    xva, yva = data["val"][:2]
    xte, yte = data["test"][:2]
    scores = {}
    for penalty in PENALTIES:
        params = fit_logistic(xtr, ytr, penalty)
        scores[penalty] = float(np.trace(confusion(params, xva, yva)) / len(yva))
        print(f"penalty {penalty:g}: validation accuracy {scores[penalty]:.3f}", flush=True)
    best = max(PENALTIES, key=lambda p: (scores[p], p))
    params = fit_logistic(xtr, ytr, best)
    cm_train, cm_val, cm_test = (confusion(params, x, y) for x, y in ((xtr, ytr), (xva, yva), (xte, yte)))
    acc = {name: float(np.trace(cm) / cm.sum()) for name, cm in
           (("train", cm_train), ("val", cm_val), ("test", cm_test))}
    # classify_noise's whole rule (model + low_noise) on the same held-out samples, and on clean held-out crops
    full_test = full_predictions(params, xte, data["test"][4])
    acc_full = float(np.mean(full_test == yte))
    low_idx = NOISE_LABELS.index("low_noise")
    low_by_class = {label: int(np.sum((full_test == low_idx) & (yte == li))) for li, label in enumerate(MODEL_LABELS)}
    cx, csig, cids = clean_crops(splits["val"] + splits["test"], args.clean_per_image, args.seed + 5000)
    clean_full = full_predictions(params, cx, csig)
    clean_model = np.argmax(classifier_probabilities(cx, params), axis=1)
    clean_rows = []
    for sid in dict.fromkeys(cids):
        sel = np.array([i == sid for i in cids])
        model_counts = {MODEL_LABELS[k]: int(np.sum(clean_model[sel] == k)) for k in range(len(MODEL_LABELS))}
        clean_rows.append(f"| {sid} | {int(sel.sum())} | {np.median(csig[sel]):.4f} | "
                          f"{np.mean(clean_full[sel] == low_idx):.0%} | "
                          + ", ".join(f"{k} {v}" for k, v in model_counts.items() if v) + " |")
    per_image = {}
    pred_test = np.argmax(classifier_probabilities(xte, params), axis=1)
    for sid in sorted(set(data["test"][2])):
        sel = np.array([i == sid for i in data["test"][2]])
        per_image[sid] = float(np.mean(pred_test[sel] == yte[sel]))

    command = "python train/train_noise_classifier.py " + " ".join(argv if argv is not None else sys.argv[1:])
    params.update({
        "model": "multinomial logistic regression on LowLightDenoiseLib.noise.noise_features",
        "trained_on": {name: [s.id for s, _, _ in srcs] for name, srcs in splits.items()},
        "samples": {name: int(len(d[1])) for name, d in data.items()},
        "accuracy": acc, "accuracy_test_with_low_noise_rule": acc_full, "low_noise_sigma": LOW_NOISE_SIGMA,
        "command": command.strip(), "seed": args.seed,
    })
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(params, indent=1) + "\n")

    report = [
        "# Noise-type classifier: held-out accuracy\n",
        "Generated by `" + command.strip() + "` "
        f"({time.perf_counter() - t0:.0f} s on the development machine's CPU).\n",
        "Samples are random crops (64-256 pixels a side; 4-12 slices for volumes) of real images, mapped to "
        "[0, 1] by their range and degraded with one noise type at a random level (ranges in the script's "
        "docstring). The split is by image, from `train/splits.json`: fitted on the training images, the "
        "L2 penalty chosen on the validation images, and accuracy reported on the test images, which "
        "were never seen while fitting.\n",
        f"- training images ({len(splits['train'])}): {', '.join(s.id for s, _, _ in splits['train'])}",
        f"- validation images ({len(splits['val'])}): {', '.join(s.id for s, _, _ in splits['val'])}",
        f"- held-out test images ({len(splits['test'])}): {', '.join(s.id for s, _, _ in splits['test'])}\n",
        f"Penalty chosen: {best:g} (validation accuracy per penalty: "
        + ", ".join(f"{p:g}: {s:.3f}" for p, s in scores.items()) + ").\n",
        "| split | samples | accuracy |", "|---|---|---|",
        *(f"| {name} | {len(data[name][1])} | {acc[name]:.1%} |" for name in ("train", "val", "test")),
        "\n## Held-out test confusion matrix (rows: true type, columns: predicted)\n",
        _markdown_confusion(cm_test),
        "## The low_noise label\n",
        "`classify_noise` also answers `low_noise` when the wavelet noise sigma is small against the image's robust "
        f"window (probability 1/2 at {LOW_NOISE_SIGMA:g}; `LowLightDenoiseLib.noise.LOW_NOISE_SIGMA`), decided from "
        "the noise level, not by the model. On the held-out test samples above (every one noisy) the whole rule "
        f"scores {acc_full:.1%} (model alone {acc['test']:.1%}); samples it calls low_noise, by true type: "
        + ", ".join(f"{k} {v}" for k, v in low_by_class.items()) + ".\n",
        "Clean crops (no added noise; their own scanner noise only) of the validation and test images:\n",
        "| image | crops | median relative sigma | labelled low_noise | model's label without the rule |",
        "|---|---|---|---|---|", *clean_rows, "",
        "## Held-out accuracy per test image\n",
        "| image | accuracy |", "|---|---|",
        *(f"| {sid} | {a:.1%} |" for sid, a in per_image.items()),
        "\n## Validation confusion matrix\n",
        _markdown_confusion(cm_val),
    ]
    args.out_report.parent.mkdir(parents=True, exist_ok=True)
    args.out_report.write_text("\n".join(report) + "\n")
    print(f"test accuracy {acc['test']:.3f}; wrote {args.out_json} and {args.out_report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
