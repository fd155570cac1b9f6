"""Load the module's real .ui with PyQt5 (Qt 5.15, the Qt of Slicer), outside Slicer.

Only the CTK/qMRML custom classes are replaced, by small stand-ins of the Qt class they extend in
Slicer; every Qt widget, layout, property and size policy is the .ui's own. Used by
test_slicer_ui.py and by docs/images/render_slicer_module.py.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UI_FILE = REPO / "LowLightDenoise" / "Resources" / "UI" / "LowLightDenoise.ui"


def _standin_modules():
    from PyQt5 import QtCore, QtWidgets

    class _SceneSignal:
        """``mrmlSceneChanged(vtkMRMLScene*)``: a VTK type PyQt5 cannot carry; the connections go nowhere."""

        def __getitem__(self, signature):
            return self

        def connect(self, slot):
            pass

    class qMRMLWidget(QtWidgets.QWidget):
        mrmlSceneChanged = _SceneSignal()

    class qMRMLNodeComboBox(QtWidgets.QComboBox):
        """Slicer's node selector is a QComboBox listing node names (uic sets its properties by setX)."""

        def setMRMLScene(self, scene):
            pass

        def __getattr__(self, name):
            if name.startswith("set"):  # setNodeTypes, setNoneEnabled, ...: nothing to show here
                return lambda *args: None
            raise AttributeError(name)

    class ctkCollapsibleButton(QtWidgets.QGroupBox):
        """Slicer's collapsible section: a titled frame around its layout (drawn expanded)."""

        def setText(self, text):
            self.setTitle(text)

        def setCollapsed(self, collapsed):
            self.collapsed = collapsed

    class ctkSliderWidget(QtWidgets.QWidget):
        """A slider beside a spin box, as CTK draws it."""

        def __init__(self, parent=None):
            super().__init__(parent)
            layout = QtWidgets.QHBoxLayout(self)
            layout.setContentsMargins(0, 0, 0, 0)
            self.slider = QtWidgets.QSlider(QtCore.Qt.Horizontal)
            self.spin = QtWidgets.QDoubleSpinBox()
            layout.addWidget(self.slider)
            layout.addWidget(self.spin)

        def __getattr__(self, name):  # setDecimals, setMinimum, setValue...: the spin box's
            return getattr(self.spin, name)

    class ctkDoubleSpinBox(QtWidgets.QDoubleSpinBox):
        pass

    modules = {}
    for cls in (qMRMLWidget, qMRMLNodeComboBox, ctkCollapsibleButton, ctkSliderWidget, ctkDoubleSpinBox):
        module = types.ModuleType(cls.__name__)  # uic imports the .ui's <header> name without ".h"
        setattr(module, cls.__name__, cls)
        modules[cls.__name__] = module
    return modules


_APP = []


def application():
    """The QApplication (offscreen unless a display is chosen), kept alive for the process."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt5 import QtWidgets

    if not _APP:
        _APP.append(QtWidgets.QApplication.instance() or QtWidgets.QApplication(["lowlightdenoise-ui"]))
    return _APP[0]


def load_module_ui(method_labels=()):
    """The module's widget from the real .ui, its method box filled with ``method_labels``
    (``(name, label, tooltip)`` as the module fills it), like Slicer shows it: sections expanded."""
    application()
    from PyQt5 import QtCore, QtWidgets, uic

    sys.modules.update(_standin_modules())
    widget = uic.loadUi(str(UI_FILE))
    combo = widget.findChild(QtWidgets.QComboBox, "methodComboBox")
    listing = widget.findChild(QtWidgets.QListWidget, "compareListWidget")
    for i, (name, label, tooltip) in enumerate(method_labels):
        combo.addItem(label, name)
        combo.setItemData(i, tooltip, QtCore.Qt.ToolTipRole)
        item = QtWidgets.QListWidgetItem(label)
        item.setToolTip(tooltip)
        listing.addItem(item)
    return widget
