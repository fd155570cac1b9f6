"""The command line's adaptation: 'adapt IN WEIGHTS' then 'denoise --method WEIGHTS', 'denoise --adapt SECONDS',
one-sentence errors that write nothing. Tiny budgets and steps on the real CT crop made darker than training."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from LowLightDenoiseLib import cli


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def dark(tmp_path: Path, ct_path: Path, capsys) -> Path:
    shutil.copy(ct_path, tmp_path / "ct.nrrd")
    code, _, err = run(capsys, "simulate", tmp_path / "ct.nrrd", tmp_path / "dark.nrrd", "--peak", 3,
                       "--read-noise", 0.5, "--seed", 1)
    assert code == 0, err
    return tmp_path / "dark.nrrd"


def test_adapt_writes_weights_and_card_that_denoise_uses_by_path(capsys, dark: Path):
    weights = dark.parent / "scanner-a.safetensors"
    code, _, err = run(capsys, "adapt", dark, weights, "--steps", 3, "--budget", 300, "--device", "cpu")
    assert code == 0, err
    assert "Adapted default-2d to this scan" in err and "3 steps" in err
    assert weights.is_file() and (dark.parent / "scanner-a.md").is_file()
    out = dark.parent / "out.nrrd"
    code, _, err = run(capsys, "denoise", dark, out, "--method", weights, "--metrics", dark.parent / "m.csv",
                       "--device", "cpu")
    assert code == 0, err
    with open(dark.parent / "m.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["adapt_weights"] == str(weights) and row["adapt_steps"] == "3" and row["adapt_kept"] in ("True", "False")


def test_denoise_adapts_first_records_it_and_keeps_the_weights_on_request(capsys, dark: Path):
    out, weights = dark.parent / "out.nrrd", dark.parent / "w.safetensors"
    code, _, err = run(capsys, "denoise", dark, out, "--adapt", 2, "--save-weights", weights,
                       "--metrics", dark.parent / "m.json", "--device", "cpu")
    assert code == 0, err
    assert "Adapted default-2d to this scan" in err
    row = json.loads((dark.parent / "m.json").read_text())[0]
    assert row["adapt_budget_s"] == 2 and "adapt_risk_before" in row and isinstance(row["adapt_kept"], bool)
    assert out.is_file() and weights.is_file() and (dark.parent / "w.md").is_file()


@pytest.mark.parametrize("args, words", [
    (["denoise", "{dark}", "{dir}/o.nrrd", "--save-weights", "{dir}/w.safetensors"], "give --adapt SECONDS too"),
    (["denoise", "{dark}", "{dir}/o.nrrd", "--adapt", 5, "--method", "tv"], "Only a learned model"),
    (["denoise", "{dark}", "{dir}/o.nrrd", "--adapt", 0], "positive number of seconds"),
    (["adapt", "{dark}", "{dir}/w.pt"], "written as safetensors"),
    (["adapt", "{dark}", "{dir}/taken.safetensors"], "already exists"),
    (["adapt", "{dark}", "{dir}/w.safetensors", "--method", "enhance-2d"], "Only a denoising model"),
])
def test_bad_adaptation_requests_get_one_sentence_and_write_nothing(capsys, dark: Path, args, words):
    (dark.parent / "taken.safetensors").write_bytes(b"someone's weights")
    before = sorted(p.name for p in dark.parent.iterdir())
    argv = [str(a).format(dark=dark, dir=dark.parent) for a in args]
    code, _, err = run(capsys, *argv)
    assert code == 2 and words in err and err.count("\n") == 1
    assert sorted(p.name for p in dark.parent.iterdir()) == before
    assert (dark.parent / "taken.safetensors").read_bytes() == b"someone's weights"
