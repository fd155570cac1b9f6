"""'Adapt to this scan' in the Slicer module's jobs: carried by the job description into a real child process,
learned denoisers adapted first, the others as they are, the table and the notes say what happened."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LowLightDenoiseLib.degrade import LowLight, simulate_volume
from LowLightDenoiseLib.errors import InputError
from LowLightDenoiseLib.jobs import JobProcess, JobSpec
from LowLightDenoiseLib.jobs.work import run_denoise
from LowLightDenoiseLib.mrml.jobs import DenoiseJob, DenoiseSettings, run_job
from LowLightDenoiseLib.options import RunOptions
from LowLightDenoiseLib.volume import Volume

CPU_2D = RunOptions(mode="2d", device="cpu")


@pytest.fixture(scope="module")
def dark(ct_path) -> Volume:
    """The real CT crop at 3 photons at full scale, 4 slices."""
    image = sitk.ReadImage(str(ct_path))
    clean = Volume(sitk.GetArrayFromImage(image)[4:8], spacing=image.GetSpacing())
    return simulate_volume(clean, LowLight(peak=3, read_noise=0.5), seed=1)


def test_the_job_description_carries_the_adaptation_time_and_refuses_a_bad_one():
    spec = JobSpec("denoise", ["default-2d"], CPU_2D, adapt_seconds=30)
    assert JobSpec.from_dict(spec.to_dict()).validated().adapt_seconds == 30.0
    assert JobSpec.from_dict(JobSpec("denoise", ["tv"]).to_dict()).adapt_seconds == 0.0
    with pytest.raises(InputError, match="0 \\(none\\) or a positive number of seconds"):
        JobSpec("denoise", ["default-2d"], adapt_seconds=-5).validated()
    with pytest.raises(InputError, match="adaptation time"):
        DenoiseSettings("default-2d", adapt_seconds="soon").validated()


def test_learned_denoisers_are_adapted_first_and_the_others_say_they_were_not(dark):
    progress = []
    done = run_denoise(dark, ["default-2d", "tv"], CPU_2D, adapt_seconds=2,
                       progress=lambda f, m: progress.append(f))
    learned, classical = done.rows
    assert learned["adapt_budget_s"] == 2 and "adapt_kept" in learned and "adapt_steps" in learned
    assert not any(k.startswith("adapt_") for k in classical)
    assert done.warnings[0].startswith("Adapted default-2d to this scan")
    assert done.warnings[1] == "tv is not a learned denoiser, so it ran without adaptation."
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_the_module_settings_reach_the_work_and_the_child_process(dark, tmp_path):
    job = DenoiseJob(dark, DenoiseSettings("default-2d", CPU_2D, adapt_seconds=2).validated(), ["default-2d"],
                     None, "dark", "")
    assert run_job(job).rows[0]["adapt_budget_s"] == 2
    (tmp_path / "temp").mkdir()
    process = JobProcess(JobSpec("denoise", ["default-2d"], CPU_2D, adapt_seconds=2), {"input": dark},
                         temp_root=str(tmp_path / "temp"), log_dir=str(tmp_path / "logs")).start()
    assert process.wait(300) == "succeeded", process.error_details
    result = process.result()
    assert result.rows[0]["adapt_budget_s"] == 2 and result.warnings[0].startswith("Adapted default-2d")
    assert np.isfinite(result.outputs[0].volume.array).all()
