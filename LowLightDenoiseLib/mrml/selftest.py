"""The Slicer module's self-test, run by the module inside Slicer and by CI on real MRML from slicer-core.

Both run the same checks on the same volume; a failed check raises :class:`AssertionError` with a
sentence saying what went wrong.
"""
from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from ..volume import Volume
from .geometry import SCALAR_NODE, node_from_volume, node_ijk_to_ras, volume_from_node
from .jobs import SimulationSettings, compare_nodes, denoise_node, simulate_node
from .nodes import table_rows


def add_self_test_volumes(scene: Any) -> Tuple[Any, Any]:
    """The module self-test's input: ``(noisy_node, clean_node)`` added to ``scene``.

    A 16 x 48 x 48 CT-like phantom in HU (air -800, soft tissue 40, bone 300) on an oblique,
    anisotropic grid, and its simulated low-light acquisition (30 photons at full scale, read noise 1).
    """
    z, y, x = np.mgrid[0:16, 0:48, 0:48]
    clean = np.full((16, 48, 48), -800.0, dtype=np.float32)
    clean[(z - 8) ** 2 / 36 + (y - 24) ** 2 / 200 + (x - 24) ** 2 / 200 < 1] = 40.0
    clean[4:12, 30:40, 28:40] = 300.0
    direction = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # LPS; i and j swapped: oblique to the array
    volume = Volume(clean, spacing=(0.8, 0.7, 2.5), origin=(-12.5, 30.0, 101.0), direction=direction)
    reference = node_from_volume(volume, scene, "clean")
    noisy = simulate_node(scene, reference, SimulationSettings(brightness=1.0, peak=30.0, read_noise=1.0, seed=1),
                          name="noisy")
    return noisy, reference


def _check(condition: Any, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def self_test_denoise(scene: Any, device: str = "auto") -> List[str]:
    """A classical method in 2D and 3D, every installed learned denoiser and ``auto``, each on the self-test volume:
    a new scalar node with the input's exact geometry, a table whose method row beats the input's PSNR,
    the input unchanged. Returns the runs (``"method mode"``)."""
    import slicer.util

    from .. import registry
    from ..evaluation import INPUT_LABEL

    noisy, reference = add_self_test_volumes(scene)
    before = np.array(slicer.util.arrayFromVolume(noisy))
    learned = [(m["name"], "3d" if 3 in m["spatial_dims"] else "2d") for m in registry.describe_models()
               if m["installed"] and m["category"] == "denoise"]
    _check(learned, "No learned denoising model is installed with the extension.")
    runs = []
    for method, mode in [("tv", "2d"), ("tv", "3d")] + learned + [("auto", "2d")]:  # auto: the module's default
        output, table = denoise_node(scene, noisy, method, reference_node=reference, mode=mode, device=device)
        run = f"{method} {mode}"
        _check(output.GetClassName() == SCALAR_NODE, f"{run}: the output is a {output.GetClassName()}.")
        _check(np.array_equal(node_ijk_to_ras(output), node_ijk_to_ras(noisy)), f"{run}: the geometry changed.")
        _check(slicer.util.arrayFromVolume(output).shape == before.shape, f"{run}: the output size differs.")
        rows = table_rows(table)
        _check([r["method"] for r in rows] == [INPUT_LABEL, method], f"{run}: unexpected table rows {rows}.")
        _check(rows[1]["psnr"] > rows[0]["psnr"],
               f"{run}: PSNR {rows[1]['psnr']:.2f} dB is not above the input's {rows[0]['psnr']:.2f} dB.")
        runs.append(run)
    _check(np.array_equal(slicer.util.arrayFromVolume(noisy), before), "The input volume was modified.")
    return runs


def self_test_compare(scene: Any, device: str = "auto") -> None:
    """Two classical methods with flip averaging compared into one table (input row first) and a bar chart."""
    noisy, reference = add_self_test_volumes(scene)
    table, nodes, chart = compare_nodes(scene, noisy, ["median", "tv"], reference_node=reference, mode="2d",
                                        device=device, flips=2, keep_outputs=True)
    rows = table_rows(table)
    _check(len(rows) == 3, f"The comparison table has {len(rows)} rows, not 3.")
    _check([r.get("flips") for r in rows[1:]] == [2.0, 2.0], "The table does not record the flip averaging.")
    _check(len(nodes) == 2, f"{len(nodes)} output volumes were kept, not 2.")
    _check(chart.GetClassName() == "vtkMRMLPlotChartNode", f"The chart is a {chart.GetClassName()}.")


def self_test_child_process(scene: Any, noisy: Any, clean: Any, **launch: Any) -> List[str]:
    """The module's own path on the SampleData pair (low-light CT crop, clean crop): a TV denoise and a
    simulation each run in a child process and come back bit-for-bit equal to the in-process engine,
    in new nodes that carry the research-use notice. Returns the checks run."""
    import slicer.util

    from ..jobs.work import run_simulation
    from ..options import RunOptions
    from .jobs import DenoiseSettings, prepare_denoise, run_job
    from .nodes import NOTICE
    from .process import publish_simulated, run_in_child, start_simulation

    job = prepare_denoise(noisy, DenoiseSettings("tv", RunOptions(mode="2d", device="cpu")), clean)
    expected = run_job(job).outcomes[0].volume.array
    nodes, table = run_in_child(scene, job, timeout=300, **launch)
    _check(np.array_equal(slicer.util.arrayFromVolume(nodes[0]), expected),
           "The child process's output differs from the in-process engine's.")
    _check(np.array_equal(node_ijk_to_ras(nodes[0]), node_ijk_to_ras(noisy)), "The child's output moved in space.")
    rows = table_rows(table)
    _check(rows[1]["psnr"] > rows[0]["psnr"], f"TV did not raise the PSNR ({rows[1]['psnr']:.2f} dB).")
    _check(NOTICE in nodes[0].GetDescription() and "not for diagnosis" in nodes[0].GetName(),
           "The output node does not say it is for research use only.")
    settings = SimulationSettings(peak=30.0, seed=2)
    simulation = start_simulation(clean, settings, **launch)
    simulation.process.wait(300)
    _check(simulation.process.state == "succeeded", f"The simulation job failed: {simulation.process.error}")
    simulated = publish_simulated(scene, simulation)
    _check(np.array_equal(slicer.util.arrayFromVolume(simulated),
                          run_simulation(volume_from_node(clean), settings).array),
           "The simulated volume differs from the in-process simulation.")
    return ["denoise in a child process", "simulate in a child process"]
