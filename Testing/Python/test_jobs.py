"""Jobs in a child process (LowLightDenoiseLib.jobs) with real child processes: protocol, result, cancel, crashes.

Each test starts real ``python -m LowLightDenoiseLib.jobs`` processes on crops of the shipped CT; the
MRML side (nodes in, nodes out) is in test_mrml.py.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LowLightDenoiseLib.errors import InputError, LowLightDenoiseError
from LowLightDenoiseLib.jobs import (JobProcess, JobSpec, SimulationSettings, find_python, job_environment, launcher,
                                     protocol)
from LowLightDenoiseLib.jobs.work import run_denoise, run_simulation
from LowLightDenoiseLib.options import RunOptions
from LowLightDenoiseLib.volume import Volume

CPU_2D = RunOptions(mode="2d", device="cpu")


@pytest.fixture(scope="module")
def ct(ct_path) -> Volume:
    """The real CT crop (int16 HU) cut to 4 x 40 x 48, on an oblique grid with odd spacing."""
    image = sitk.ReadImage(str(ct_path))
    array = sitk.GetArrayFromImage(image)[4:8, 20:60, 30:78]
    direction = (0.0, 1.0, 0.0, 0.8, 0.0, 0.6, 0.6, 0.0, -0.8)
    return Volume(array, spacing=(0.7031, 0.65, 2.5), origin=(19.75, -61.03, -162.5), direction=direction)


@pytest.fixture()
def dirs(tmp_path):
    temp, logs = tmp_path / "temp", tmp_path / "logs"
    temp.mkdir()
    return {"temp_root": str(temp), "log_dir": str(logs)}


def start(spec: JobSpec, volumes=None, **launch) -> JobProcess:
    return JobProcess(spec, volumes or {}, **launch).start()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_denoise_in_a_child_equals_the_in_process_engine_and_reports_progress_in_order(ct, dirs):
    process = start(JobSpec("denoise", ["tv"], CPU_2D), {"input": ct}, **dirs)
    events = []
    while process.running:
        events += process.poll()
        time.sleep(0.02)
    assert process.state == "succeeded", process.error_details
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "result" and "error" not in kinds
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0
    result = process.result()
    expected = run_denoise(ct, ["tv"], CPU_2D)
    out = result.outputs[0].volume
    assert out.array.dtype == expected.outcomes[0].volume.array.dtype
    assert np.array_equal(out.array, expected.outcomes[0].volume.array)
    assert (out.spacing, out.origin, out.direction) == (ct.spacing, ct.origin, ct.direction)
    assert out.source_dtype == "int16" and out.metadata["method"] == "tv"
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(result.rows) == drop(expected.rows)
    assert not os.listdir(dirs["temp_root"]), "the job's folder was not removed"
    assert Path(process.log_path).is_file()


def test_compare_with_a_reference_and_a_simulation_come_back_exactly(ct, dirs):
    settings = SimulationSettings(peak=40.0, seed=3)
    simulate = start(JobSpec("simulate", simulation=settings), {"input": ct}, **dirs)
    assert simulate.wait(60) == "succeeded", simulate.error_details
    noisy = simulate.result().outputs[0].volume
    assert np.array_equal(noisy.array, run_simulation(ct, settings).array)
    compare = start(JobSpec("compare", ["median", "gaussian"], CPU_2D), {"input": noisy, "reference": ct}, **dirs)
    assert compare.wait(60) == "succeeded", compare.error_details
    result = compare.result()
    expected = run_denoise(noisy, ["median", "gaussian"], CPU_2D, reference=ct)
    assert [r["method"] for r in result.rows] == ["(input)", "median", "gaussian"]
    assert result.rows[1]["psnr"] == expected.rows[1]["psnr"] and result.outputs[1].row is result.rows[2]
    for got, want in zip(result.outputs, expected.outcomes):
        assert np.array_equal(got.volume.array, want.volume.array)


def test_cancel_ends_the_child_within_a_second_and_leaves_no_file_then_jobs_still_run(ct, dirs):
    big = Volume(np.tile(ct.array, (8, 4, 4)), spacing=ct.spacing)  # 32 x 160 x 192: minutes of 3D NLM x 8
    process = start(JobSpec("denoise", ["nlm"], RunOptions(mode="3d", device="cpu", flips=8)), {"input": big}, **dirs)
    deadline = time.monotonic() + 60
    while process.fraction == 0.0 and not process.message.startswith("nlm") and time.monotonic() < deadline:
        process.poll()
        time.sleep(0.02)
    assert process.running and process.child_pid and alive(process.child_pid)
    t0 = time.monotonic()
    process.cancel()
    assert time.monotonic() - t0 < 1.0
    assert process.state == "cancelled" and not alive(process.child_pid)
    assert not os.listdir(dirs["temp_root"])
    assert "cancelled" in Path(process.log_path).read_text()
    with pytest.raises(LowLightDenoiseError):
        process.result()
    workers = []
    for _ in range(2):  # a job after a cancelled one, and two in a row
        again = start(JobSpec("denoise", ["gaussian"], CPU_2D), {"input": ct}, **dirs)
        assert again.wait(60) == "succeeded", again.error_details
        assert np.array_equal(again.result().outputs[0].volume.array,
                              run_denoise(ct, ["gaussian"], CPU_2D).outcomes[0].volume.array)
        workers.append(again.child_pid)
    assert process.child_pid not in workers, "the cancelled worker was reused"
    assert workers[0] == workers[1], "the second job did not reuse the warm worker"
    assert not os.listdir(dirs["temp_root"])


def test_workers_are_reused_only_when_asked_and_young_and_end_with_the_parent(ct, dirs, monkeypatch):
    spec = JobSpec("denoise", ["gaussian"], CPU_2D)
    pids = []
    for reuse in (False, True, True):
        process = start(spec, {"input": ct}, reuse=reuse, **dirs)
        assert process.wait(60) == "succeeded", process.error_details
        pids.append(process.child_pid)
    assert pids[0] != pids[1] == pids[2]
    monkeypatch.setattr(launcher, "WORKER_IDLE_SECONDS", 0.0)
    old = start(spec, {"input": ct}, **dirs)
    assert old.wait(60) == "succeeded" and old.child_pid != pids[2]
    assert not alive(pids[2]), "a worker too old to reuse was not ended"
    launcher.shutdown_workers()
    time.sleep(0.2)
    assert not alive(old.child_pid) and not launcher._IDLE


def test_a_child_killed_with_signal_9_gives_one_sentence_and_its_last_log_lines(ct, dirs):
    big = Volume(np.tile(ct.array, (8, 4, 4)), spacing=ct.spacing)
    process = start(JobSpec("denoise", ["nlm"], RunOptions(mode="3d", device="cpu", flips=8)), {"input": big}, **dirs)
    while not process.child_pid:
        process.poll()
        time.sleep(0.02)
    time.sleep(0.5)
    os.kill(process.child_pid, signal.SIGKILL)
    assert process.wait(10) == "failed"
    assert "signal 9" in process.error and "nothing was added" in process.error
    assert process.error.count(".") <= 2, process.error
    assert str(process.log_path) in process.error_details and "job" in process.error_details
    assert "exited with code -9" in Path(process.log_path).read_text()
    assert not os.listdir(dirs["temp_root"])


def test_a_library_error_in_the_child_is_its_own_sentence(ct, dirs):
    process = start(JobSpec("denoise", ["no-such-method"], CPU_2D), {"input": ct}, **dirs)
    assert process.wait(60) == "failed"
    assert process.error.startswith("Unknown method 'no-such-method'") and "See the log" not in process.error
    assert not os.listdir(dirs["temp_root"])


def test_a_child_that_exits_without_a_word_is_reported_with_its_log(ct, dirs, tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'Fatal Python error: something broke' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    process = start(JobSpec("denoise", ["tv"], CPU_2D), {"input": ct}, python=str(fake), **dirs)
    assert process.wait(30) == "failed"
    assert "exit code 3" in process.error and "See the log" in process.error
    assert "Fatal Python error: something broke" in process.error_details
    assert not os.listdir(dirs["temp_root"])


def test_classical_jobs_need_neither_torch_nor_monai(ct, dirs, tmp_path):
    blocked = tmp_path / "blocked"
    for name in ("torch", "monai"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed (test)')\n")
    env = job_environment()
    env["PYTHONPATH"] = os.pathsep.join([str(blocked), env["PYTHONPATH"]])
    classical = start(JobSpec("denoise", ["tv"], CPU_2D), {"input": ct}, env=env, **dirs)
    assert classical.wait(60) == "succeeded", classical.error_details
    learned = start(JobSpec("denoise", ["default-2d"], CPU_2D), {"input": ct}, env=env, **dirs)
    assert learned.wait(60) == "failed"
    assert "torch" in (learned.error + learned.error_details).lower()


def test_calibration_is_carried_by_the_job_and_only_for_classical_denoisers(ct, dirs):
    process = start(JobSpec("compare", ["tv", "clahe"], CPU_2D, calibrate=True), {"input": ct}, **dirs)
    assert process.wait(120) == "succeeded", process.error_details
    result = process.result()
    calibrated = run_denoise(ct, ["tv", "clahe"], CPU_2D, calibrate=True)
    automatic = run_denoise(ct, ["tv"], CPU_2D)
    assert np.array_equal(result.outputs[0].volume.array, calibrated.outcomes[0].volume.array)
    assert not np.array_equal(result.outputs[0].volume.array, automatic.outcomes[0].volume.array)
    assert result.warnings == ["clahe has no self-calibration; it ran with its automatic strength."]
    assert process.warnings == result.warnings


def test_the_protocol_stream_stays_clean_when_the_child_prints(tmp_path):
    code = textwrap.dedent("""
        import sys
        from LowLightDenoiseLib.jobs.child import Emitter, _protocol_stream
        emit = Emitter(_protocol_stream())
        print("a stray print")
        emit.progress(0.5, "half")
        sys.stdout.write("more noise\\n")
        emit("result", outputs=[])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=job_environment())
    lines = done.stdout.splitlines()
    assert [protocol.parse_line(line)["event"] for line in lines] == ["progress", "result"]
    assert "a stray print" in done.stderr and "more noise" in done.stderr


def test_job_descriptions_round_trip_and_bad_ones_are_one_sentence(tmp_path):
    spec = JobSpec("compare", [" tv", "nlm "], RunOptions(mode="3d", strength=0.5, flips=4), calibrate=True,
                   simulation=SimulationSettings(noise="gaussian", level=0.1), input_name="CT")
    again = JobSpec.read(spec.validated().write(tmp_path / "job.json"))
    assert again == spec.validated() and again.methods == ["tv", "nlm"]
    assert json.loads((tmp_path / "job.json").read_text())["format"] == 1
    for bad, words in [(JobSpec("paint", ["tv"]), "Unknown job kind"), (JobSpec("denoise", []), "No method"),
                       (JobSpec("simulate"), "simulation settings"), (JobSpec("download"), "No model"),
                       (JobSpec("denoise", ["tv"], RunOptions(strength=9)), "strength")]:
        with pytest.raises(InputError, match=words):
            bad.validated()
    (tmp_path / "old.json").write_text('{"format": 0, "kind": "denoise"}')
    with pytest.raises(InputError, match="format"):
        JobSpec.read(tmp_path / "old.json")
    assert protocol.parse_line('{"event": "progress", "fraction": 0.5') is None  # cut mid-line by a crash
    assert protocol.parse_line("not json") is None and protocol.parse_line('{"event": "other"}') is None


def test_a_python_that_cannot_start_is_one_sentence_and_leaves_nothing(ct, dirs, tmp_path):
    with pytest.raises(LowLightDenoiseError, match="Could not start the job's Python"):
        start(JobSpec("denoise", ["tv"], CPU_2D), {"input": ct}, python=str(tmp_path / "missing-python"), **dirs)
    assert not os.listdir(dirs["temp_root"])


def test_find_python_uses_pythonslicer_inside_slicer_and_this_python_elsewhere(tmp_path, monkeypatch):
    assert find_python() == sys.executable
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LowLightDenoiseError, match="PythonSlicer"):
        find_python(str(tmp_path))
    (tmp_path / "bin").mkdir()
    launcher = tmp_path / "bin" / ("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
    launcher.write_text("")
    assert find_python(str(tmp_path)) == str(launcher)


def test_the_child_imports_the_library_of_its_parent_from_any_folder(tmp_path):
    env = job_environment({"PATH": os.environ.get("PATH", "")})
    done = subprocess.run([sys.executable, "-c", "import LowLightDenoiseLib, sys; print(LowLightDenoiseLib.__file__)"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    import LowLightDenoiseLib

    assert done.returncode == 0 and Path(done.stdout.strip()) == Path(LowLightDenoiseLib.__file__)
