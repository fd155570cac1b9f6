"""Nothing is lost (issue 17, items 1-5): no output replaces a file the command reads, no two writers both
win, a command publishes all its outputs or none, and an interrupted or killed run leaves nothing behind.

Real files, real child processes, real signals and real resource limits (``RLIMIT_FSIZE`` for a full disk).
"""
from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LowLightDenoiseLib import cli

REPO = Path(__file__).resolve().parents[2]
FAST = "tv"


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def state(folder: Path):
    """Every file under ``folder`` with its content (nothing may change after a refused command)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(err: str, words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lowlightdenoise: error: ") and words in lines[0], err


@pytest.fixture()
def work(tmp_path: Path, ct_path: Path) -> Path:
    (tmp_path / "ct.nrrd").write_bytes(ct_path.read_bytes())
    return tmp_path


def child(*argv, preexec=None, timeout=120, env=None, **kwargs) -> subprocess.Popen:
    """``python -m LowLightDenoiseLib ARGV`` as a real child process."""
    return subprocess.Popen([sys.executable, "-m", "LowLightDenoiseLib", *[a if isinstance(a, bytes) else str(a)
                                                                          for a in argv]],
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec,
                            env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})), **kwargs)


# ------------------------------------------------------------------------------- 1, 2: what is read is kept

def test_no_output_may_be_a_file_the_command_reads_even_with_overwrite(capsys, work: Path):
    ct, ref = work / "ct.nrrd", work / "ref.nrrd"
    ref.write_bytes(ct.read_bytes())
    before = state(work)
    cases = [
        (["denoise", ct, ref, "--reference", ref], "is the reference"),  # the case
        (["compare", ct, "--methods", FAST, "--reference", ref, "--output-dir", work, "--csv", ref],
         "is the reference"),
        (["evaluate", ref, ct, "--json", ct], "is the image"),
        (["evaluate", ref, ct, "--json", work / "t.txt", "--csv", work / "t.txt"], "same file"),
        (["simulate", ct, ct, "--peak", 50], "is the input"),
    ]
    for argv, words in cases:
        code, _, err = run(capsys, *argv, "--overwrite", "-q")
        assert code == 2, (argv, err)
        one_line(err, words)
    assert state(work) == before


@pytest.mark.parametrize("header, data", [("x.mhd", "y.zraw"), ("x.nhdr", "y.raw.gz")])
def test_a_header_output_never_replaces_the_data_file_of_an_input(capsys, work: Path, header: str, data: str):
    """x.mhd keeps its voxels in y.zraw; writing y.mhd would write y.zraw too (the same with .nhdr)."""
    img = sitk.ReadImage(str(work / "ct.nrrd"))
    sitk.WriteImage(img, str(work / header), True)
    written = work / ("x.zraw" if header.endswith(".mhd") else "x.raw.gz")
    written.rename(work / data)
    text = (work / header).read_text(encoding="latin-1").replace(written.name, data)
    (work / header).write_text(text, encoding="latin-1")
    before = state(work)
    out = work / ("y" + Path(header).suffix)
    code, _, err = run(capsys, "denoise", work / header, out, "--method", "gaussian", "--overwrite", "-q")
    assert code == 2
    one_line(err, f"writes its data to {work / data}")
    assert state(work) == before
    other = work / ("z" + Path(header).suffix)
    code, _, err = run(capsys, "denoise", work / header, other, "--method", "gaussian", "-q")
    assert code == 0, err  # another name is fine, and the input reads as before
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(work / header))).shape == (12, 96, 96)


# ------------------------------------------------------------------------------- 3: two writers, one wins

def test_an_output_that_appears_while_the_command_runs_is_not_replaced(capsys, work: Path, monkeypatch):
    """Another process publishes the same output between our check and our publication: we lose, cleanly."""
    real = sitk.ImageFileWriter.Execute

    def execute_then_the_other_writer_finishes(self, *args):
        real(self, *args)
        (work / "out.nrrd").write_bytes(b"the other process's result")

    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", execute_then_the_other_writer_finishes)
    code, _, err = run(capsys, "denoise", work / "ct.nrrd", work / "out.nrrd", "--method", FAST,
                       "--metrics", work / "m.json", "-q")
    assert code == 2
    one_line(err, "already exists")
    assert (work / "out.nrrd").read_bytes() == b"the other process's result"
    assert sorted(os.listdir(work)) == ["ct.nrrd", "out.nrrd"]  # no metrics, no temporary


# ------------------------------------------------------------------------------- 4: all outputs or none

def _no_big_files(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_metrics_file_that_cannot_be_written_leaves_no_volume_either(tmp_path: Path):
    """The volume (374 bytes) fits under the file-size limit, the metrics table (822 bytes) does not."""
    a = (np.random.default_rng(0).random((12, 12)) * 200).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / "in.nrrd"), True)
    sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / "ref.nrrd"), True)
    before = state(tmp_path)
    p = child("denoise", tmp_path / "in.nrrd", tmp_path / "out.nrrd", "--method", "gaussian", "--reference",
              tmp_path / "ref.nrrd", "--metrics", tmp_path / "m.json", "-q", preexec=_no_big_files(600))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    one_line(err.decode(), "too large")
    assert state(tmp_path) == before  # neither the volume nor the metrics, no temporary
    p = child("denoise", tmp_path / "in.nrrd", tmp_path / "out.nrrd", "--method", "gaussian", "-q",
              preexec=_no_big_files(600))
    assert p.wait(timeout=120) == 0  # the volume alone fits: the limit is what failed above


def test_compare_publishes_every_result_and_the_table_or_nothing(tmp_path: Path):
    a = (np.random.default_rng(0).random((12, 12)) * 200).astype(np.uint8)  # results of ~400 bytes, table 778
    sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / "in.nrrd"), True)
    before = state(tmp_path)
    p = child("compare", tmp_path / "in.nrrd", "--methods", "gaussian,median,tv,wavelet", "--output-dir",
              tmp_path / "res", "--csv", tmp_path / "t.csv", "-q", preexec=_no_big_files(600))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    assert state(tmp_path) == before and not (tmp_path / "res").exists()


@contextlib.contextmanager
def ordinary_user():
    """Permissions as an ordinary user sees them: as root (who writes anywhere) the effective uid is nobody's
    for the duration; the modules a command needs are imported first (root's Python is not nobody's to read)."""
    import LowLightDenoiseLib.evaluation  # noqa: F401
    import LowLightDenoiseLib.io  # noqa: F401

    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture()
def shared(ct_path: Path):
    """A folder every user can enter (pytest's own is root's only), holding the CT crop."""
    folder = Path(tempfile.mkdtemp(prefix="lld-shared-"))
    folder.chmod(0o777)
    (folder / "ct.nrrd").write_bytes(ct_path.read_bytes())
    (folder / "ct.nrrd").chmod(0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_an_output_folder_that_is_read_only_is_refused_before_computing(capsys, shared: Path, monkeypatch):
    from LowLightDenoiseLib import evaluation

    monkeypatch.setattr(evaluation, "run_methods", lambda *a, **k: pytest.fail("computed before refusing"))
    locked = shared / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    with ordinary_user():
        code, _, err = run(capsys, "denoise", shared / "ct.nrrd", shared / "out.nrrd", "--method", FAST,
                           "--metrics", locked / "m.csv", "-q")
    assert code == 2
    one_line(err, f"Cannot write into the output folder {locked}: it is read-only")
    assert sorted(os.listdir(shared)) == ["ct.nrrd", "locked"] and os.listdir(locked) == []


# ------------------------------------------------------------------------------- 5: signals and kills

@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A 48 x 512 x 512 float volume: writing it (compressed) takes about a second."""
    path = tmp_path_factory.mktemp("big") / "big.nrrd"
    a = (np.random.default_rng(0).random((48, 512, 512)) * 1000).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(a), str(path))
    return path


def _stopped_while_writing(big: Path, out: Path, how: signal.Signals, ignore_sigint: bool = False):
    """Start a denoise of ``big``, wait until its output is being written, send ``how``; (code, stderr)."""
    def pre():
        if ignore_sigint:  # how a shell starts a background job: SIGINT ignored
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    # strength 0: no computing, the time goes to the write
    p = child("denoise", big, out, "--method", "gaussian", "--strength", 0, "-q", preexec=pre)
    t0 = time.time()
    while not any(n.startswith(f".{out.name}.") for n in os.listdir(out.parent)):
        assert p.poll() is None and time.time() - t0 < 120, p.stderr.read() if p.poll() is not None else "slow"
        time.sleep(0.005)
    p.send_signal(how)
    _, err = p.communicate(timeout=120)
    return p.returncode, err.decode()


@pytest.mark.parametrize("how, code, words", [(signal.SIGINT, 130, "interrupted"),
                                              (signal.SIGTERM, 143, "terminated")])
def test_a_signal_during_the_write_publishes_nothing_and_leaves_no_temporary(tmp_path: Path, big: Path,
                                                                            how, code, words):
    out = tmp_path / "out.nrrd"
    returned, err = _stopped_while_writing(big, out, how, ignore_sigint=True)
    assert returned == code, err
    one_line(err, words)
    assert os.listdir(tmp_path) == []


def test_the_temporary_of_a_killed_run_is_swept_by_the_next_one(tmp_path: Path, big: Path, ct_path: Path):
    out = tmp_path / "out.nrrd"
    returned, _ = _stopped_while_writing(big, out, signal.SIGKILL)
    assert returned == -signal.SIGKILL
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0].startswith(".out.nrrd.") and left[0].endswith(".tmp")  # what a kill leaves
    p = child("denoise", ct_path, tmp_path / "next.nrrd", "--method", FAST, "-q")
    assert p.wait(timeout=120) == 0
    assert os.listdir(tmp_path) == ["next.nrrd"]


def test_a_temporary_of_a_running_process_is_not_swept(tmp_path: Path):
    from LowLightDenoiseLib import files

    fd, mine = files.temp_file(tmp_path / "a.nrrd")  # this process is alive
    os.close(fd)
    other = tmp_path / ".b.nrrd.otherhost.123.abcd.tmp"  # another machine's, recent
    other.write_bytes(b"")
    foreign = tmp_path / ".notes.txt.swp"
    foreign.write_bytes(b"")
    assert files.sweep(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == sorted([mine.name, other.name, foreign.name])
    old = time.time() - files.STALE_SECONDS - 60
    os.utime(other, (old, old))
    assert files.sweep(tmp_path) == [other]
