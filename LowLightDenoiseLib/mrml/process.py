"""The module's jobs in a child process, on MRML nodes: nodes -> :class:`~LowLightDenoiseLib.jobs.JobProcess`
-> new nodes. The main thread does the first and the last step; the child does the work::

    job = prepare_denoise(input_node, settings, reference_node)      # main thread: copy arrays out
    process = start_denoise(job)                                      # writes the job's files, starts the child
    process.poll()  # from a timer, until process.state is not "running" (process.fraction, .message)
    nodes, table = publish_denoise(scene, job, process.result())      # main thread: new nodes

``launch`` keywords go to :class:`~LowLightDenoiseLib.jobs.JobProcess` (``python``, ``env``,
``temp_root``, ``log_dir``). :func:`run_in_child` does it all in one call for scripts and tests.
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Tuple

from ..jobs import JobProcess, JobSpec, SimulationSettings
from ..volume import Volume
from .geometry import volume_from_node
from .jobs import DenoiseJob, publish_denoise, publish_simulation


def start_denoise(job: DenoiseJob, **launch: Any) -> JobProcess:
    """Start ``job`` (from :func:`~.jobs.prepare_denoise`) in a child process."""
    kind = "compare" if len(job.methods) > 1 else "denoise"
    spec = JobSpec(kind, list(job.methods), job.options, calibrate=job.settings.calibrate, input_name=job.input_name,
                   adapt_seconds=job.settings.adapt_seconds)
    volumes = {"input": job.input}
    if job.reference is not None:
        volumes["reference"] = job.reference
    return JobProcess(spec, volumes, **launch).start()


@dataclasses.dataclass
class SimulationJob:
    """A simulation started from a node: its settings, the input node's id, the child process."""

    settings: SimulationSettings
    input_node_id: str
    input_name: str
    process: JobProcess


def start_simulation(input_node: Any, settings: SimulationSettings, **launch: Any) -> SimulationJob:
    """Main thread: copy the input out of the scene and start the simulation in a child process."""
    volume = volume_from_node(input_node, "input")
    spec = JobSpec("simulate", simulation=settings, input_name=input_node.GetName())
    process = JobProcess(spec, {"input": volume}, **launch).start()
    return SimulationJob(settings, input_node.GetID() or "", input_node.GetName(), process)


def publish_simulated(scene: Any, job: SimulationJob, name: Optional[str] = None) -> Any:
    """Main thread: the finished simulation as a new node (like the input node, when it still exists)."""
    noisy: Volume = job.process.result().outputs[0].volume
    input_node = scene.GetNodeByID(job.input_node_id) if job.input_node_id else None
    return publish_simulation(scene, input_node, job.settings, noisy, name=name, input_name=job.input_name)


def start_download(model: str, **launch: Any) -> JobProcess:
    """Download (and verify) a model's weights in a child process; ``result().path`` is the file."""
    return JobProcess(JobSpec("download", model=model), **launch).start()


def run_in_child(scene: Any, job: DenoiseJob, *, keep_outputs: bool = True, timeout: Optional[float] = None,
                 **launch: Any) -> Tuple[List[Any], Any]:
    """Start, wait for and publish a denoise/compare job; a failure raises its sentence."""
    from ..errors import LowLightDenoiseError

    process = start_denoise(job, **launch)
    try:
        process.wait(timeout)
        if process.running:
            process.cancel()
            raise LowLightDenoiseError(f"The job did not finish within {timeout:g} s and was cancelled.")
        return publish_denoise(scene, job, process.result(), keep_outputs=keep_outputs)
    finally:
        process.close()


__all__ = ["SimulationJob", "publish_simulated", "run_in_child", "start_denoise", "start_download",
           "start_simulation"]
