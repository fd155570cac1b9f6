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
    for name, value in (("strengthSliderWidget", 1.0), ("brightnessSliderWidget", 0.5), ("gammaSliderWidget", 1.0),
                        ("levelSliderWidget", 0.05)):  # the parameter node's defaults, as Slicer shows them
        slider = find(QtWidgets.QWidget, name)
        slider.spin.setValue(value)
        lo, hi = slider.spin.minimum(), slider.spin.maximum()
        slider.slider.setValue(int(99 * (value - lo) / (hi - lo)))
    find(QtWidgets.QWidget, "strengthSliderWidget").setEnabled(False)
    headers, rows = mrml.models_table()
    table = find(QtWidgets.QTableWidget, "modelsTableWidget")
    table.setColumnCount(len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setRowCount(len(rows))
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            table.setItem(r, c, QtWidgets.QTableWidgetItem(value))
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
    lo, hi = (float(v) for v in np.percentile(clean.array, [0.5, 99.5]))  # the clean crop's range (HU)
    scale = 5  # 96 px slices shown 480 px wide, nearest neighbour
    ph, pw = ui.shape[:2]
    side = noisy.array.shape[1] * scale
    margin, title, foot = 20, 30, 60
    width, height = pw + 2 * side + 4 * margin, max(ph, side) + title + foot + 2 * margin
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)

    def axes(x, y, w, h):
        return fig.add_axes([x / width, 1 - (y + h) / height, w / width, h / height])

    panels = [("Low-Light Denoise panel (real .ui, Qt 5.15 offscreen)", ui, pw, ph, None),
              (f"Input: low-light CT sample, slice {k} ({rows[0]['psnr']:.1f} dB)", noisy.array[k], side, side, "gray"),
              (f"Output: default-2d ({rows[1]['psnr']:.1f} dB)", out[k], side, side, "gray")]
    x = margin
    for text, image, w, h, cmap in panels:
        ax = axes(x, margin + title, w, h)
        if cmap:
            image = np.clip((image - lo) / (hi - lo), 0, 1)
        ax.imshow(image, cmap=cmap, interpolation="nearest", aspect="auto")
        ax.set_title(text, fontsize=10)
        ax.axis("off")
        x += w + margin
    fig.text(margin / width, (foot - 10) / height,
             "Assembled outside 3D Slicer (none can run where this was made): the module's real .ui rendered by PyQt5 "
             "with stand-ins for the CTK/qMRML widgets, beside slices of the shipped\nchest CT crop as a simulated "
             f"low-light acquisition (50 photons) and default-2d's output computed by the library in {seconds:.1f} s. "
             f"Window {lo:.0f}..{hi:.0f} HU. Research use only; not for diagnosis. Made by "
             "docs/images/render_slicer_module.py.", fontsize=8.5, va="top")
    fig.savefig(OUT)
    print(f"wrote {OUT} ({status})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
