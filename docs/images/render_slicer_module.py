"""Make docs/images/slicer-module.png: the module's real .ui beside before/after slices of a real CT.

    python docs/images/render_slicer_module.py

No 3D Slicer can run where this is made, so the picture is assembled and says so: the panel is the
module's real ``LowLightDenoise.ui`` rendered by Qt 5.15 (PyQt5) offscreen, with stand-ins only for the
CTK/qMRML widgets (Testing/Python/ui_standins.py), its boxes filled as the module fills them; the slices
are the shipped low-light CT sample and what ``default-2d`` makes of it, computed by the library.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "Testing" / "Python")]

import ui_standins  # noqa: E402

from LowLightDenoiseLib import mrml  # noqa: E402
from LowLightDenoiseLib.jobs.work import run_denoise  # noqa: E402
from LowLightDenoiseLib.options import FLIP_COUNTS, MODES, RunOptions  # noqa: E402
from LowLightDenoiseLib.volume import Volume  # noqa: E402

SAMPLES = REPO / "LowLightDenoise" / "Resources" / "SampleData"
OUT = Path(__file__).resolve().parent / "slicer-module.png"


def read(path: Path) -> Volume:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    return Volume(sitk.GetArrayFromImage(image), spacing=image.GetSpacing(), origin=image.GetOrigin(),
                  direction=image.GetDirection())


def panel(status: str) -> np.ndarray:
    """The module's widget as Slicer would lay it out (sections expanded), as an RGB array."""
    from PyQt5 import QtWidgets

    widget = ui_standins.load_module_ui(mrml.method_choices())
    find = lambda cls, name: widget.findChild(cls, name)  # noqa: E731
    fills = {"modeComboBox": MODES, "deviceComboBox": ("auto", "cuda", "cpu"),
             "flipsComboBox": [str(n) for n in FLIP_COUNTS], "noiseTypeComboBox": mrml.noise_types(),
             "axisComboBox": ("k - as stored (axial for axial scans)", "j - coronal for axial scans",
                              "i - sagittal for axial scans")}
    for name, items in fills.items():
        find(QtWidgets.QComboBox, name).addItems(list(items))
    find(QtWidgets.QComboBox, "inputSelector").addItem("CTChestCropLowLight")
    find(QtWidgets.QComboBox, "referenceSelector").addItem("CTChestCrop")
    method = find(QtWidgets.QComboBox, "methodComboBox")
    method.setCurrentIndex(max(method.findData("default-2d"), 0))
    find(QtWidgets.QCheckBox, "autoStrengthCheckBox").setChecked(True)
    find(QtWidgets.QProgressBar, "progressBar").setValue(100)
    find(QtWidgets.QLabel, "statusLabel").setText(status)
    for name in ("applyButton", "compareButton", "simulateButton", "openLogButton"):
        find(QtWidgets.QPushButton, name).setEnabled(True)
    widget.resize(widget.minimumSizeHint().width(), widget.sizeHint().height())
    image = widget.grab().toImage().convertToFormat(4)  # QImage.Format_RGB32
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits().asstring(height * image.bytesPerLine()), np.uint8)
    return data.reshape(height, image.bytesPerLine() // 4, 4)[:, :width, 2::-1]


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noisy, clean = read(SAMPLES / "ct_chest_crop_lowlight.nrrd"), read(SAMPLES / "ct_chest_crop.nrrd")
    t0 = time.perf_counter()
    comparison = run_denoise(noisy, ["default-2d"], RunOptions(device="cpu"), reference=clean)
    seconds = time.perf_counter() - t0
    rows = comparison.rows
    out = comparison.outcomes[0].volume.array
    status = (f"default-2d: {rows[1]['seconds']:.1f} s on cpu (2d). PSNR {rows[0]['psnr']:.1f} -> "
              f"{rows[1]['psnr']:.1f} dB against the clean crop.")
    ui = panel(status)
    k = noisy.array.shape[0] // 2
    lo, hi = -1000.0, 400.0  # lung-to-soft-tissue window (HU)
    fig = plt.figure(figsize=(13.5, 7.6), dpi=100)
    grid = fig.add_gridspec(2, 3, width_ratios=[1.15, 1, 1], height_ratios=[1, 0.08])
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(ui)
    ax.set_title("Low-Light Denoise panel (real .ui, Qt 5.15 offscreen)", fontsize=10)
    ax.axis("off")
    for col, (title, image) in enumerate([(f"Input: low-light CT sample, slice {k} ({rows[0]['psnr']:.1f} dB)",
                                           noisy.array[k]),
                                          (f"Output: default-2d ({rows[1]['psnr']:.1f} dB)", out[k])], start=1):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(np.clip((image - lo) / (hi - lo), 0, 1), cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    caption = fig.add_subplot(grid[1, :])
    caption.axis("off")
    caption.text(0, 0.5, "Assembled outside 3D Slicer (none can run where this was made): the module's real .ui "
                 "rendered by PyQt5 with stand-ins for the CTK/qMRML widgets, beside slices of the shipped chest "
                 "CT crop\nas a simulated low-light acquisition (50 photons) and default-2d's output computed by "
                 f"the library in {seconds:.1f} s. Window -1000..400 HU. Research use only; not for diagnosis. "
                 "Made by docs/images/render_slicer_module.py.", fontsize=8.5, va="center")
    fig.tight_layout()
    fig.savefig(OUT)
    print(f"wrote {OUT} ({status})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
