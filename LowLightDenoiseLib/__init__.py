"""LowLightDenoiseLib: denoising and restoration of low-light medical images, with measured quality.

The package imports nothing heavy at import time (the Slicer module imports it at start-up);
import the submodules you need:

* :mod:`.io` - read and write images (NRRD, NIfTI, MHA, DICOM, PNG/TIFF/JPEG) as :class:`.volume.Volume`
* :mod:`.degrade` - low-light and noise simulation; :mod:`.noise` - noise estimation and classification
* :mod:`.methods` - every classical and learned method behind one interface
* :mod:`.pipeline` - the engine: ``denoise_volume(volume, method, mode="auto")``
* :mod:`.metrics` - PSNR, SSIM, MSE and no-reference figures; :mod:`.registry` - downloadable models
* :mod:`.mrml` - the same on 3D Slicer MRML nodes (no Qt)
"""

__version__ = "0.2.0"

#: The method used when none is named (command line, Slicer module, batch example): the best-scoring
#: shipped method on the test split. Since v0.2.0 that is the learned default-2d: blind, it beats every
#: automatic classical method of the engine and NLM/TV tuned with the clean image at peak 300, 100 and
#: 30 photons (Resources/ModelCards/default-2d.md, measured by train/evaluate.py).
DEFAULT_METHOD = "default-2d"
