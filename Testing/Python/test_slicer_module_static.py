"""Static checks of the Slicer extension (no Slicer application can run here): the module, its .ui,
the CMake files and the ExtensionsIndex entry must agree with each other and with the files on disk."""
from __future__ import annotations

import ast
import json
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "LowLightDenoise"
MODULE_PY = MODULE_DIR / "LowLightDenoise.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "LowLightDenoise.ui"


def module_tree() -> ast.Module:
    return ast.parse(MODULE_PY.read_text(), filename=str(MODULE_PY))


def ui_widgets() -> dict:
    """name -> (class, {property name: text}) of every widget in the .ui file."""
    root = ET.parse(UI_FILE).getroot()
    widgets = {}
    for w in root.iter("widget"):
        props = {p.get("name"): "".join(p.itertext()).strip() for p in w.findall("property")}
        widgets[w.get("name")] = (w.get("class"), props)
    return widgets


def ui_attributes_used() -> set:
    """Every ``self.ui.<name>`` the module reads."""
    names = set()
    for node in ast.walk(module_tree()):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"):
            names.add(node.attr)
    return names


def parameter_fields() -> dict:
    """name -> annotation source of the module's @parameterNodeWrapper class."""
    for node in module_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == "LowLightDenoiseParameterNode":
            return {s.target.id: ast.get_source_segment(MODULE_PY.read_text(), s.annotation)
                    for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("LowLightDenoiseParameterNode not found")


def cmake_list(text: str, variable: str) -> list:
    match = re.search(r"set\(\s*" + variable + r"\s+(.*?)\)", text, re.S)
    assert match, f"{variable} not set"
    return [w for w in match.group(1).split() if not w.startswith("#")]


def test_every_widget_the_module_uses_exists_in_the_ui():
    missing = ui_attributes_used() - set(ui_widgets())
    assert not missing, f"used by LowLightDenoise.py but not in the .ui: {sorted(missing)}"


def test_ui_parameter_names_match_the_parameter_node_fields_and_widget_types():
    fields = parameter_fields()
    bound = {props["SlicerParameterName"]: (name, cls) for name, (cls, props) in ui_widgets().items()
             if "SlicerParameterName" in props}
    assert set(bound) <= set(fields), f"bound to unknown parameters: {sorted(set(bound) - set(fields))}"
    for param, (widget, cls) in bound.items():
        annotation = fields[param]
        if cls == "QComboBox":
            assert "Choice(" in annotation, f"{widget}: a QComboBox binds only to a parameter with Choice"
        elif cls == "qMRMLNodeComboBox":
            assert annotation == "VolumeNode", widget
        elif cls in ("ctkSliderWidget", "ctkDoubleSpinBox"):
            assert "float" in annotation, widget
        elif cls == "QCheckBox":
            assert "bool" in annotation, widget
        elif cls == "QSpinBox":
            assert "int" in annotation, widget


def test_ui_declares_its_custom_widgets_and_connects_scene_to_node_selectors():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {cls for cls, _ in ui_widgets().values() if not cls.startswith("Q")}
    assert used <= declared, f"custom widgets not declared: {sorted(used - declared)}"
    selectors = {n for n, (cls, _) in ui_widgets().items() if cls == "qMRMLNodeComboBox"}
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert selectors == connected


def test_node_selectors_offer_scalar_and_rgb_volumes_only():
    for name, (cls, props) in ui_widgets().items():
        if cls == "qMRMLNodeComboBox":
            types = set(re.findall(r"vtkMRML\w+", props["nodeTypes"]))
            assert types == {"vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode"}, name
            assert props["showChildNodeTypes"] == "false", f"{name} would offer label maps"


def test_module_has_the_four_scripted_module_classes_and_a_test_that_clears_the_scene():
    classes = {n.name: n for n in module_tree().body if isinstance(n, ast.ClassDef)}
    for name, base in [("LowLightDenoise", "ScriptedLoadableModule"),
                       ("LowLightDenoiseWidget", "ScriptedLoadableModuleWidget"),
                       ("LowLightDenoiseLogic", "ScriptedLoadableModuleLogic"),
                       ("LowLightDenoiseTest", "ScriptedLoadableModuleTest")]:
        assert name in classes and base in [ast.unparse(b) for b in classes[name].bases], name
    test = {f.name: f for f in classes["LowLightDenoiseTest"].body if isinstance(f, ast.FunctionDef)}
    assert {"setUp", "runTest"} <= set(test)
    assert "mrmlScene.Clear" in ast.unparse(test["setUp"])
    assert "loadUI" in MODULE_PY.read_text() and "tryWithErrorDisplay" in MODULE_PY.read_text()


@pytest.mark.parametrize("path", ["LowLightDenoise/LowLightDenoise.py", "examples/batch_denoise_folder.py"]
                         + sorted(str(p.relative_to(REPO)) for p in (REPO / "LowLightDenoiseLib" / "mrml").glob("*.py")))
def test_slicer_side_code_parses_as_python_3_9(path):
    ast.parse((REPO / path).read_text(), feature_version=(3, 9))


def test_module_cmake_lists_exactly_the_module_files_that_exist():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    listed = [f.replace("${MODULE_NAME}", "LowLightDenoise")
              for f in cmake_list(text, "MODULE_PYTHON_SCRIPTS") + cmake_list(text, "MODULE_PYTHON_RESOURCES")]
    for f in listed:
        assert (MODULE_DIR / f).is_file(), f"listed in CMake but missing: {f}"
    on_disk = {str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.name != "CMakeLists.txt"}
    assert on_disk == set(listed), f"not listed in CMake: {sorted(on_disk - set(listed))}"


def test_top_level_cmake_has_extension_metadata_and_installs_the_library_beside_the_module():
    text = (REPO / "CMakeLists.txt").read_text()
    for var in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(r"set\(" + var + r' "[^"]+"\)', text), var
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(LowLightDenoise)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text, line
    globs = re.findall(r"(LowLightDenoiseLib/[\w/]*)\*\.py", text)
    packages = {str(p.parent.relative_to(REPO)) + "/" for p in (REPO / "LowLightDenoiseLib").rglob("__init__.py")}
    assert packages == set(globs), f"library packages not installed: {sorted(packages - set(globs))}"
    assert "Resources/Models.json" in text and (REPO / "Resources" / "Models.json").is_file()


def test_extensions_index_entry_follows_the_catalog_schema():
    entry = json.loads((REPO / "ExtensionsIndex" / "LowLightDenoise.json").read_text())
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert entry["build_dependencies"] == ["PyTorch"]
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert f'set(EXTENSION_CATEGORY "{entry["category"]}")' in cmake
    assert 1 <= entry["tier"] <= 5


@pytest.mark.parametrize("path", ["LowLightDenoise/Resources/Icons/LowLightDenoise.png",
                                  "Resources/Icons/LowLightDenoise.png"])
def test_icons_are_128_pixel_pngs(path):
    data = (REPO / path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (128, 128)
