"""Cohort runs on real Dask clusters (worker processes on loopback) over the real crops of Testing/Data.

Each output is compared byte for byte with what the single-process ``lowlightdenoise denoise`` writes
for the same input, method and options. The cluster tests are ``slow`` (each starts worker processes).
"""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

pytest.importorskip("distributed", reason="batch runs need dask[distributed] (the test extra installs it)")

import SimpleITK as sitk  # noqa: E402

from LowLightDenoiseLib.cli import main  # noqa: E402
from LowLightDenoiseLib.errors import InputError  # noqa: E402
from LowLightDenoiseLib.io import read_volume  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
N_INTERRUPTED = 6
TIMEOUT = 240  # generous: the CI machine has 2 cores shared with the other tests


def batch(*args: str, cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "LowLightDenoiseLib", "batch", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def table(out: Path) -> List[Dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def single_process(tmp: Path, source: Path, ext: str, *extra: str) -> Path:
    """What ``lowlightdenoise denoise`` writes for ``source`` (the reference of bit-for-bit equality)."""
    content = source.read_bytes() if source.is_file() else str(source).encode()
    target = tmp / f"{hashlib.sha1(content + ' '.join(extra).encode()).hexdigest()[:10]}{ext}"
    if not target.exists():
        assert main(["denoise", str(source), str(target), "-q", *extra]) == 0
    return target


def write_dicom_series(folder: Path, array: np.ndarray, spacing, uid: str) -> None:
    """A real MR crop as a DICOM series (one file a slice, positions along z), as a scanner folder holds it."""
    folder.mkdir(parents=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        s = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for key, value in {"0008|0060": "MR", "0020|000d": uid, "0020|000e": uid + ".1", "0008|0018": f"{uid}.2.{k}",
                           "0020|0013": str(k + 1), "0020|0032": "\\".join(f"{c:.6f}" for c in position),
                           "0020|0037": "1\\0\\0\\0\\1\\0"}.items():
            s.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"IM{k:04d}.dcm"))
        writer.Execute(s)


# ------------------------------------------------------------------------------------------------ a cohort


def run_cohort(tmp, ct_path, mr_path, xray_path, fundus_path):
    """One run of 2 local workers over a manifest of the real crops in five formats and a DICOM folder,
    with a low-light CT against its clean reference, a learned model on three radiographs, a damaged
    file and a missing one."""
    from LowLightDenoiseLib.degrade import make_degradation, simulate_volume
    from LowLightDenoiseLib.io import write_volume

    data = tmp / "data"
    data.mkdir()
    ct, mr = read_volume(ct_path), read_volume(mr_path)
    write_volume(simulate_volume(ct, make_degradation("lowlight", peak=100.0), seed=3), data / "ct_low.nrrd")
    write_volume(mr, data / "mr.nii.gz")
    write_volume(ct, data / "ct.mha")
    shutil.copy(fundus_path, data / "fundus.png")
    for i in range(3):
        shutil.copy(xray_path, data / f"xray{i}.png")
    write_dicom_series(data / "mr_series", mr.array[:6], (0.9, 0.9, 3.0), "1.2.826.0.1.3680043.9.7433.16.1")
    broken = data / "broken.nrrd"
    broken.write_bytes(ct_path.read_bytes()[:2000])  # a header and the first bytes of the data: damaged
    rows = [("ct_low.nrrd", str(ct_path), "", "", "s1"), ("mr.nii.gz", "", "", "", "s2"), ("ct.mha", "", "", "0.5", "s3"),
            ("fundus.png", "", "", "", "s4"), ("mr_series", "", "", "", "s5"), ("broken.nrrd", "", "", "", "s6"),
            ("gone.nrrd", "", "", "", "s7")]
    rows += [(f"xray{i}.png", "", "default-2d", "", f"x{i}") for i in range(3)]
    manifest = tmp / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["input", "reference", "method", "strength", "subject"])
        w.writerows([(f"data/{a}", b, c, d, e) for a, b, c, d, e in rows])
    out = tmp / "out"
    t0 = time.perf_counter()
    done = batch(str(manifest), str(out), "--method", "nlm", "--workers", "2", cwd=tmp)
    return {"tmp": tmp, "data": data, "out": out, "run": done, "seconds": time.perf_counter() - t0,
            "ct": ct_path}


@pytest.mark.slow
def test_a_cohort_on_two_local_workers(tmp_path, ct_path, mr_path, xray_path, fundus_path):
    """The issue's first and last tests on one run (each run starts worker processes): every output equals
    the single-process denoise bit for bit; a corrupt and a missing file fail with their sentence while the
    rest succeed; one table row per scan; sidecars; a learned model loaded once per worker."""
    cohort = run_cohort(tmp_path, ct_path, mr_path, xray_path, fundus_path)
    outputs_equal_the_single_process_denoise_bit_for_bit(cohort)
    a_corrupt_and_a_missing_file_fail_with_their_sentence_and_the_rest_succeed(cohort)
    the_results_table_has_one_row_per_scan_with_metrics_and_the_manifest_columns(cohort)
    sidecars_record_the_input_checksum_and_the_model_loaded_once_per_worker(cohort)


def outputs_equal_the_single_process_denoise_bit_for_bit(cohort):
    data, out, tmp = cohort["data"], cohort["out"], cohort["tmp"]
    expected = {"ct_low.nrrd": ("nlm",), "mr.nii.gz": ("nlm",), "ct.mha": ("nlm", "--strength", "0.5"),
                "fundus.png": ("nlm",), "xray0.png": ("default-2d",),
                "xray1.png": ("default-2d",), "xray2.png": ("default-2d",)}
    for name, (method, *extra) in expected.items():
        ext = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix
        ours = out / name
        theirs = single_process(tmp, data / name, ext, "--method", method, "--device", "cpu", *extra)
        assert ours.read_bytes() == theirs.read_bytes(), name
    # a DICOM folder is written as NRRD under the folder's name
    theirs = single_process(tmp, data / "mr_series", ".nrrd", "--method", "nlm", "--device", "cpu")
    assert (out / "mr_series.nrrd").read_bytes() == theirs.read_bytes()
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.startswith(".")], names  # nothing half-written left behind
    assert "broken.nrrd" not in names and "gone.nrrd" not in names


def a_corrupt_and_a_missing_file_fail_with_their_sentence_and_the_rest_succeed(cohort):
    run, out, data = cohort["run"], cohort["out"], cohort["data"]
    assert run.returncode == 1, run.stderr  # some scans failed
    rows = {r["scan"]: r for r in table(out)}
    with pytest.raises(InputError) as damaged:
        read_volume(data / "broken.nrrd")
    assert rows["broken"]["status"] == "failed" and rows["broken"]["error"] == str(damaged.value)
    assert rows["gone"]["status"] == "failed"
    assert rows["gone"]["error"] == f"The input {data / 'gone.nrrd'} does not exist."
    assert {r["status"] for n, r in rows.items() if n not in ("broken", "gone")} == {"done"}
    assert f"broken: {damaged.value}" in run.stderr
    assert "8 done, 0 already done, 2 failed, of 10 scan(s)" in run.stdout


def the_results_table_has_one_row_per_scan_with_metrics_and_the_manifest_columns(cohort):
    import pyarrow.parquet as pq

    out, tmp, data = cohort["out"], cohort["tmp"], cohort["data"]
    rows = table(out)
    assert [r["scan"] for r in rows] == ["ct_low", "mr", "ct", "fundus", "mr_series", "broken", "gone",
                                         "xray0", "xray1", "xray2"]  # the manifest's order
    assert [r["subject"] for r in rows][:3] == ["s1", "s2", "s3"]
    assert list(rows[0])[:4] == ["scan", "subject", "status", "seconds"]
    metrics = tmp / "ct_low_metrics.csv"  # the same scan through the single-process command line
    assert main(["denoise", str(data / "ct_low.nrrd"), str(tmp / "ct_low_single.nrrd"), "--method", "nlm",
                 "--device", "cpu", "--reference", str(cohort["ct"]), "--metrics", str(metrics), "-q"]) == 0
    with open(metrics, newline="") as f:
        single = list(csv.DictReader(f))[-1]
    for key in ("psnr", "ssim", "mse", "noise_reduction", "edge_preservation"):  # the same voxels, measured in a
        assert float(rows[0][key]) == pytest.approx(float(single[key]), rel=1e-12), key  # worker: last bits may vary
    assert all(r["psnr"] == "" for r in rows[1:])  # no reference: no reference metrics
    assert all(r["noise_reduction"] for r in rows if r["status"] == "done")  # no-reference figures always
    assert rows[2]["strength"] == "0.5" and rows[1]["strength"] == ""
    assert all(r["worker"].startswith("tcp://127.0.0.1:") for r in rows if r["status"] == "done")
    parquet = pq.read_table(out / "results.parquet").to_pylist()
    assert [p["scan"] for p in parquet] == [r["scan"] for r in rows]
    assert parquet[0]["psnr"] == float(rows[0]["psnr"]) and parquet[5]["error"] == rows[5]["error"]


def sidecars_record_the_input_checksum_and_the_model_loaded_once_per_worker(cohort):
    import json

    from LowLightDenoiseLib import __version__, registry

    out, data = cohort["out"], cohort["data"]
    side = json.loads((out / "ct.mha.json").read_text())
    assert side["input"]["sha256"] == hashlib.sha256((data / "ct.mha").read_bytes()).hexdigest()
    assert side["key"]["library_version"] == __version__ and side["key"]["job"]["methods"] == ["nlm"]
    assert side["key"]["job"]["options"]["strength"] == 0.5
    assert side["output"]["bytes"] == (out / "ct.mha").stat().st_size
    learned = [json.loads((out / f"xray{i}.png.json").read_text()) for i in range(3)]
    entry = registry.get_entry("default-2d")
    assert learned[0]["key"]["method"] == {"name": "default-2d", "kind": "learned", "version": entry.spec.version,
                                           "sha256": entry.sha256}
    loads: Dict[str, int] = {}
    for s in learned:
        loads[s["worker"]["name"]] = loads.get(s["worker"]["name"], 0) + (not s["method_cached"])
    assert set(loads.values()) == {1}  # each worker that ran it loaded it once, for 3 scans on 2 workers at most


# ------------------------------------------------------------------------------------------------ failures


def _copies(folder: Path, source: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        shutil.copy(source, folder / f"scan{i:02d}.nrrd")


@pytest.mark.slow
def test_a_killed_worker_process_has_its_scan_retried_elsewhere_and_nothing_is_lost(tmp_path, ct_path):
    from distributed import Client, LocalCluster

    _copies(tmp_path / "in", ct_path, 4)
    options = ("--method", "tv", "--flips", "2", "--device", "cpu")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        run = subprocess.Popen([sys.executable, "-m", "LowLightDenoiseLib", "batch", "in", "out", *options,
                                "--scheduler", cluster.scheduler_address], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        victim = key = None
        deadline = time.time() + TIMEOUT
        while victim is None and time.time() < deadline and run.poll() is None:
            busy = client.run(lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing])
            for address, keys in busy.items():
                if any(k.startswith("denoise-") for k in keys):
                    victim, key = address, keys[0]
                    pid = client.run(os.getpid, workers=[address])[address]
                    os.kill(pid, signal.SIGKILL)  # the worker process dies in the middle of a scan
                    break
            time.sleep(0.05)
        stdout, stderr = run.communicate(timeout=TIMEOUT)
    assert victim is not None, "no worker was seen running a scan"
    assert run.returncode == 0, stderr
    rows = table(tmp_path / "out")
    assert [r["status"] for r in rows] == ["done"] * 4
    killed_scan = rows[int(key.split("-")[1])]
    assert killed_scan["worker"] != victim  # it finished on another worker (or the restarted one)
    expected = single_process(tmp_path, ct_path, ".nrrd", *options).read_bytes()
    for i in range(4):
        assert (tmp_path / "out" / f"scan{i:02d}.nrrd").read_bytes() == expected
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".")]


@pytest.mark.slow
def test_a_scan_beyond_the_memory_limit_fails_with_its_sentence_and_the_others_go_on(tmp_path, ct_path, xray_path):
    """A worker past its memory limit is restarted by its nanny; after --retries more deaths the scan is failed."""
    from LowLightDenoiseLib.io import write_volume

    folder = tmp_path / "in"
    folder.mkdir()
    ct = read_volume(ct_path)
    write_volume(ct.with_array(np.tile(ct.array, (2, 8, 8))), folder / "huge.nrrd")  # the real CT, 24 x 768 x 768
    shutil.copy(ct_path, folder / "ct.nrrd")
    shutil.copy(xray_path, folder / "xray.png")
    run = batch("in", "out", "--method", "gaussian", "--device", "cpu", "--workers", "2", "--memory-limit", "500MB",
                "--retries", "1", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    rows = {r["scan"]: r for r in table(tmp_path / "out")}
    assert rows["huge"]["status"] == "failed"
    assert rows["huge"]["error"] == ("2 worker processes died while running this scan (out of memory beyond the "
                                     "worker's limit, see --memory-limit, or killed); it was not finished.")
    assert rows["ct"]["status"] == rows["xray"]["status"] == "done"
    assert not (tmp_path / "out" / "huge.nrrd").exists()


@pytest.mark.slow
def test_an_interrupted_run_resumes_with_only_the_unfinished_scans(tmp_path, ct_path):
    _copies(tmp_path / "in", ct_path, N_INTERRUPTED)
    options = ("--method", "tv", "--device", "cpu", "--workers", "2")
    first = subprocess.Popen([sys.executable, "-m", "LowLightDenoiseLib", "batch", "in", "out", *options],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.time() + TIMEOUT
    while not list((tmp_path / "out").glob("*.nrrd.json")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGINT)  # Ctrl-C: the whole process group, workers included
    _, stderr = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 130, stderr
    finished = len(list((tmp_path / "out").glob("*.nrrd.json")))
    assert 0 < finished < N_INTERRUPTED, finished
    assert sum(r["status"] == "done" for r in table(tmp_path / "out")) == finished  # the table so far

    second = batch("in", "out", *options, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    statuses = [r["status"] for r in table(tmp_path / "out")]
    assert statuses.count("done") == N_INTERRUPTED - finished and statuses.count("skipped") == finished
    expected = single_process(tmp_path, ct_path, ".nrrd", "--method", "tv", "--device", "cpu").read_bytes()
    assert all((tmp_path / "out" / f"scan{i:02d}.nrrd").read_bytes() == expected for i in range(N_INTERRUPTED))
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".")]

    third = batch("in", "out", *options, cwd=tmp_path)  # a finished cohort costs nothing: no worker starts
    assert third.returncode == 0 and "already done" in third.stderr and "Running on" not in third.stderr
    assert [r["status"] for r in table(tmp_path / "out")] == ["skipped"] * N_INTERRUPTED


@pytest.mark.slow
def test_gpu_tasks_run_only_on_workers_holding_the_gpu_resource_one_at_a_time(tmp_path, xray_path):
    """Each task asks for the resource GPU=1: on a cluster whose one GPU worker has 2 threads, every scan
    runs there and never two at once (no GPU here: the workers run the scans on the CPU)."""
    import json

    from distributed import Client, Nanny, Scheduler, SpecCluster

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        shutil.copy(xray_path, folder / f"x{i}.png")
    workers = {"gpu": {"cls": Nanny, "options": {"nthreads": 2, "resources": {"GPU": 1}}},
               "cpu": {"cls": Nanny, "options": {"nthreads": 2}}}
    with SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}}) as cluster, \
            Client(cluster) as client:
        gpu_worker = next(a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "gpu")
        run = batch("in", "out", "--method", "nlm", "--gpus", "1", "--scheduler", cluster.scheduler_address,
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert {r["worker"] for r in table(tmp_path / "out")} == {gpu_worker}
    spans = sorted((s["timings"]["started"], s["timings"]["finished"])
                   for s in (json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.png.json")))
    assert len(spans) == 4 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # one at a time


# ------------------------------------------------------------------------------------------------ the Slicer example


@pytest.mark.slow
def test_the_batch_example_runs_the_same_path_with_references_of_the_same_name(tmp_path, ct_path):
    from LowLightDenoiseLib.degrade import make_degradation, simulate_volume
    from LowLightDenoiseLib.io import write_volume

    inputs, refs, out = tmp_path / "in dir", tmp_path / "ref", tmp_path / "out"
    inputs.mkdir()
    refs.mkdir()
    shutil.copy(ct_path, refs / "ct.nrrd")
    write_volume(simulate_volume(read_volume(ct_path), make_degradation("lowlight", peak=50.0), seed=1),
                 inputs / "ct.nrrd")
    shutil.copy(inputs / "ct.nrrd", inputs / "second.nrrd")
    (inputs / "notes.txt").write_text("not a volume")
    example = [sys.executable, str(REPO / "examples" / "batch_denoise_folder.py")]
    done = subprocess.run(example + [str(inputs), str(out), "--method", "gaussian", "--mode", "2d", "--device", "cpu",
                                     "--flips", "2", "--reference-dir", str(refs), "--scheduler", "processes",
                                     "--workers", "1"], capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    # second.nrrd has no reference of its name: recorded as failed, exit code 1, the rest written
    assert done.returncode == 1, done.stderr
    assert f"second: The reference does not exist: {refs / 'second.nrrd'}." in done.stderr
    rows = table(out)
    assert [(r["scan"], r["status"]) for r in rows] == [("ct", "done"), ("second", "failed")]
    assert float(rows[0]["psnr"]) > 0 and rows[0]["flips"] == "2"
    expected = single_process(tmp_path, inputs / "ct.nrrd", ".nrrd", "--method", "gaussian", "--mode", "2d",
                              "--device", "cpu", "--flips", "2")
    assert (out / "ct.nrrd").read_bytes() == expected.read_bytes()  # the command line's voxels
    assert not [n for n in os.listdir(out) if n.startswith(".")]

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("not a volume")
    empty = subprocess.run(example + [str(tmp_path / "notes"), str(tmp_path / "o2")], capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert empty.returncode == 2 and "holds no image files" in empty.stderr and not (tmp_path / "o2").exists()
