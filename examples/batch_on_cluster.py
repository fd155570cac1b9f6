"""Run ``lowlightdenoise batch`` on Dask workers submitted as SLURM or PBS jobs (dask-jobqueue).

Start it on the cluster's login node (or in a small long-running job); it holds the Dask scheduler,
submits the worker jobs described in ``examples/dask-jobqueue.yaml`` and runs the cohort on them::

    pip install 'lowlightdenoise[batch]' dask-jobqueue
    python examples/batch_on_cluster.py MANIFEST.csv OUT_DIR --system slurm --jobs 10 -- --method nlm
    python examples/batch_on_cluster.py MANIFEST.csv OUT_DIR --system slurm-gpu --jobs 4 -- --method default-2d
    python examples/batch_on_cluster.py --system pbs --print-job-script   # what one worker job runs

Everything after ``--`` goes to ``lowlightdenoise batch`` (the scheduler's address, and ``--gpus 1``
for a GPU system, are added here). An interrupted run (the walltime, Ctrl-C) resumes with the same
command: the scans already done are skipped. Exit code: the batch command's.
"""
import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEMS = {"slurm": "SLURMCluster", "slurm-gpu": "SLURMCluster", "pbs": "PBSCluster"}


def parse_args(argv):
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    else:
        rest = []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", help="manifest CSV or folder (as for lowlightdenoise batch)")
    parser.add_argument("out_dir", nargs="?", help="output folder")
    parser.add_argument("--system", choices=sorted(SYSTEMS), default="slurm",
                        help="which section of the configuration: slurm, slurm-gpu or pbs (default slurm)")
    parser.add_argument("--config", type=Path, default=HERE / "dask-jobqueue.yaml",
                        help="dask-jobqueue configuration (default: the one beside this script)")
    parser.add_argument("--jobs", type=int, default=1, help="worker jobs to submit (default 1)")
    parser.add_argument("--print-job-script", action="store_true",
                        help="print the job script one worker job would run, submit nothing")
    args = parser.parse_args(argv)
    if not args.print_job_script and (args.manifest is None or args.out_dir is None):
        parser.error("give MANIFEST and OUT_DIR (or --print-job-script)")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args, rest


def make_cluster(system, config):
    """The dask-jobqueue cluster of one section of ``config`` (its scheduler runs in this process)."""
    import dask
    import dask_jobqueue
    import yaml

    with open(config) as f:
        dask.config.update(dask.config.config, yaml.safe_load(f), priority="new")
    base = system.split("-")[0]
    if system != base:  # a section of our own (slurm-gpu): the keys it does not set come from its system's
        dask.config.set({f"jobqueue.{system}": dict(dask.config.get(f"jobqueue.{base}"),
                                                    **dask.config.get(f"jobqueue.{system}"))})
    cls = getattr(dask_jobqueue, SYSTEMS[system])
    return cls(config_name=system, scheduler_options={"dashboard_address": ":0"})


def main(argv):
    args, rest = parse_args(argv)
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        print("This recipe needs dask-jobqueue: pip install dask-jobqueue", file=sys.stderr)
        return 2
    cluster = make_cluster(args.system, args.config)
    try:
        if args.print_job_script:
            print(cluster.job_script())
            return 0
        from LowLightDenoiseLib.cli import main as lowlightdenoise

        cluster.scale(jobs=args.jobs)
        print(f"Submitted {args.jobs} {args.system} job(s); Dask dashboard: {cluster.dashboard_link}", file=sys.stderr)
        gpus = ["--gpus", "1"] if args.system.endswith("-gpu") else []
        return lowlightdenoise(["batch", args.manifest, args.out_dir, *rest, *gpus,
                                "--scheduler", cluster.scheduler_address])
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
