"""The module's SampleData: the shipped CT crop and a low-light version of it, with their checksums.

The Slicer module registers them with SampleData (``file://`` addresses of the files it ships in
``LowLightDenoise/Resources/SampleData``, checked by SHA-256), so a new user can try the module in
two clicks; the self-test loads them. :func:`load_sample_nodes` does what SampleData does, without
the application, for CI.

The low-light file was made from the clean crop with the library's own simulation::

    lowlightdenoise simulate Testing/Data/ct_chest_crop.nrrd \\
        LowLightDenoise/Resources/SampleData/ct_chest_crop_lowlight.nrrd \\
        --noise lowlight --brightness 1 --peak 50 --read-noise 1 --seed 1

(50 photons at full scale and a read noise of 1 photon: about 23 dB PSNR against the clean crop.)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, List

from ..errors import InputError
from ..files import sha256_of

CATEGORY = "Low-Light Denoise"


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str  #: SampleData's sample name (unique across Slicer)
    file: str  #: file name in the module's Resources/SampleData
    node: str  #: node name once loaded
    sha256: str
    title: str

    @property
    def checksum(self) -> str:
        """As SampleData expects it: ``SHA256:<digest>``."""
        return f"SHA256:{self.sha256}"


SAMPLES = (
    Sample("LowLightDenoiseCTCrop", "ct_chest_crop.nrrd", "CTChestCrop",
           "c9515ab99b573ff3449d611162cde0b5377a0ee77534dc4098ed1f1f4e44ac48",
           "Chest CT crop (96 x 96 x 12, HU): the clean reference"),
    Sample("LowLightDenoiseCTCropLowLight", "ct_chest_crop_lowlight.nrrd", "CTChestCropLowLight",
           "2a3e005886e14c96b3f1648caadc72becde5336f8a668232c1f483bbcbb0de2a",
           "The same crop as a simulated low-light acquisition (50 photons at full scale)"),
)


def sample_uri(folder: Path, sample: Sample) -> str:
    """The ``file://`` address SampleData downloads (copies) the sample from."""
    return (Path(folder) / sample.file).resolve().as_uri()


def register_samples(sample_data_logic: Any, module_dir: str) -> None:
    """Register :data:`SAMPLES` with Slicer's ``SampleData.SampleDataLogic`` (the module's files, checksums)."""
    folder = Path(module_dir) / "Resources" / "SampleData"
    for sample in SAMPLES:
        sample_data_logic.registerCustomSampleDataSource(
            category=CATEGORY, sampleName=sample.name,
            thumbnailFileName=str(Path(module_dir) / "Resources" / "Icons" / "LowLightDenoise.png"),
            uris=[sample_uri(folder, sample)], fileNames=[sample.file], nodeNames=[sample.node],
            checksums=[sample.checksum])


def load_sample_nodes(scene: Any, folder: Path) -> List[Any]:
    """Every sample of ``folder`` as a scalar volume node of ``scene``, checksum first (CI's SampleData)."""
    import slicer

    nodes = []
    for sample in SAMPLES:
        path = Path(folder) / sample.file
        if not path.is_file() or sha256_of(path) != sample.sha256:
            raise InputError(f"The sample file {path} is missing or does not have its registered checksum.")
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", sample.node)
        if not storage.ReadData(node):
            raise InputError(f"The sample file {path} could not be read.")
        nodes.append(node)
    return nodes
