"""Result rows (a list of dicts, as :mod:`~LowLightDenoiseLib.evaluation` makes them) <-> table and plot nodes,
and the view layout that shows them beside the input and the result."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .. import __version__
from ..errors import InputError
from ..tables import columns

#: said by the help text, the model cards and every node the module adds
NOTICE = "Research use only; not for diagnosis."

#: Columns about the run, shown first in this order; the metrics follow in the rows' own order.
RUN_COLUMNS = ("method", "mode", "axis", "device", "seconds", "strength", "flips")
_UNITS = {"seconds": "s", "psnr": "dB"}


def method_label(method: str) -> str:
    """A method as a node name shows it: a registered model with its version (``default-2d 0.3.0``)."""
    from .. import registry

    try:
        name = registry.canonical_name(method)
        return f"{method} {registry.get_entry(name).spec.version}" if name else method
    except (InputError, LookupError, OSError, ValueError):  # a broken registry must not stop a result being shown
        return method


def output_name(input_name: str, what: str) -> str:
    """Name of an output node: input, method (and version), library version and the research notice,
    so that an exported series (e.g. DICOM, whose series description is the node name) is never unmarked."""
    return f"{input_name} {what} (LowLightDenoise {__version__}, not for diagnosis)"


def describe_output(node: Any, what: str, input_name: str) -> None:
    """Write what made ``node`` into its description and attributes, with :data:`NOTICE`."""
    node.SetDescription(f"Made by LowLightDenoise {__version__} with {what} from volume '{input_name}'. {NOTICE}")
    node.SetAttribute("LowLightDenoise.version", __version__)
    node.SetAttribute("LowLightDenoise.notice", NOTICE)


def _ordered_columns(rows: Sequence[Dict[str, Any]]) -> List[str]:
    keys = columns(rows)
    first = [k for k in RUN_COLUMNS if k in keys]
    return first + [k for k in keys if k not in first]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def metrics_table_node(scene: Any, rows: Sequence[Dict[str, Any]], name: str = "LowLightDenoise metrics",
                       table_node: Any = None) -> Any:
    """A table node with one row per dict of ``rows`` (numbers as double columns, the rest text).

    Columns are the union of the rows' keys (method, mode, axis, device, seconds, strength, flips
    first); a value missing from a row is NaN (or empty text). ``table_node`` is refilled instead of
    creating a new node.
    """
    import vtk

    if scene is None:
        raise InputError("No MRML scene was given to add the table to.")
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(str(name)))
    table_node.RemoveAllColumns()
    table = table_node.GetTable()
    for col in _ordered_columns(rows):
        values = [row.get(col) for row in rows]
        numeric = all(v is None or _is_number(v) for v in values)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(col)
        for v in values:
            if numeric:
                array.InsertNextValue(float("nan") if v is None else float(v))
            else:
                array.InsertNextValue("" if v is None else str(v))
        table.AddColumn(array)
        if col.lower() in _UNITS:
            table_node.SetColumnUnitLabel(col, _UNITS[col.lower()])
    table_node.Modified()
    return table_node


def table_rows(table_node: Any) -> List[Dict[str, Any]]:
    """Read a table node back as a list of dicts (numbers as float, text as str)."""
    table = table_node.GetTable()
    rows: List[Dict[str, Any]] = [{} for _ in range(table.GetNumberOfRows())]
    for c in range(table.GetNumberOfColumns()):
        column = table.GetColumn(c)
        numeric = column.IsNumeric()
        for r in range(len(rows)):
            rows[r][column.GetName()] = (float(column.GetValue(r)) if numeric
                                         else str(column.GetValue(r)))
    return rows


def default_plot_column(table_node: Any) -> str:
    """PSNR when the table has it, else the noise reduction, else the first numeric metric."""
    table = table_node.GetTable()
    names = [table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())]
    for candidate in ("psnr", "noise_reduction"):
        if candidate in names:
            return candidate
    for c, col in enumerate(names):
        if col not in RUN_COLUMNS and table.GetColumn(c).IsNumeric():
            return col
    return "seconds"


def metrics_plot_node(scene: Any, table_node: Any, column: str, name: Optional[str] = None) -> Any:
    """A bar chart node (one bar per table row, labelled by ``method``) of one metric column."""
    if table_node.GetTable().GetColumnByName(column) is None:
        raise InputError(f"The metrics table has no column {column!r}.")
    title = name or f"{table_node.GetName()} {column}"
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(f"{title} series"))
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetPlotType(series.PlotTypeBar)
    series.SetLabelColumnName("method")
    series.SetYColumnName(column)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(title))
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(title)
    chart.SetXAxisTitle("method")
    unit = _UNITS.get(column.lower())
    chart.SetYAxisTitle(f"{column} ({unit})" if unit else column)
    chart.SetLegendVisibility(False)
    return chart


#: The module's layout: input and result side by side (linked), above the metrics table and chart.
LAYOUT_ID = 7311
LAYOUT_XML = """
<layout type="vertical" split="true">
 <item splitSize="600"><layout type="horizontal">
  <item><view class="vtkMRMLSliceNode" singletontag="Red">
   <property name="orientation" action="default">Axial</property>
   <property name="viewlabel" action="default">R</property>
   <property name="viewcolor" action="default">#F34A33</property></view></item>
  <item><view class="vtkMRMLSliceNode" singletontag="Yellow">
   <property name="orientation" action="default">Axial</property>
   <property name="viewlabel" action="default">Y</property>
   <property name="viewcolor" action="default">#EDD54C</property></view></item>
 </layout></item>
 <item splitSize="300"><layout type="horizontal">
  <item><view class="vtkMRMLTableViewNode" singletontag="TableView1">
   <property name="viewlabel" action="default">T</property></view></item>
  <item><view class="vtkMRMLPlotViewNode" singletontag="PlotView1">
   <property name="viewlabel" action="default">P</property></view></item>
 </layout></item>
</layout>
"""


def register_layout(layout_node: Any) -> int:
    """Add :data:`LAYOUT_XML` to a ``vtkMRMLLayoutNode`` (once) and return its id, for ``setLayout``."""
    if not layout_node.IsLayoutDescription(LAYOUT_ID):
        layout_node.AddLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    return LAYOUT_ID
