"""Denoise every volume of a folder with LowLightDenoise and write ONE metrics CSV.

Works the same in plain Python with the ``slicer-core`` wheel and in headless Slicer::

    python examples/batch_denoise_folder.py IN_DIR OUT_DIR --method nlm
    Slicer --no-main-window --python-script examples/batch_denoise_folder.py IN_DIR OUT_DIR --method nlm

Each ``IN_DIR/<name>.nrrd`` (also .nhdr, .nii, .nii.gz, .mha, .mhd) becomes
``OUT_DIR/<name>_<method>.nrrd`` with the same geometry, and ``OUT_DIR/metrics.csv`` gets one row per
volume (with ``--reference-dir``, PSNR/SSIM/MSE against the file of the same name there, plus a row
for the unprocessed input): the rows of ``LowLightDenoiseLib.mrml``'s metrics table, written by
``LowLightDenoiseLib.tables``. Files are written to a temporary name and renamed, so an interrupted
run leaves no half-written output. A volume that fails is reported on stderr and skipped; the exit
code is 0 when every volume was processed, 1 when some failed, 2 for bad arguments.
"""
import argparse
import os
import sys
from pathlib import Path

try:
    import slicer
    import LowLightDenoiseLib
except ImportError:  # a source checkout run without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import slicer
    import LowLightDenoiseLib
from LowLightDenoiseLib import mrml, options, tables
from LowLightDenoiseLib.errors import LowLightDenoiseError

EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--method", default=LowLightDenoiseLib.DEFAULT_METHOD,
                        help="classical method or registered model (default: %(default)s)")
    parser.add_argument("--mode", default="auto", choices=options.MODES)
    parser.add_argument("--axis", type=int, default=0, choices=options.AXES, help="2D slice axis (k, j, i)")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    parser.add_argument("--strength", type=float, default=None,
                        help=f"0 input unchanged, 1 automatic (default), up to {options.MAX_STRENGTH:g} stronger")
    parser.add_argument("--flips", type=int, default=1, choices=options.FLIP_COUNTS,
                        help="test-time averaging over this many flips/rotations (any method; N times the time)")
    parser.add_argument("--reference-dir", type=Path, default=None, help="clean volumes with the same file names")
    return parser.parse_args(argv)


def volume_files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(EXTENSIONS))


def stem(path):
    name = path.name
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


def read_volume(scene, path):
    """Load a volume file into a new scalar (or RGB vector) volume node through MRML's own reader."""
    import slicer

    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", stem(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", stem(path))
        if not storage.ReadData(node):
            scene.RemoveNode(node)
            raise OSError(f"cannot read {path.name} as a volume")
    return node


def write_volume(node, path):
    """Write ``node`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    import slicer

    tmp = path.with_name(f".{path.stem}.part{path.suffix}")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(tmp))
    storage.SetUseCompression(True)
    if not storage.WriteData(node):
        if tmp.exists():
            tmp.unlink()
        raise OSError(f"cannot write {path}")
    os.replace(tmp, path)


def main(argv):
    args = parse_args(argv)
    try:  # checked once here, not once per file
        run = options.RunOptions(mode=args.mode, axis=args.axis, device=args.device, strength=args.strength,
                                 flips=args.flips).validated(resolve=False)
    except LowLightDenoiseError as error:
        print(error, file=sys.stderr)
        return 2
    if not args.input_dir.is_dir():
        print(f"Input folder {args.input_dir} does not exist.", file=sys.stderr)
        return 2
    files = volume_files(args.input_dir)
    if not files:
        print(f"No volume files ({', '.join(EXTENSIONS)}) in {args.input_dir}.", file=sys.stderr)
        return 2
    args.output_dir.mkdir(parents=True, exist_ok=True)
    scene = getattr(slicer, "mrmlScene", None)  # the application's scene inside Slicer
    if scene is None:
        scene = slicer.vtkMRMLScene()

    rows, failures = [], 0
    for i, path in enumerate(files):
        added = []
        try:
            node = read_volume(scene, path)
            added.append(node)
            reference = None
            if args.reference_dir is not None:
                reference = read_volume(scene, args.reference_dir / path.name)
                added.append(reference)

            def progress(fraction, message, _name=path.name, _i=i):
                if sys.stdout.isatty():
                    print(f"\r[{_i + 1}/{len(files)}] {_name}: {100 * fraction:5.1f}% {message[:50]:<50}", end="")

            # mrml.denoise_node in its three steps, to keep the rows as computed (a table node stores floats)
            job = mrml.prepare_denoise(node, mrml.DenoiseSettings(args.method, run), reference)
            comparison = mrml.run_job(job, progress)
            outputs, table = mrml.publish_denoise(scene, job, comparison)
            added += outputs + [table]
            write_volume(outputs[0], args.output_dir / f"{stem(path)}_{args.method}.nrrd")
            rows += [dict({"file": path.name}, **row) for row in comparison.rows]
            print(f"\r[{i + 1}/{len(files)}] {path.name}: done{' ' * 60}")
        except (LowLightDenoiseError, OSError) as error:
            failures += 1
            print(f"\n{path.name}: {error}", file=sys.stderr)
        finally:
            for n in added:
                scene.RemoveNode(n)
    if rows:
        tables.write_table(args.output_dir / "metrics.csv", rows)
        print(f"Wrote {len(files) - failures} volume(s) and {args.output_dir / 'metrics.csv'}")
    return 1 if failures else 0


sys.exit(main(sys.argv[1:]))
