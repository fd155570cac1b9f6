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
                         + sorted(str(p.relative_to(REPO)) for folder in ("mrml", "jobs")
                                  for p in (REPO / "LowLightDenoiseLib" / folder).glob("*.py")))
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


# ------------------------------------------------------------------------------------------- issue 13


def _module_source() -> str:
    return MODULE_PY.read_text()


def test_the_module_holds_no_thread_and_runs_every_job_in_a_child_process():
    source = _module_source()
    imported = {a.name.split(".")[0] for n in ast.walk(module_tree()) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(module_tree()) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"threading", "concurrent", "multiprocessing", "torch", "monai"}, imported
    assert "BackgroundTask" not in source and "Thread" not in source
    for start in ("mrml.start_denoise(", "mrml.start_simulation(", "mrml.start_download("):
        assert start in source, start
    assert "qt.QTimer()" in source and "process.poll()" in source and "jobs.find_python(slicer.app.slicerHome)" in source
    assert len(source.splitlines()) < 495


def test_classical_jobs_ask_for_no_torch_and_a_failed_pip_install_is_caught():
    source = _module_source()
    assert "mrml.needs_torch(methods)" in source and "if learned and not self._ensureTorch" in source
    assert "torchVersionRequirement=mrml.TORCH_REQUIREMENT" in source
    assert "mrml.install_requirements(" in source and "pip_install=slicer.util.pip_install" in source


def test_the_module_finds_the_library_of_a_source_checkout(tmp_path):
    """The lines before ``import qt`` put the repository root on sys.path when run from the checkout."""
    prologue = _module_source().split("import qt", 1)[0]
    code = (f"import sys\nsys.path[:] = [p for p in sys.path if p not in ('', {str(REPO)!r})]\n"
            f"__file__ = {str(MODULE_PY)!r}\n" + prologue +
            "import LowLightDenoiseLib\nprint(LowLightDenoiseLib.__file__)\n")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == REPO / "LowLightDenoiseLib" / "__init__.py"


def test_help_says_research_use_and_contributors_are_filled_in():
    source = _module_source()
    assert "helpText = (\n            f\"<b>{mrml.NOTICE}</b>" in source
    assert "LowLightDenoise contributors" not in source
    assert "LowLightDenoise contributors" not in (REPO / "CMakeLists.txt").read_text()
    for card in sorted((REPO / "Resources" / "ModelCards").glob("*.md")):
        assert "not for diagnosis" in card.read_text().lower(), card.name


def test_sample_data_is_registered_with_the_checksums_of_the_shipped_files():
    from LowLightDenoiseLib.mrml import samples

    assert 'slicer.app.connect("startupCompleted()", registerSampleData)' in _module_source()
    for sample in samples.SAMPLES:
        path = MODULE_DIR / "Resources" / "SampleData" / sample.file
        assert samples.sha256_of(path) == sample.sha256, sample.file

    class FakeSampleDataLogic:
        registered = []

        @classmethod
        def registerCustomSampleDataSource(cls, **kwargs):
            cls.registered.append(kwargs)

    samples.register_samples(FakeSampleDataLogic, str(MODULE_DIR))
    assert [r["sampleName"] for r in FakeSampleDataLogic.registered] == [s.name for s in samples.SAMPLES]
    for r in FakeSampleDataLogic.registered:
        assert r["uris"][0].startswith("file://") and Path(r["thumbnailFileName"]).is_file()
        assert r["checksums"][0].startswith("SHA256:")


def test_combo_boxes_shrink_to_a_laptop_panel_and_calibration_is_a_bound_option():
    widgets = ui_widgets()
    for name, (cls, props) in widgets.items():
        if cls == "QComboBox":
            assert props.get("sizeAdjustPolicy") == "QComboBox::AdjustToMinimumContentsLengthWithIcon", name
    assert widgets["calibrateCheckBox"][1]["SlicerParameterName"] == "calibrate"
    assert parameter_fields()["calibrate"] == "Annotated[bool, Default(False)]"


def test_docs_name_the_current_slicer_releases():
    text = (REPO / "docs" / "slicer.md").read_text()
    assert "Slicer **5.12** (the current stable release), 5.10 and 5.8" in text
    assert "## What to check in a real Slicer (manual test list)" in text


def test_the_strength_slider_has_the_one_meaning_of_the_library():
    from LowLightDenoiseLib.options import MAX_STRENGTH

    cls, props = ui_widgets()["strengthSliderWidget"]
    assert (float(props["minimum"]), float(props["maximum"]), float(props["value"])) == (0.0, MAX_STRENGTH, 1.0)
    assert "1 = automatic, 0 leaves the input unchanged, up to 3" in props["toolTip"]
    assert parameter_fields()["strength"] == "Annotated[float, WithinRange(0.0, MAX_STRENGTH), Default(1.0)]"
