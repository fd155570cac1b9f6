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

#: The learned model for photon-limited (and Gaussian, Rician) noise: blind, it beats every automatic classical
#: method of the engine and NLM/TV tuned with the clean image at peak 300, 100 and 30 photons
#: (Resources/ModelCards/default-2d.md, measured by train/evaluate.py). ``auto`` runs it for those noise types;
#: it is what ``adapt`` fine-tunes when no model is named.
DEFAULT_MODEL = "default-2d"

#: The method used when none is named (command line, Slicer module, batch): ``auto`` classifies the noise and runs
#: the matched method (:mod:`.methods.auto`). It became the default because on the test split it is never worse
#: than DEFAULT_MODEL on photon noise (the same model runs there) and gains 6-12 dB on salt-and-pepper and
#: 0.3-0.6 dB on speckle (train/reports/routing.md, measured by train/routing_report.py).
DEFAULT_METHOD = "auto"
