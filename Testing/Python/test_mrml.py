"""The MRML logic (LowLightDenoiseLib.mrml) against real MRML nodes from the slicer-core wheel."""
from __future__ import annotations

import itertools
import math
import subprocess
import sys
import re
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import slicer
    import slicer.util
    import vtk
except ImportError:  # slicer-core has wheels for CPython 3.11 and 3.12 only
    pytest.skip("slicer-core is not installed (it exists for Python 3.11/3.12 only)", allow_module_level=True)

from hypothesis import given, settings
from hypothesis import strategies as st

from LowLightDenoiseLib import __version__, metrics, mrml
from LowLightDenoiseLib.errors import CancelledError, InputError
from LowLightDenoiseLib.evaluation import INPUT_LABEL
from LowLightDenoiseLib.options import RunOptions
from LowLightDenoiseLib.progress import CancelToken
from LowLightDenoiseLib.volume import Volume

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def scene():
    s = slicer.vtkMRMLScene()
    slicer.mrmlScene = s
    yield s
    s.Clear(1)


def read_node(scene, path, name="ct"):
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    assert storage.ReadData(node)
    return node


def set_direction(node, ras_dirs):
    m = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, float(ras_dirs[r][c]))
    node.SetIJKToRASDirectionMatrix(m)


def rotation(a, b):
    """A proper rotation (about z by a, then about x by b)."""
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rz @ rx


@pytest.fixture()
def ct_node(scene, ct_path):
    """The real CT crop (int16 HU) cut to 12 x 40 x 40, with an oblique direction and odd origin."""
    full = read_node(scene, ct_path, "ct full")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    slicer.util.updateVolumeFromArray(node, np.array(slicer.util.arrayFromVolume(full)[:, 20:60, 30:70]))
    node.SetSpacing(0.7031, 0.65, 2.5)
    node.SetOrigin(19.75, -61.03, -162.5)
    set_direction(node, rotation(0.3, -0.2))
    scene.RemoveNode(full)
    return node


def voxel_corners(image):
    """LPS positions (0.1 um) of the 8 corner voxels of a SimpleITK image: equal sets = same grid."""
    corners = itertools.product(*[(0, n - 1) for n in image.GetSize()])
    return {tuple(np.round(image.TransformIndexToPhysicalPoint(c), 4)) for c in corners}


# ------------------------------------------------------------------------------------------- geometry


def test_volume_from_node_describes_the_same_physical_image_as_simpleitk(scene, ct_path):
    """Slicer's reader may store the slices in another order (here k runs downwards); what must
    agree with ITK is the physical image: every voxel at the same LPS position with the same value."""
    import SimpleITK as sitk

    vol = mrml.volume_from_node(read_node(scene, ct_path))
    image = sitk.ReadImage(str(ct_path))
    mine = sitk.GetImageFromArray(vol.array)
    mine.SetSpacing(vol.spacing)
    mine.SetOrigin(vol.origin)
    mine.SetDirection(vol.direction)
    on_itk_grid = sitk.Resample(mine, image, sitk.Transform(), sitk.sitkNearestNeighbor, -9999)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(on_itk_grid), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(sorted(vol.spacing), sorted(image.GetSpacing()), atol=1e-9)
    assert vol.source_dtype == "int16"


def test_ijk_to_ras_of_volume_equals_node_matrix(ct_node):
    vol = mrml.volume_from_node(ct_node)
    np.testing.assert_allclose(mrml.ijk_to_ras(vol), mrml.node_ijk_to_ras(ct_node), rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(a=st.floats(-math.pi, math.pi), b=st.floats(-math.pi, math.pi),
       spacing=st.tuples(*[st.floats(0.01, 10.0)] * 3), origin=st.tuples(*[st.floats(-500.0, 500.0)] * 3),
       flip=st.booleans())
def test_node_volume_node_round_trip_is_bit_exact(a, b, spacing, origin, flip):
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "in")
    slicer.util.updateVolumeFromArray(node, np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4))
    dirs = rotation(a, b) @ np.diag([1.0, 1.0, -1.0 if flip else 1.0])
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    set_direction(node, dirs)
    out = mrml.node_from_volume(mrml.volume_from_node(node), scene, "out")
    np.testing.assert_array_equal(mrml.node_ijk_to_ras(out), mrml.node_ijk_to_ras(node))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(out), slicer.util.arrayFromVolume(node))


def test_volume_is_a_copy_not_a_view_of_the_node(ct_node):
    vol = mrml.volume_from_node(ct_node)
    vol.array[:] = 0
    assert slicer.util.arrayFromVolume(ct_node).any()


# ------------------------------------------------------------------------------------------- denoise


def test_denoise_node_makes_new_node_with_exact_geometry_and_leaves_input_untouched(scene, ct_node):
    before = np.array(slicer.util.arrayFromVolume(ct_node))
    matrix = mrml.node_ijk_to_ras(ct_node)
    n_volumes = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    output, table = mrml.denoise_node(scene, ct_node, "gaussian", mode="2d", device="cpu")

    assert output is not ct_node and output.GetID() != ct_node.GetID()
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == n_volumes + 1
    np.testing.assert_array_equal(mrml.node_ijk_to_ras(output), matrix)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(ct_node), before)
    out = slicer.util.arrayFromVolume(output)
    assert out.shape == before.shape and out.dtype == np.float32
    # a denoiser keeps the physical units: HU stay HU (means within a few HU, noise reduced)
    assert abs(float(out.mean()) - float(before.mean())) < 10.0
    assert np.std(np.diff(out, axis=2)) < np.std(np.diff(before.astype(np.float32), axis=2))
    assert output.GetAttribute("LowLightDenoise.method") == "gaussian"
    assert output.GetDisplayNode() is not None
    assert table.GetClassName() == "vtkMRMLTableNode"


def test_table_with_reference_has_baseline_row_and_metrics_of_the_library(scene, ct_node):
    reference = ct_node
    noisy = mrml.simulate_node(scene, reference, mrml.SimulationSettings(brightness=1.0, peak=50.0, seed=3))
    output, table = mrml.denoise_node(scene, noisy, "gaussian", reference_node=reference, mode="2d", device="cpu")
    rows = mrml.table_rows(table)
    assert [r["method"] for r in rows] == [INPUT_LABEL, "gaussian"]
    names = [table.GetTable().GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())]
    assert names[:5] == ["method", "mode", "axis", "device", "seconds"]
    for column in ("psnr", "ssim", "mse", "contrast_improvement", "noise_reduction"):
        assert column in names
    assert table.GetColumnUnitLabel("seconds") == "s" and table.GetColumnUnitLabel("psnr") == "dB"
    out_vol, ref_vol = mrml.volume_from_node(output), mrml.volume_from_node(reference)
    expected = metrics.reference_metrics(out_vol, ref_vol)
    assert rows[1]["psnr"] == pytest.approx(expected["psnr"], rel=1e-9)
    assert rows[1]["mse"] == pytest.approx(expected["mse"], rel=1e-9)
    assert rows[1]["psnr"] > rows[0]["psnr"]  # the denoiser beats the noisy input
    assert rows[1]["mode"] == "2d" and rows[1]["device"] == "cpu" and rows[1]["seconds"] > 0


def test_table_without_reference_holds_no_reference_figures(scene, ct_node):
    _, table = mrml.denoise_node(scene, ct_node, "median", mode="3d", device="cpu")
    rows = mrml.table_rows(table)
    assert len(rows) == 1 and rows[0]["mode"] == "3d"
    assert "psnr" not in rows[0]
    assert rows[0]["noise_reduction"] > 1.0
    assert 0.0 < rows[0]["edge_preservation"] <= 1.0


def test_rgb_vector_volume_stays_rgb_with_same_geometry(scene, fundus_path):
    import SimpleITK as sitk

    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(fundus_path)))[np.newaxis, :64, :64]
    assert rgb.shape[-1] == 3 and rgb.dtype == np.uint8
    node = mrml.node_from_volume(Volume(rgb, spacing=(0.1, 0.1, 1.0), origin=(5.0, 6.0, 0.0)), scene, "fundus")
    assert node.GetClassName() == "vtkMRMLVectorVolumeNode"
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), rgb)

    output, table = mrml.denoise_node(scene, node, "median", device="cpu")
    assert output.GetClassName() == "vtkMRMLVectorVolumeNode"
    out = slicer.util.arrayFromVolume(output)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(mrml.node_ijk_to_ras(output), mrml.node_ijk_to_ras(node))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), rgb)
    assert mrml.table_rows(table)[0]["mode"] == "2d"


def test_compare_nodes_fills_one_table_and_a_bar_chart(scene, ct_node):
    reference = ct_node
    noisy = mrml.simulate_node(scene, reference, mrml.SimulationSettings(brightness=1.0, peak=50.0, seed=4))
    n_volumes = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    table, nodes, chart = mrml.compare_nodes(scene, noisy, ["gaussian", "median"], reference_node=reference,
                                             mode="2d", device="cpu")
    assert nodes == [] and scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == n_volumes
    assert [r["method"] for r in mrml.table_rows(table)] == [INPUT_LABEL, "gaussian", "median"]
    series = chart.GetNthPlotSeriesNode(0)
    assert series.GetTableNodeID() == table.GetID()
    assert series.GetYColumnName() == "psnr" and series.GetLabelColumnName() == "method"
    assert series.GetPlotType() == series.PlotTypeBar


def test_compare_nodes_averages_any_method_over_flips_and_records_it(scene, ct_node):
    """Test-time flip averaging wraps every method, classical as learned, and the table says so."""
    noisy = mrml.simulate_node(scene, ct_node, mrml.SimulationSettings(brightness=1.0, peak=50.0, seed=4))
    table, nodes, _ = mrml.compare_nodes(scene, noisy, ["tv", "default-2d"], reference_node=ct_node,
                                         mode="2d", device="cpu", flips=2, keep_outputs=True)
    rows = {r["method"]: r for r in mrml.table_rows(table)}
    assert rows["tv"]["flips"] == 2 and rows["default-2d"]["flips"] == 2
    assert math.isnan(rows[INPUT_LABEL]["flips"])  # the input was not run
    names = [table.GetTable().GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())]
    assert names[:6] == ["method", "mode", "axis", "device", "seconds", "flips"]
    # TV (forward differences) is not exactly flip-equivariant: the average differs a little from one pass
    one_pass, _ = mrml.denoise_node(scene, noisy, "tv", mode="2d", device="cpu")
    once = slicer.util.arrayFromVolume(one_pass)
    averaged = slicer.util.arrayFromVolume(nodes[0])
    assert not np.array_equal(averaged, once)
    assert np.abs(averaged - once).mean() < 0.01 * np.ptp(once)
    single, _, _ = mrml.compare_nodes(scene, noisy, ["default-2d"], reference_node=ct_node, device="cpu")
    single_rows = mrml.table_rows(single)
    assert single_rows[1]["psnr"] != rows["default-2d"]["psnr"]
    assert "flips" not in single_rows[1]  # the default (no averaging) is not a column
    with pytest.raises(InputError, match="not 3"):
        mrml.compare_nodes(scene, noisy, ["tv"], device="cpu", flips=3)


def test_ensemble_is_a_deprecated_name_of_flips(scene, ct_node):
    with pytest.warns(DeprecationWarning, match="flips"):
        _, table = mrml.denoise_node(scene, ct_node, "gaussian", mode="2d", device="cpu", ensemble=2)
    assert mrml.table_rows(table)[0]["flips"] == 2


def test_compare_along_axis_1_measures_2d_ssim_along_axis_1(scene, ct_node):
    """The table's 2D SSIM is over the slices the run denoised (it was always along k before)."""
    noisy = mrml.simulate_node(scene, ct_node, mrml.SimulationSettings(brightness=1.0, peak=50.0, seed=5))
    table, nodes, _ = mrml.compare_nodes(scene, noisy, ["gaussian"], reference_node=ct_node, mode="2d", axis=1,
                                         device="cpu", keep_outputs=True)
    rows = mrml.table_rows(table)
    assert rows[1]["axis"] == 1
    out, ref, inp = (mrml.volume_from_node(n) for n in (nodes[0], ct_node, noisy))
    along_j = metrics.reference_metrics(out, ref, axis=1)
    along_k = metrics.reference_metrics(out, ref, axis=0)
    assert along_j["ssim"] != pytest.approx(along_k["ssim"], rel=1e-6)  # the axis matters here
    assert rows[1]["ssim"] == pytest.approx(along_j["ssim"], rel=1e-9)
    assert rows[0]["ssim"] == pytest.approx(metrics.reference_metrics(inp, ref, axis=1)["ssim"], rel=1e-9)


def test_settings_hold_one_run_options_and_strength_has_one_meaning(scene, ct_node):
    settings = mrml.DenoiseSettings("gaussian", RunOptions(mode="2D", device="CPU", strength=2.5))
    checked = settings.validated()
    assert checked.options == RunOptions(mode="2d", device="cpu", strength=2.5)
    job = mrml.prepare_denoise(ct_node, mrml.DenoiseSettings("tv", RunOptions(device="auto")))
    assert job.options.device == "auto"  # resolved by the engine where the job runs, not on the main thread
    _, table = mrml.denoise_node(scene, ct_node, "gaussian", options=RunOptions(mode="2d", device="cpu"), strength=2.5)
    stronger = mrml.table_rows(table)[0]
    _, table = mrml.denoise_node(scene, ct_node, "gaussian", mode="2d", device="cpu")
    automatic = mrml.table_rows(table)[0]
    assert stronger["strength"] == 2.5 and "strength" not in automatic
    assert stronger["noise_reduction"] > automatic["noise_reduction"]


def test_importing_the_bridge_imports_nothing_heavy():
    code = ("import sys, LowLightDenoiseLib.mrml as m; "
            "heavy = [k for k in ('torch', 'scipy', 'skimage', 'monai', 'slicer', 'vtk', "
            "'LowLightDenoiseLib.evaluation', 'LowLightDenoiseLib.methods') if k in sys.modules]; "
            "print(heavy); assert not heavy; assert m.DenoiseOutcome.__name__ == 'MethodOutcome'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_metrics_table_node_types_columns_and_fills_gaps(scene):
    table = mrml.metrics_table_node(scene, [{"method": "a", "psnr": 30.5}, {"method": "b", "ssim": None}], "t")
    rows = mrml.table_rows(table)
    assert rows[0]["psnr"] == 30.5 and math.isnan(rows[1]["psnr"])
    assert math.isnan(rows[0]["ssim"]) and table.GetTable().GetColumnByName("method").IsNumeric() == 0


# ------------------------------------------------------------------------------------------- simulate


def test_simulate_node_is_seeded_and_keeps_geometry(scene, ct_node):
    s = mrml.SimulationSettings(brightness=0.5, gamma=1.2, peak=30.0, read_noise=1.0, seed=7)
    first = mrml.simulate_node(scene, ct_node, s)
    second = mrml.simulate_node(scene, ct_node, s)
    other = mrml.simulate_node(scene, ct_node, mrml.SimulationSettings(noise="gaussian", level=0.05, seed=7))
    a, b = slicer.util.arrayFromVolume(first), slicer.util.arrayFromVolume(second)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, slicer.util.arrayFromVolume(other))
    assert not np.array_equal(a, slicer.util.arrayFromVolume(ct_node))
    np.testing.assert_array_equal(mrml.node_ijk_to_ras(first), mrml.node_ijk_to_ras(ct_node))
    assert "lowlight" in first.GetAttribute("LowLightDenoise.degradation")


def test_every_noise_type_can_be_simulated(scene, ct_node):
    for noise in mrml.noise_types():
        node = mrml.simulate_node(scene, ct_node, mrml.SimulationSettings(noise=noise, level=0.05))
        assert np.isfinite(slicer.util.arrayFromVolume(node)).all()


# ------------------------------------------------------------------------------------------- cancel, threads


def test_cancelled_run_raises_and_adds_nothing(scene, ct_node):
    token = CancelToken()
    token.cancel()
    n_nodes = scene.GetNumberOfNodes()
    with pytest.raises(CancelledError):
        mrml.denoise_node(scene, ct_node, "gaussian", cancel=token)
    assert scene.GetNumberOfNodes() == n_nodes


def test_the_module_path_runs_in_a_child_process_and_publishes_what_the_engine_makes(scene, ct_node, tmp_path):
    """prepare (main thread) -> child process polled by a timer -> publish (main thread), bit-exact."""
    launch = {"temp_root": str(tmp_path), "log_dir": str(tmp_path / "logs")}
    noisy = mrml.simulate_node(scene, ct_node, mrml.SimulationSettings(seed=1), name="noisy")
    job = mrml.prepare_denoise(noisy, mrml.DenoiseSettings("gaussian", RunOptions(mode="2d", device="cpu")), ct_node)
    slicer.util.updateVolumeFromArray(noisy, np.zeros((12, 40, 40), np.float32))  # user edits the scene
    process = mrml.start_denoise(job, **launch)
    fractions = []
    while process.running:
        process.poll()
        fractions.append(process.fraction)
        time.sleep(0.02)
    assert process.state == "succeeded", process.error_details
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    nodes, table = mrml.publish_denoise(scene, job, process.result())
    in_process = mrml.run_job(job).outcomes[0].volume
    assert np.array_equal(slicer.util.arrayFromVolume(nodes[0]), in_process.array)  # computed on the copy
    assert np.array_equal(mrml.node_ijk_to_ras(nodes[0]), mrml.node_ijk_to_ras(ct_node))
    assert [r["method"] for r in mrml.table_rows(table)] == [INPUT_LABEL, "gaussian"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


def test_a_cancelled_child_job_adds_no_node_and_leaves_no_file(scene, ct_node, tmp_path):
    launch = {"temp_root": str(tmp_path), "log_dir": str(tmp_path / "logs")}
    big = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "big")
    slicer.util.updateVolumeFromArray(big, np.tile(slicer.util.arrayFromVolume(ct_node), (3, 4, 4)))
    n_nodes = scene.GetNumberOfNodes()
    job = mrml.prepare_denoise(big, mrml.DenoiseSettings("nlm", RunOptions(mode="3d", device="cpu", flips=8)))
    process = mrml.start_denoise(job, **launch)
    while not process.message.startswith("nlm"):
        process.poll()
        time.sleep(0.02)
    process.cancel()
    assert process.state == "cancelled" and scene.GetNumberOfNodes() == n_nodes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


def test_output_nodes_say_which_method_and_version_made_them_and_research_use_only(scene, ct_node):
    output, table = mrml.denoise_node(scene, ct_node, "tv", mode="2d", device="cpu", strength=0.5)
    assert output.GetName() == f"ct tv (LowLightDenoise {__version__}, not for diagnosis)"
    description = output.GetDescription()
    assert f"LowLightDenoise {__version__} with tv" in description and "strength 0.5" in description
    assert description.endswith(mrml.NOTICE) and output.GetAttribute("LowLightDenoise.notice") == mrml.NOTICE
    assert mrml.NOTICE in table.GetDescription()
    learned = mrml.output_name("ct", mrml.nodes.method_label("default-2d"))
    assert re.fullmatch(r"ct default-2d \d+\.\d+\.\d+ \(LowLightDenoise .*, not for diagnosis\)", learned)
    simulated = mrml.simulate_node(scene, ct_node, mrml.SimulationSettings(seed=2))
    assert "lowlight simulation" in simulated.GetName() and "not a real scan" in simulated.GetDescription()


def test_sample_data_files_have_their_registered_checksums_and_the_self_test_passes_on_them(scene, tmp_path):
    noisy_clean = mrml.load_sample_nodes(scene, REPO / "LowLightDenoise" / "Resources" / "SampleData")
    clean, noisy = noisy_clean
    assert [n.GetName() for n in noisy_clean] == [s.node for s in mrml.SAMPLES]
    assert slicer.util.arrayFromVolume(clean).shape == slicer.util.arrayFromVolume(noisy).shape == (12, 96, 96)
    runs = mrml.self_test_child_process(scene, noisy, clean, temp_root=str(tmp_path), log_dir=str(tmp_path / "l"))
    assert runs == ["denoise in a child process", "simulate in a child process"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l"]


# ------------------------------------------------------------------------------------------- errors


def test_label_map_input_is_refused_with_one_sentence(scene):
    label = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "seg")
    slicer.util.updateVolumeFromArray(label, np.ones((2, 8, 8), np.uint8))
    with pytest.raises(InputError, match="is a label map"):
        mrml.denoise_node(scene, label, "gaussian")


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "4d"}, "Unknown mode"),
    ({"axis": 5}, "slice axis must be 0, 1 or 2"),
    ({"strength": -1.0}, "from 0 .input unchanged. to 3"),
    ({"strength": 3.5}, "from 0 .input unchanged. to 3"),
    ({"flips": 3}, "flips must be one of 1, 2, 4, 8"),
    ({"blend": 0.5}, "Unknown run option 'blend'"),
    ({"device": "tpu"}, "Unknown device"),
])
def test_bad_settings_are_input_errors(scene, ct_node, kwargs, message):
    with pytest.raises(InputError, match=message):
        mrml.denoise_node(scene, ct_node, "gaussian", **kwargs)


def test_bad_inputs_are_input_errors(scene, ct_node):
    n_volumes = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    with pytest.raises(InputError, match="Unknown method"):
        mrml.denoise_node(scene, ct_node, "no-such-method")
    small = mrml.node_from_volume(Volume(np.ones((2, 8, 8), np.float32)), scene, "other size")
    with pytest.raises(InputError, match="must have the same size as the input"):
        mrml.denoise_node(scene, ct_node, "gaussian", reference_node=small)
    moved = mrml.node_from_volume(mrml.volume_from_node(ct_node), scene, "moved")
    moved.SetOrigin(0.0, 0.0, 0.0)
    with pytest.raises(InputError, match=r"not lie on the input's voxel grid \(origin"):
        mrml.denoise_node(scene, ct_node, "gaussian", reference_node=moved)
    with pytest.raises(InputError, match="No input volume"):
        mrml.denoise_node(scene, None, "gaussian")
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="has no image data"):
        mrml.denoise_node(scene, empty, "gaussian")
    flat = mrml.node_from_volume(Volume(np.full((4, 16, 16), 7, np.int16)), scene, "flat")
    with pytest.raises(InputError, match="constant"):
        mrml.denoise_node(scene, flat, "gaussian")
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == n_volumes + 4  # the inputs made here
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 0


# ------------------------------------------------------------------------------------------- dependencies


def test_missing_requirements_lists_only_what_cannot_be_imported():
    assert mrml.missing_requirements({"numpy": "numpy>=1", "no_such_module_xyz": "no-such-module-xyz>=1"}) == [
        "no-such-module-xyz>=1"]
    assert mrml.missing_requirements() == []  # the test environment has everything


def test_protected_pins_name_the_installed_versions():
    from importlib import metadata

    pins = dict(p.split("==") for p in mrml.protected_pins())
    assert pins["numpy"] == metadata.version("numpy")
    assert pins["SimpleITK"] == metadata.version("SimpleITK")
    assert set(pins) <= set(mrml.PROTECTED_DISTRIBUTIONS)


def test_the_slicer_self_test_passes_here_on_real_mrml(scene):
    """LowLightDenoiseTest runs these same checks inside Slicer: a classical method in 2D and 3D and every
    bundled learned denoiser improve PSNR and keep the geometry; a compare with flip averaging."""
    runs = mrml.self_test_denoise(scene, device="cpu")
    assert runs[:2] == ["tv 2d", "tv 3d"] and len(runs) > 3  # a learned model is bundled
    assert runs[-1] == "auto 2d"  # the module's default, Automatic
    scene.Clear(0)
    mrml.self_test_compare(scene, device="cpu")


def test_the_module_layout_is_a_valid_mrml_layout(scene):
    layout = scene.AddNewNodeByClass("vtkMRMLLayoutNode")
    assert mrml.register_layout(layout) == mrml.LAYOUT_ID == mrml.register_layout(layout)
    layout.SetViewArrangement(mrml.LAYOUT_ID)
    root = layout.GetLayoutRootElement()
    assert root is not None and root.GetName() == "layout"
    assert vtk.vtkXMLUtilities.ReadElementFromString(mrml.LAYOUT_XML) is not None  # well-formed XML
    for tag in ("Red", "Yellow", "TableView1", "PlotView1"):
        assert f'singletontag="{tag}"' in mrml.LAYOUT_XML
