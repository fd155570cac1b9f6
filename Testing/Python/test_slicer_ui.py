"""The module's real .ui loaded by PyQt5 (Qt 5.15, Slicer's Qt), with stand-ins only for CTK/qMRML classes.

Slicer gives a module panel its widget's minimum width, with no horizontal scroll bar: that width is
what a laptop user gets.
"""
from __future__ import annotations

import pytest

pytest.importorskip("PyQt5.uic", reason="PyQt5 (the test extra) is not installed")

import ui_standins  # noqa: E402

from LowLightDenoiseLib import mrml  # noqa: E402
from LowLightDenoiseLib.methods import list_methods  # noqa: E402

MAX_PANEL_WIDTH = 500


def test_the_panel_fits_a_laptop_with_the_method_names_the_module_shows():
    widget = ui_standins.load_module_ui(mrml.method_choices())
    assert widget.minimumSizeHint().width() < MAX_PANEL_WIDTH


def test_even_full_method_titles_cannot_widen_the_panel():
    """The method box's size-adjust policy: before it, the full titles forced the panel to ~1,530 px."""
    titles = [(r["name"], f"{r['name']} - {r.get('title')} - a very long description" * 2, "") for r in list_methods()]
    widget = ui_standins.load_module_ui(titles)
    assert widget.minimumSizeHint().width() < MAX_PANEL_WIDTH


def test_method_names_are_short_and_their_titles_are_tooltips():
    from PyQt5 import QtCore, QtWidgets

    choices = mrml.method_choices()
    widget = ui_standins.load_module_ui(choices)
    combo = widget.findChild(QtWidgets.QComboBox, "methodComboBox")
    assert combo.count() == len(choices) > 5
    titles = {r["name"]: r.get("title") for r in list_methods()}
    for i, (name, label, tooltip) in enumerate(choices):
        if name == "auto":  # the one label that is not the name: the module's "Automatic" entry, first
            assert i == 0 and label == "Automatic" and combo.itemData(i) == "auto"
        else:
            assert label.split(" ")[0] == name and len(label) <= len(name) + len(" (download)")
        assert combo.itemData(i, QtCore.Qt.ToolTipRole).startswith(titles[name] or name)
    assert "auto" in [name for name, _, _ in choices]


def test_every_widget_the_module_binds_or_reads_is_created_by_qt():
    from PyQt5 import QtWidgets

    widget = ui_standins.load_module_ui()
    for name in ("calibrateCheckBox", "openLogButton", "cancelButton", "methodComboBox", "strengthSliderWidget"):
        assert widget.findChild(QtWidgets.QWidget, name) is not None, name
