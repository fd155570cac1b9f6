"""The parts of a cohort run that need no cluster: manifest, output names, sidecars, one scan, settings, table."""
from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from LowLightDenoiseLib import batch
from LowLightDenoiseLib.batch import cluster, manifest, results, sidecar
from LowLightDenoiseLib.batch.runner import plan_tasks
from LowLightDenoiseLib.batch.task import process_scan
from LowLightDenoiseLib.cli import main
from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.options import RunOptions

OPTIONS = RunOptions().validated(resolve=False)


def write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def one_sentence(text: str) -> None:
    assert "\n" not in text.strip() and text.strip().endswith("."), text


# ------------------------------------------------------------------------------------------------ manifest


def test_a_manifest_row_takes_its_paths_relative_to_the_manifest_and_its_own_options(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write_csv(tmp_path / "sub" / "m.csv", ["input", "reference", "name", "method", "strength", "flips", "site"],
                     [["a/ct.nii.gz", "", "", "", "", "", "x"], ["/abs/mr.nrrd", "ref.nrrd", "mr2", "tv", "0.5", "2", "y"],
                     ["", "", "", "", "", "", ""]])
    scans = manifest.read_manifest(path, method="nlm", options=OPTIONS)
    assert [s.name for s in scans] == ["ct", "mr2"]  # the empty row is no scan
    assert scans[0].input == str(tmp_path / "sub" / "a" / "ct.nii.gz") and scans[0].reference is None
    assert (scans[0].method, scans[0].options) == ("nlm", OPTIONS)
    assert (scans[1].input, scans[1].reference) == ("/abs/mr.nrrd", str(tmp_path / "sub" / "ref.nrrd"))
    assert (scans[1].method, scans[1].options.strength, scans[1].options.flips) == ("tv", 0.5, 2)
    assert scans[0].columns == {"site": "x"} and scans[1].line == 3


def test_a_manifest_rows_weights_file_is_relative_to_the_manifest(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["input", "method"], [["ct.nrrd", "weights/Scanner-A.safetensors"]])
    scans = manifest.read_manifest(path, method="nlm", options=OPTIONS)
    assert scans[0].method == str(tmp_path / "weights" / "Scanner-A.safetensors")


@pytest.mark.parametrize("header,row,message", [
    (["file"], ["ct.nrrd"], "has no 'input' column"),
    (["input", "strength"], ["ct.nrrd", "7"], "Manifest line 2: The strength must be a number from 0"),
    (["input", "axis"], ["ct.nrrd", "one"], "Manifest line 2: the axis 'one' is not a number."),
    (["input", "mode"], ["ct.nrrd", "4d"], "Manifest line 2: Unknown mode '4d'"),
    (["input", "name"], ["ct.nrrd", "../up"], "Manifest line 2: the output name '../up' must be a plain file name"),
    (["input"], [""], "lists no scans"),
])
def test_a_bad_manifest_is_refused_with_one_sentence_naming_its_line(tmp_path, header, row, message):
    path = write_csv(tmp_path / "m.csv", header, [row] if any(row) else [])
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")) as e:
        manifest.read_manifest(path, method="nlm", options=OPTIONS)
    one_sentence(str(e.value))


def test_a_named_reference_column_must_exist_and_two_scans_must_not_share_an_output(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["input", "clean"], [["a/ct.nrrd", "r.nrrd"], ["b/CT.nrrd", ""]])
    with pytest.raises(InputError, match="has no reference column 'truth'"):
        manifest.read_manifest(path, method="nlm", options=OPTIONS, reference_column="truth")
    scans = manifest.read_manifest(path, method="nlm", options=OPTIONS, reference_column="clean")
    assert scans[0].reference == str(tmp_path / "r.nrrd")
    with pytest.raises(InputError, match="manifest lines 2 and 3 would both be written as CT.nrrd") as e:
        plan_tasks(scans, tmp_path / "out")
    one_sentence(str(e.value))


def test_a_folder_makes_a_manifest_of_its_images_and_dicom_series_folders(tmp_path, ct_path, xray_path):
    root = tmp_path / "study"
    (root / "p1" / "series").mkdir(parents=True)
    (root / "p1" / "series" / "IM1.dcm").write_bytes(b"\0" * 128 + b"DICM")
    (root / "p1" / "series" / "IM2").write_bytes(b"\0" * 128 + b"DICM")
    shutil.copy(ct_path, root / "p1" / "ct.nii.gz")
    shutil.copy(xray_path, root / "xray.png")
    (root / "radiograph.dcm").write_bytes(b"\0" * 128 + b"DICM")
    (root / ".hidden.nrrd").write_bytes(b"x")
    (root / "notes.txt").write_text("not an image")
    (root / "out").mkdir()
    shutil.copy(xray_path, root / "out" / "xray.png")  # an output folder inside the input: skipped
    found = manifest.folder_inputs(root, exclude=[root / "out"])
    assert [str(p.relative_to(root)) for p in found] == ["p1/ct.nii.gz", "p1/series", "radiograph.dcm", "xray.png"]
    scans = manifest.folder_scans(root, method="nlm", options=OPTIONS, reference_dir=tmp_path / "refs",
                                  exclude=[root / "out"])
    assert [s.name for s in scans] == ["ct", "series", "radiograph", "xray"]
    assert scans[1].reference == str(tmp_path / "refs" / "p1" / "series")
    written = manifest.write_manifest(tmp_path / "m.csv", scans)
    again = manifest.read_manifest(written, method="nlm", options=OPTIONS)
    assert [(s.input, s.reference, s.name) for s in again] == [(s.input, s.reference, s.name) for s in scans]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="holds no image files"):
        manifest.folder_scans(tmp_path / "empty", method="nlm", options=OPTIONS)


def test_an_output_is_named_after_its_input_in_the_input_format_or_the_one_asked(tmp_path):
    assert manifest.output_stem("/d/ct.nii.gz") == "ct" and manifest.output_stem("/d/a.b.nrrd") == "a.b"
    assert manifest.output_extension("/d/ct.nii.gz") == ".nii.gz"
    assert manifest.output_extension("/d/x.PNG") == ".png"
    assert manifest.output_extension("/d/slice.dcm") == ".nrrd" and manifest.output_extension(tmp_path) == ".nrrd"
    assert manifest.output_extension("/d/ct.nii.gz", "mha") == ".mha" == manifest.output_extension("/d/a.png", ".MHA")
    with pytest.raises(InputError, match="Cannot write the format 'dcm'"):
        manifest.output_extension("/d/ct.nrrd", "dcm")


# ------------------------------------------------------------------------------------------------ one scan, sidecars


def _one_task(tmp_path, source, **fields):
    scan = manifest.Scan(name="x", input=str(source), method="gaussian", options=RunOptions(**fields).validated(False))
    return plan_tasks([scan], tmp_path / "out")[0]


def test_a_scan_writes_its_output_and_then_a_sidecar_that_makes_a_rerun_skip_it(tmp_path, xray_path):
    source = tmp_path / "x.png"
    shutil.copy(xray_path, source)
    (tmp_path / "out").mkdir()
    task = _one_task(tmp_path, source)
    done = process_scan(task)
    assert done["row"]["status"] == "done" and done["row"]["worker"].endswith(f":{os.getpid()}")
    assert sidecar.up_to_date(task.output, task.key, task.input, None) is not None
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same content: checksum again, still done
    assert sidecar.up_to_date(task.output, task.key, task.input, None) is not None
    other = _one_task(tmp_path, source, strength=0.5)
    assert sidecar.up_to_date(other.output, other.key, other.input, None) is None  # other options
    old_version = json.loads(json.dumps(task.key))
    old_version["library_version"] = "0.0.1"
    assert sidecar.up_to_date(task.output, old_version, task.input, None) is None
    data = bytearray(source.read_bytes())
    data[-20] ^= 1
    source.write_bytes(bytes(data))  # another image under the same name
    assert sidecar.up_to_date(task.output, task.key, task.input, None) is None
    process_scan(task)
    Path(task.output).write_bytes(b"half")  # an output that is not what the sidecar vouches for
    assert sidecar.up_to_date(task.output, task.key, task.input, None) is None


def test_format_writes_every_output_in_that_format_with_the_voxels_of_the_input_format(tmp_path, ct_path):
    from LowLightDenoiseLib.io import read_volume

    (tmp_path / "out").mkdir()
    scan = manifest.Scan(name="ct", input=str(ct_path), method="gaussian", options=OPTIONS)
    as_mha = plan_tasks([scan], tmp_path / "out", fmt="mha")[0]
    as_nrrd = plan_tasks([scan], tmp_path / "out")[0]
    assert as_mha.output.endswith("ct.mha") and as_nrrd.output.endswith("ct.nrrd") and as_mha.key != as_nrrd.key
    assert process_scan(as_mha)["row"]["status"] == process_scan(as_nrrd)["row"]["status"] == "done"
    a, b = read_volume(as_mha.output), read_volume(as_nrrd.output)
    assert a.array.dtype == b.array.dtype and (a.array == b.array).all() and a.spacing == b.spacing
    assert sorted(os.listdir(tmp_path / "out")) == ["ct.mha", "ct.mha.json", "ct.nrrd", "ct.nrrd.json"]


def test_a_failing_scan_returns_its_sentence_and_writes_nothing(tmp_path, ct_path):
    broken = tmp_path / "broken.nrrd"
    broken.write_bytes(ct_path.read_bytes()[:1500])
    (tmp_path / "out").mkdir()
    task = _one_task(tmp_path, broken)
    done = process_scan(task)
    assert done["sidecar"] is None and done["row"]["status"] == "failed"
    assert done["row"]["error"].startswith("Could not read broken.nrrd")
    one_sentence(done["row"]["error"])
    assert os.listdir(tmp_path / "out") == []


def test_an_unknown_method_is_refused_before_anything_runs(tmp_path, ct_path, capsys):
    assert main(["batch", str(ct_path.parent), str(tmp_path / "out"), "--method", "nope", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lowlightdenoise: error: Unknown method 'nope'; choose one of:") and "\n" not in err
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.csv"]


# ------------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("args,message", [
    (["--scheduler", "yarn"], "Unknown scheduler 'yarn'; use local, processes or the address"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"], "--workers only apply to the local cluster"),
    (["--scheduler", "processes", "--gpus", "1"], "--gpus needs a Dask cluster"),
    (["--scheduler", "processes", "--memory-limit", "2GB"], "--memory-limit, --threads-per-worker and --retries need"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--retries", "1"], "--retries only apply to the local cluster"),
    (["--retries", "-1"], "The retries must be a whole number of at least 0, not -1."),
    (["--memory-limit", "lots"], "The memory limit 'lots' is not a size such as 4GB"),
    (["--workers", "0"], "The number of workers must be a whole number of at least 1"),
    (["--gpus", "2", "--workers", "3"], "--gpus 2 starts one worker per GPU; drop --workers 3."),
    (["--gpus", "1", "--device", "cpu"], "--gpus runs the scans on GPUs; drop --device cpu"),
    (["--strength", "9"], "The strength must be a number from 0"),
])
def test_bad_choices_are_one_sentence_and_exit_code_2(tmp_path, ct_path, capsys, args, message):
    assert main(["batch", str(ct_path), str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lowlightdenoise: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_gpus_on_a_machine_without_them_are_refused_before_any_worker_starts(tmp_path, ct_path, capsys):
    path = write_csv(tmp_path / "m.csv", ["input"], [[str(ct_path)]])
    assert main(["batch", str(path), str(tmp_path / "out"), "--gpus", "64"]) == 2
    assert "--gpus 64 asks for 64 GPU(s) but this machine has" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.csv").exists()


def test_gpu_workers_each_see_one_gpu_and_hold_one_gpu_resource():
    specs = cluster.gpu_worker_specs(2, threads=1, memory_limit=2**30)
    assert [s["options"]["env"] for s in specs.values()] == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    assert all(s["options"]["resources"] == {"GPU": 1} and s["options"]["nthreads"] == 1 for s in specs.values())
    assert cluster.task_resources(batch.ClusterSettings(gpus=2)) == {"GPU": 1}
    assert cluster.task_resources(batch.ClusterSettings()) is None
    assert cluster.local_workers(batch.ClusterSettings(gpus=3)) == 3
    assert cluster.local_workers(batch.ClusterSettings(threads_per_worker=cluster.cpu_count() + 1)) == 1
    assert cluster.memory_per_worker(batch.ClusterSettings(memory_limit="2GB"), 4) == 2 * 10**9


# ------------------------------------------------------------------------------------------------ table


def test_the_table_orders_its_columns_and_parquet_keeps_mixed_columns_as_text(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"scan": "a", "status": "failed", "error": "Bad.", "site": "x"},
            {"scan": "b", "psnr": 30.5, "status": "done", "seconds": 1.5, "site": 3, "method": "nlm"}]
    written = results.write_results(tmp_path, rows, extra=["site"])
    assert [p.name for p in written] == ["results.csv", "results.parquet"]
    with open(written[0], newline="") as f:
        header = next(csv.reader(f))
    assert header == ["scan", "site", "status", "seconds", "method", "psnr", "error"]
    back = pq.read_table(written[1]).to_pylist()
    assert back[1]["site"] == "3" and back[0]["site"] == "x" and back[1]["psnr"] == 30.5 and back[0]["psnr"] is None
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


# ------------------------------------------------------------------------------------------------ SLURM/PBS recipe


@pytest.mark.parametrize("system,expected", [
    ("slurm", ["#SBATCH --cpus-per-task=8", "--nthreads 1", "--nworkers 8", "--nanny"]),
    ("slurm-gpu", ["#SBATCH --gres=gpu:1", "--resources GPU=1", "--nanny"]),
    ("pbs", ["#PBS -l select=1:ncpus=8", "--nthreads 1", "--nworkers 8"]),
])
def test_the_cluster_recipe_renders_worker_jobs_from_its_configuration(tmp_path, system, expected):
    """Submitting needs SLURM or PBS; the job script each worker job would run is checked here."""
    pytest.importorskip("dask_jobqueue")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "examples" / "batch_on_cluster.py"),
                           "--system", system, "--print-job-script"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for text in expected + [f"{sys.executable} -m distributed.cli.dask_worker tcp://"]:
        assert text in done.stdout, (text, done.stdout)
    assert ("--resources GPU=1" in done.stdout) == (system == "slurm-gpu")
