"""The command line's arguments: every subcommand, option and positional argument, with its help."""
from __future__ import annotations

import argparse

from .. import DEFAULT_METHOD, DEFAULT_MODEL, __version__
from ..options import AXES, FLIP_COUNTS, MAX_STRENGTH, MODES
from .console import Parser

PROG = "lowlightdenoise"
NOISE_TYPES = ("lowlight", "gaussian", "salt_pepper", "speckle", "rician", "correlated_gaussian")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages (results still print)")


def _add_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="2d: slice by slice along --axis; 3d: whole volume; auto: the method's choice (default)")
    p.add_argument("--axis", type=int, choices=AXES, default=0,
                   help="slice axis for 2D mode, in array order (0 = axial k, 1 = j, 2 = i; default 0)")
    p.add_argument("--device", default="auto", help="auto (GPU when available), cuda, cuda:N or cpu")
    p.add_argument("--strength", type=float, default=None,
                   help=f"how strongly to denoise, for every method: 1 the automatic strength (default), 0 the input "
                        f"unchanged, between gentler, up to {MAX_STRENGTH:g} stronger")
    p.add_argument("--flips", type=int, choices=FLIP_COUNTS, default=1,
                   help="test-time averaging: the mean of the results for this many in-plane flips/rotations of the "
                        "input, for any method (each one a full run: 8 takes 8 times as long; default 1)")
    p.add_argument("--ensemble", dest="flips", type=int, choices=FLIP_COUNTS, help=argparse.SUPPRESS)  # former name
    p.add_argument("--calibrate", action="store_true",
                   help="classical denoisers: choose the strength by J-invariant self-supervised calibration on "
                        "the image itself instead of from the noise estimate (slower; not with --strength; refused "
                        "for learned models and enhancers); the table records it")


def _add_metric_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-range", type=float, default=None,
                   help="data range L for PSNR/SSIM in physical units (default: reference max - min)")
    p.add_argument("--force-reference", action="store_true",
                   help="measure against a reference with another spacing, origin or orientation (a warning "
                        "instead of an error; the size must still match)")


def _add_adapt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapt", type=float, default=None, metavar="SECONDS",
                   help="first adapt the learned model to this scan for SECONDS (self-supervised, no clean image; "
                        "the un-adapted model is used when adapting does not help; the table records it)")
    p.add_argument("--save-weights", metavar="FILE",
                   help="with --adapt: also write the adapted weights to FILE (*.safetensors, card beside it), for "
                        "--method FILE on more scans from the same scanner")


def _add_dtype(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", default=None,
                   help="pixel type of the written file (e.g. float32); default: the input's type when values fit")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Denoise and restore low-light medical images, and measure the result.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("denoise", help="denoise one image or volume", description="Denoise INPUT into OUTPUT.")
    p.add_argument("input", metavar="INPUT", help="image file or DICOM folder")
    p.add_argument("output", metavar="OUTPUT", help="output file (format from the extension)")
    p.add_argument("--method", default=None,
                   help=f"method name, any case (see 'lowlightdenoise methods'); default: {DEFAULT_METHOD} "
                        f"(classifies the noise and runs the matched method: {DEFAULT_MODEL} for photon, Gaussian "
                        f"and Rician noise; with --adapt: {DEFAULT_MODEL})")
    _add_engine(p)
    p.add_argument("--seed", type=int, default=0, help="seed for methods with randomness (default 0)")
    p.add_argument("--reference", metavar="REF", help="clean image of the same size: adds PSNR/SSIM/MSE")
    p.add_argument("--metrics", metavar="FILE", help="write the metrics table to FILE.csv or FILE.json")
    _add_metric_options(p)
    _add_dtype(p)
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT (and the metrics file) if they exist")
    _add_adapt(p)
    _add_common(p)

    p = sub.add_parser("adapt", help="adapt a learned model to a scan, keep the weights for its scanner",
                       description="Fine-tune a learned model on INPUT itself (self-supervised: no clean image) and "
                                   "write the weights to WEIGHTS with a card beside it, for 'denoise --method WEIGHTS' "
                                   "on more scans from the same scanner (see docs/adaptation.md).")
    p.add_argument("input", metavar="INPUT", help="the noisy scan to adapt to (image file or DICOM folder)")
    p.add_argument("weights", metavar="WEIGHTS", help="weights file to write (*.safetensors; its card goes beside it "
                                                      "as .md)")
    p.add_argument("--method", default=None,
                   help=f"the learned model to adapt: a registered name or a weights file (default {DEFAULT_MODEL})")
    p.add_argument("--budget", type=float, default=120.0, metavar="SECONDS",
                   help="time for the adaptation, in seconds (default 120)")
    p.add_argument("--steps", type=int, default=None,
                   help="stop after this many steps at the latest (the same seed and steps give the same weights)")
    p.add_argument("--axis", type=int, choices=AXES, default=0, help="slice axis of a 2D model (default 0)")
    p.add_argument("--device", default="auto", help="auto (GPU when available), cuda, cuda:N or cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the patches and masks (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace WEIGHTS and its card if they exist")
    _add_common(p)

    p = sub.add_parser("simulate", help="degrade a clean image (low light, noise)",
                       description="Degrade INPUT into OUTPUT with a seeded noise model (see docs/cli.md).")
    p.add_argument("input", metavar="INPUT", help="clean image file or DICOM folder")
    p.add_argument("output", metavar="OUTPUT", help="degraded image to write (format from the extension)")
    p.add_argument("--noise", choices=NOISE_TYPES, default="lowlight", type=lambda s: s.replace("-", "_"),
                   help="degradation model (default lowlight)")
    p.add_argument("--brightness", type=float, help="lowlight: brightness factor (0, 1]")
    p.add_argument("--gamma", type=float, help="lowlight: gamma of the darkening curve")
    p.add_argument("--peak", type=float, help="lowlight: photons at full scale (lower = noisier)")
    p.add_argument("--read-noise", type=float, help="lowlight: Gaussian read noise, in photons")
    p.add_argument("--sigma", type=float, help="gaussian/speckle/rician/correlated_gaussian: noise level")
    p.add_argument("--amount", type=float, help="salt_pepper: fraction of pixels hit")
    p.add_argument("--salt-fraction", type=float, help="salt_pepper: fraction of hits that are white")
    p.add_argument("--length", type=float, help="correlated_gaussian: correlation length in voxels")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_dtype(p)
    p.add_argument("--overwrite", action="store_true")
    _add_common(p)

    p = sub.add_parser("estimate-noise", help="noise level, Poisson-Gaussian parameters and noise type")
    p.add_argument("input", metavar="INPUT", help="image file or DICOM folder to analyse")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_common(p)

    p = sub.add_parser("evaluate", help="metrics of outputs against a clean reference",
                       description="Full-reference metrics of each OUT against REF (and no-reference figures "
                                   "against --input).")
    p.add_argument("reference", metavar="REF", help="the clean reference image")
    p.add_argument("outputs", metavar="OUT", nargs="+", help="one or more images to measure against REF")
    p.add_argument("--input", help="the noisy input the outputs came from: adds noise reduction, contrast, edges")
    _add_metric_options(p)
    p.add_argument("--axis", type=int, choices=(0, 1, 2), default=0, help="slice axis of the 2D SSIM (default 0)")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV (- for stdout)")
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON (- for stdout)")
    p.add_argument("--overwrite", action="store_true")
    _add_common(p)

    p = sub.add_parser("compare", help="several methods on one input, one table")
    p.add_argument("input", metavar="INPUT", help="image file or DICOM folder")
    p.add_argument("--methods", help="comma-separated method names (see 'lowlightdenoise methods'; "
                                     "default: every classical denoiser)")
    _add_engine(p)
    p.add_argument("--reference", metavar="REF", help="clean image: adds PSNR/SSIM/MSE")
    _add_metric_options(p)
    p.add_argument("--output-dir", metavar="DIR", help="write each result as DIR/<input>_<method>.<ext>")
    p.add_argument("--format", metavar="EXT", help="file type of the results in --output-dir (default: the input's)")
    _add_dtype(p)
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV (- for stdout)")
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON (- for stdout)")
    p.add_argument("--overwrite", action="store_true")
    _add_common(p)

    p = sub.add_parser("methods", help="every method, classical and learned, one line each")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_common(p)

    p = sub.add_parser("models", help="list, download, verify or import learned models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", parser_class=Parser)
    q = msub.add_parser("list", help="registered models and whether they are installed")
    q.add_argument("--json", action="store_true")
    _add_common(q)
    q = msub.add_parser("download", help="download and verify weights")
    q.add_argument("names", nargs="*", metavar="NAME", help="registered model names")
    q.add_argument("--all", action="store_true", help="every registered model")
    _add_common(q)
    q = msub.add_parser("verify", help="check installed weights against their sha256")
    q.add_argument("names", nargs="*", metavar="NAME", help="registered model names (default: all)")
    _add_common(q)
    q = msub.add_parser("import", help="install weights from a local file (offline)")
    q.add_argument("name", metavar="NAME", help="the registered model the file belongs to")
    q.add_argument("file", metavar="FILE", help="the weights file, obtained some other way")
    _add_common(q)

    sub.add_parser("benchmark", help="quality, speed and memory of every method (see 'benchmark --help')",
                   add_help=False)
    sub.add_parser("batch", help="denoise a cohort on a Dask cluster, resumable, one results table (see "
                                 "'batch --help')", add_help=False)
    return parser


