"""The real noisy scan of the adaptation report: the proton-density brain MR series (real scanner noise).

No clean reference exists, so the figures are no-reference ones, each for the un-adapted and the adapted
model (``evaluation.run_methods`` rows: wavelet noise estimate, edge preservation), plus:

* noise in flat tissue: the median standard deviation inside the 10 % flattest 8 x 8 tissue tiles (flatness
  judged on the smoothed input, so every method is measured on the same tiles);
* the residual ``input - output``, which should be noise only: ``lowpass`` is the standard deviation of the
  residual smoothed by a Gaussian (sigma 2 px) over its own standard deviation, next to the same ratio for the
  residual's pixels shuffled (white noise: structure-free); ``edge corr`` is the correlation of the local
  residual energy with the output's gradient magnitude (anatomy left in the residual shows up at edges).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from scipy import ndimage

from LowLightDenoiseLib.evaluation import run_methods
from LowLightDenoiseLib.methods import get_method
from LowLightDenoiseLib.methods.adaptation import AdaptSettings, adapt
from LowLightDenoiseLib.options import RunOptions
from LowLightDenoiseLib.tables import markdown_table
from LowLightDenoiseLib.volume import Volume
from train.adapt_cases import DATA_DIR

SCAN = "mr_brain_pd_volume"
CPU = RunOptions(device="cpu")


def load_real(slices: Optional[int] = None) -> Volume:
    meta = json.loads((DATA_DIR / f"{SCAN}.json").read_text())
    array = np.load(DATA_DIR / f"{SCAN}.npy").astype(np.float32)
    if slices:
        z0 = max(0, (array.shape[0] - slices) // 2)
        array = array[z0:z0 + slices]
    return Volume(array, spacing=tuple(meta["spacing_xyz"]), metadata={"path": f"{SCAN}.npy"})


def flat_tiles(volume: np.ndarray, block: int = 8, share: float = 0.1) -> List[tuple]:
    """The ``share`` flattest ``block`` tiles of tissue (mean above 20 % of the bright end), per the smoothed input."""
    smooth = ndimage.gaussian_filter(volume.astype(np.float64), sigma=(0, 2, 2))
    bright = float(np.percentile(volume, 99.5))
    tiles = []
    for k in range(volume.shape[0]):
        for y in range(0, volume.shape[1] - block + 1, block):
            for x in range(0, volume.shape[2] - block + 1, block):
                sl = (k, slice(y, y + block), slice(x, x + block))
                if smooth[sl].mean() > 0.2 * bright:
                    tiles.append((float(smooth[sl].std()), sl))
    tiles.sort(key=lambda t: t[0])
    return [sl for _, sl in tiles[:max(1, int(len(tiles) * share))]]


def residual_structure(residual: np.ndarray, output: np.ndarray, rng: np.random.Generator) -> Dict[str, float]:
    """How much the residual looks like anything but noise (see the module docstring)."""
    def lowpass(r: np.ndarray) -> float:
        return float(ndimage.gaussian_filter(r, sigma=(0, 2, 2)).std() / max(r.std(), 1e-12))

    energy = ndimage.gaussian_filter(np.abs(residual), sigma=(0, 2, 2)).ravel()
    grad = np.hypot(ndimage.sobel(ndimage.gaussian_filter(output, (0, 1, 1)), axis=1),
                    ndimage.sobel(ndimage.gaussian_filter(output, (0, 1, 1)), axis=2)).ravel()
    shuffled = rng.permutation(residual.ravel()).reshape(residual.shape)
    return {"lowpass": lowpass(residual), "lowpass_white": lowpass(shuffled),
            "edge_corr": float(np.corrcoef(energy, grad)[0, 1])}


def residual_figure(volume: Volume, outputs: Dict[str, np.ndarray], path: Path) -> Path:
    from LowLightDenoiseLib.figures import _plt, _save

    plt = _plt()
    mid = volume.array.shape[0] // 2
    image = volume.array[mid]
    lo, hi = np.percentile(image, (0.5, 99.5))
    residuals = {k: image - v[mid] for k, v in outputs.items()}
    lim = max(float(np.percentile(np.abs(r), 99.5)) for r in residuals.values()) or 1.0
    panels = [("input (real noise)", image, "gray", lo, hi)]
    panels += [(k, v[mid], "gray", lo, hi) for k, v in outputs.items()]
    panels += [(f"input - {k}", r, "RdBu_r", -lim, lim) for k, r in residuals.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.7 * len(panels), 3.0), squeeze=False)
    for ax, (label, img, cmap, vmin, vmax) in zip(axes[0], panels):
        ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{SCAN}, slice {mid}: outputs and residuals (same scales)", fontsize=9)
    return _save(fig, path)


def real_scan_section(budget: float, settings: AdaptSettings, figures: Path,
                      slices: Optional[int] = None) -> Dict[str, Any]:
    volume = load_real(slices)
    base = get_method("default-2d", device="cpu")
    adapted = adapt(volume, base, budget, CPU, settings=settings)
    done = run_methods(volume, [base, adapted], CPU)
    label = f"adapted {budget:g} s"
    outputs = {"default-2d": done.outcomes[0].volume.array, label: done.outcomes[1].volume.array}
    tiles = flat_tiles(volume.array)
    rng = np.random.default_rng(0)
    numbers = {"flat_input": float(np.median([volume.array[sl].std() for sl in tiles])), "tiles": len(tiles)}
    body = [["input", "", "", f"{numbers['flat_input']:.2f}", _f(done.rows[0].get("noise_sigma_input")), "", "",
             "", ""]]
    for (name, out), row in zip(outputs.items(), done.rows):
        flat = float(np.median([out[sl].std() for sl in tiles]))
        structure = residual_structure(volume.array - out, out, rng)
        numbers[name] = dict(structure, flat=flat, **{k: row.get(k) for k in (
            "noise_sigma_output", "edge_preservation", "adapt_kept", "adapt_steps", "adapt_risk_before",
            "adapt_risk_after", "adapt_loss_before", "adapt_loss_after", "adapt_edges_before", "adapt_edges_after")})
        body.append([name, _f(row.get("adapt_steps")), _f(row.get("adapt_kept")), f"{flat:.2f}",
                     _f(row.get("noise_sigma_output")), _f(row.get("edge_preservation"), 3),
                     f"{structure['lowpass']:.3f} (white {structure['lowpass_white']:.3f})",
                     f"{structure['edge_corr']:+.3f}", _f(row.get("seconds"), 1)])
    path = residual_figure(volume, outputs, figures / "real-mr-pd-residuals.png")
    shape = " x ".join(str(s) for s in volume.array.shape)
    markdown = [
        "## The real noisy scan: proton-density brain MR (no clean reference)", "",
        f"`{SCAN}` (test split; {shape} voxels, real scanner noise, signal units of the DICOM series). default-2d "
        f"as it is and adapted to this scan for {budget:g} s ({adapted.record.sentence()}). Flat tissue: the "
        f"{numbers['tiles']} flattest 8 x 8 tiles with a mean above 20 % of the bright end (judged on the smoothed "
        "input, the same tiles for every row). Residual = input - output; `lowpass` = std of the residual "
        "smoothed by a Gaussian of 2 px over its own std, next to the same for its pixels shuffled (pure noise); "
        "`edge corr` = correlation of the local residual energy with the output's gradient magnitude.", "",
        markdown_table(["", "steps", "kept", "std in flat tissue", "wavelet noise estimate", "edge preservation",
                        "residual lowpass", "residual edge corr", "denoise s"], body), "",
        f"![residuals]({figures.name}/{path.name})", ""]
    return {"numbers": numbers, "rows": done.rows, "markdown": markdown, "figure": f"{figures.name}/{path.name}"}


def _f(value: Any, digits: int = 2) -> str:
    return "" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))
