"""Training pairs made on the fly: real clean patches -> augmented -> degraded -> network input.

One sample, exactly as the engine will see an image at inference (blind):

1. pick a scan of the split (weighted by modality), a slice (2D) or a slab (3D) and a *context*
   region around the patch; map it to [0, 1] with the scan's exact range (as
   :func:`LowLightDenoiseLib.degrade.simulate_volume` does, so ``peak`` means photons at full scale);
2. augment the clean context with MONAI transforms: rotation within +/-15 degrees, flips, zoom
   0.8-1.2, contrast stretching, gamma, histogram equalisation;
3. degrade it with :func:`LowLightDenoiseLib.degrade.random_degradation` (photon-limited low light
   mostly, the other noise types too; levels drawn from ranges, the low-light ones narrowed or widened by
   the config's ``data.lowlight``: :func:`draw_degradation`). The target of a *denoising* model is
   the noise-free degraded mean (a low-light image stays as dark: a denoiser keeps intensities), the
   target of an *enhancement* model is the clean image;
4. fit :class:`~LowLightDenoiseLib.normalize.Normalizer` on the noisy context (robust percentiles, as
   the engine does), estimate the noise with :func:`~LowLightDenoiseLib.noise.estimate_noise` on the
   normalised noisy context (the model is never told the true level), cut the patch, and build the
   network input with :func:`LowLightDenoiseLib.methods.learned.prepare_input` (the same code the
   engine runs at inference) and the target with ``prepare_target`` (the same domain: VST or not).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from LowLightDenoiseLib.degrade import Degradation, LowLight, random_degradation
from LowLightDenoiseLib.noise import NoiseProfile, estimate_noise
from LowLightDenoiseLib.normalize import Normalizer
from train.config_fields import from_config_dict

DATA_DIR = Path(__file__).resolve().parent / "data"
SPLITS = Path(__file__).resolve().parent / "splits.json"

DEFAULT_MODALITY_WEIGHTS: Dict[str, float] = {
    "ct": 3.0, "xray": 2.0, "mr": 2.0, "nm": 0.5, "us": 1.0, "fundus": 1.0, "microscopy": 1.0, "photo": 1.5,
}


#: the low-light draw of :func:`LowLightDenoiseLib.degrade.random_degradation`, overridable per config
LOWLIGHT_RANGES: Dict[str, Tuple[float, float]] = {
    "peak": (10.0, 1000.0), "brightness": (0.1, 1.0), "gamma": (1.0, 2.5), "read_noise": (0.0, 3.0),
}


@dataclasses.dataclass
class PairConfig:
    """How training pairs are drawn (the ``data`` section of a training config)."""

    spatial_dims: int = 2
    patch: int = 64  # in-plane patch size
    depth: int = 16  # 3D patch depth
    context: int = 128  # in-plane size of the region the normaliser and the noise estimate see
    context_depth: int = 24
    kinds: Optional[List[str]] = None  # degradation kinds (None: all, low light weighted most)
    kind_weights: Optional[Dict[str, float]] = None  # relative frequency of each kind (overrides kinds)
    target: str = "denoise"  # "denoise": noise-free degraded mean; "enhance": the clean image
    augment: bool = True
    modality_weights: Dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_MODALITY_WEIGHTS))
    modalities: Optional[List[str]] = None  # restrict to these modalities
    patches_per_region: int = 1  # consecutive samples cut from one degraded region (amortises augmentation)
    #: ranges of the low-light draw, e.g. ``{"peak": [10, 1000], "brightness": [0.5, 1]}`` (peak
    #: log-uniform, the others uniform); keys left out keep :func:`random_degradation`'s ranges
    lowlight: Optional[Dict[str, List[float]]] = None
    #: 3D only, thick slices: each region averages ``s`` consecutive slices into one, ``s`` drawn
    #: uniformly from ``[low, high]`` (limited by the volume's depth), so thin isotropic training
    #: volumes also look like the 2.5-7 mm slices of clinical CT and MR
    slice_step: Optional[List[int]] = None
    #: 3D only, thick slices in millimetres (instead of ``slice_step``): each region's slice thickness is
    #: drawn uniformly from ``[low, high]`` mm and made of ``round(mm / spacing)`` of the volume's own
    #: slices (at least one), so thin templates and clinical 5 mm volumes both end up at clinical thicknesses
    slice_mm: Optional[List[float]] = None
    #: 3D only: the share of regions whose slices are taken from random, unrelated places of the volume
    #: (in random order), so a model that uses neighbouring slices also learns to ignore them when
    #: they do not match (very thick slices, motion, unrelated frames)
    slice_shuffle: float = 0.0
    #: 3D only, coarse pixels: each region averages ``s x s`` pixel blocks in-plane, ``s`` drawn uniformly
    #: from ``[low, high]`` (limited by the volume's size), so slices also differ as much, relative to the
    #: in-plane detail, as in low-resolution clinical volumes
    inplane_step: Optional[List[int]] = None

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.slice_shuffle) <= 1.0 or (self.slice_shuffle and self.spatial_dims != 3):
            raise ValueError(f"data.slice_shuffle is a share in [0, 1] for 3D configs, not {self.slice_shuffle!r}.")
        for key in ("slice_step", "inplane_step"):
            step = getattr(self, key)
            if step is None:
                continue
            if self.spatial_dims != 3:
                raise ValueError(f"data.{key} applies to 3D configs only.")
            step = list(step)
            if len(step) != 2 or not all(isinstance(v, int) for v in step) or not 1 <= step[0] <= step[1]:
                raise ValueError(f"data.{key} must be [low, high] with integers 1 <= low <= high, not {step!r}.")
        if self.slice_mm is not None:
            mm = list(self.slice_mm)
            if self.spatial_dims != 3 or self.slice_step is not None:
                raise ValueError("data.slice_mm applies to 3D configs only, and not together with data.slice_step.")
            if len(mm) != 2 or not 0 < float(mm[0]) <= float(mm[1]):
                raise ValueError(f"data.slice_mm must be [low, high] millimetres with 0 < low <= high, not {mm!r}.")
        unknown = sorted(set(self.lowlight or {}) - set(LOWLIGHT_RANGES))
        if unknown:
            raise ValueError(f"Unknown data.lowlight range(s) {unknown}; known: {sorted(LOWLIGHT_RANGES)}.")
        for key, pair in (self.lowlight or {}).items():
            if len(pair) != 2 or not float(pair[0]) <= float(pair[1]):
                raise ValueError(f"data.lowlight.{key} must be [low, high] with low <= high, not {pair!r}.")

    @classmethod
    def from_dict(cls, d: Dict) -> "PairConfig":
        return from_config_dict(cls, d, "data")


@dataclasses.dataclass
class PreparedScan:
    """A converted scan from ``train/data`` (memory-mapped float32 ``(z, y, x)``)."""

    id: str
    modality: str
    dims: int
    array: np.ndarray
    low: float
    high: float
    slice_spacing: float = 1.0  # mm between slices (z)

    @classmethod
    def load(cls, scan_id: str, data_dir: Path = DATA_DIR) -> "PreparedScan":
        meta = json.loads((data_dir / f"{scan_id}.json").read_text())
        array = np.load(data_dir / f"{scan_id}.npy", mmap_mode="r")
        return cls(scan_id, meta["modality"], int(meta["dims"]), array, float(meta["min"]), float(meta["max"]),
                   float(meta.get("spacing_xyz", [1.0, 1.0, 1.0])[2]))


def split_ids(split: str, splits_file: Path = SPLITS) -> List[str]:
    """Scan ids of ``train``, ``val`` or ``test`` from the committed split file."""
    splits = json.loads(Path(splits_file).read_text())
    if split not in ("train", "val", "test"):
        raise ValueError(f"Unknown split {split!r}; use train, val or test.")
    return list(splits[split])


def load_scans(split: str, config: PairConfig, data_dir: Path = DATA_DIR,
               splits_file: Path = SPLITS) -> List[PreparedScan]:
    """Scans of a split usable for this config (3D configs use volumes only)."""
    scans = [PreparedScan.load(i, data_dir) for i in split_ids(split, splits_file)]
    scans = [s for s in scans if config.spatial_dims == 2 or (s.dims == 3 and s.array.shape[0] >= 4)]
    if config.modalities:
        scans = [s for s in scans if s.modality in config.modalities]
    if not scans:
        raise ValueError(f"No {config.spatial_dims}D scans in split {split!r} for modalities {config.modalities}.")
    return scans


def build_augment(spatial_dims: int):
    """MONAI geometric augmentation of a channel-first clean region in [0, 1]."""
    from monai.transforms import Compose, RandFlip, RandRotate, RandZoom

    # range_x is the in-plane (y, x) rotation in 2D and in 3D (MONAI's first angle), so slices stay slices
    rotate = RandRotate(range_x=math.radians(15.0), prob=0.5, keep_size=True, padding_mode="reflection")
    flips = [RandFlip(prob=0.5, spatial_axis=a) for a in range(spatial_dims)]
    zoom = RandZoom(prob=0.5, min_zoom=0.8, max_zoom=1.2, keep_size=True, padding_mode="reflect")
    return Compose([rotate, zoom] + flips)


def intensity_augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast stretching, gamma or histogram equalisation (MONAI), each with a small probability."""
    from monai.transforms import AdjustContrast, HistogramNormalize, ScaleIntensityRangePercentiles

    u = rng.uniform()
    if float(np.ptp(x)) < 1e-3 or np.percentile(x, 5) >= np.percentile(x, 95):  # flat: nothing to stretch
        return np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    if u < 0.15:
        lo, hi = rng.uniform(0.0, 5.0), rng.uniform(95.0, 100.0)
        x = ScaleIntensityRangePercentiles(lower=lo, upper=hi, b_min=0.0, b_max=1.0, clip=True)(x)
    elif u < 0.35:
        x = AdjustContrast(gamma=float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))))(x)
    elif u < 0.42:
        x = HistogramNormalize(num_bins=256, min=0, max=1)(x)
    return np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)


def clean_target(degradation: Degradation, clean: np.ndarray, target: str) -> np.ndarray:
    """What the model must output: the clean image (enhance) or the noise-free degraded mean (denoise).

    An enhancement target is later mapped to [0, 1] by its own robust range: the engine inverts the
    normalisation fitted on the dark input, so an enhanced image spans the input's physical range with
    the clean image's brightness distribution, like gamma correction or CLAHE would give.
    """
    if target == "enhance" or not isinstance(degradation, LowLight):
        return clean
    return degradation.darken(clean).astype(np.float32)


def _draw_kinds(config: PairConfig, rng: np.random.Generator) -> Optional[List[str]]:
    """The kinds :func:`random_degradation` may draw from: one kind drawn by ``kind_weights``, or ``kinds``."""
    if not config.kind_weights:
        return config.kinds
    names = sorted(config.kind_weights)
    w = np.array([config.kind_weights[k] for k in names], dtype=np.float64)
    return [names[int(rng.choice(len(names), p=w / w.sum()))]]


def draw_degradation(config: PairConfig, rng: np.random.Generator) -> Degradation:
    """A blind training degradation: :func:`random_degradation`, with the config's low-light ranges."""
    degradation = random_degradation(rng, _draw_kinds(config, rng))
    if not config.lowlight or not isinstance(degradation, LowLight):
        return degradation
    r = {k: tuple(float(v) for v in config.lowlight.get(k, d)) for k, d in LOWLIGHT_RANGES.items()}
    peak = float(np.exp(rng.uniform(np.log(r["peak"][0]), np.log(r["peak"][1]))))
    return LowLight(brightness=float(rng.uniform(*r["brightness"])), gamma=float(rng.uniform(*r["gamma"])),
                    peak=peak, read_noise=float(rng.uniform(*r["read_noise"])))


def _crop_start(rng: np.random.Generator, size: int, crop: int) -> int:
    return int(rng.integers(0, size - crop + 1)) if size > crop else 0


def _pad_to(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    pads = [(0, max(0, s - d)) for d, s in zip(x.shape, shape)]
    return np.pad(x, pads, mode="reflect") if any(p[1] for p in pads) else x


class PairDataset(Dataset):
    """Map-style dataset of ``(input (C, ...), target (1, ...))`` pairs, reproducible from ``seed``.

    ``len`` is the number of samples per epoch; sample ``i`` of epoch ``e`` is a pure function of
    ``(seed, e, i)``, so a ``DistributedSampler`` gives each rank its own disjoint share.
    """

    def __init__(self, scans: List[PreparedScan], config: PairConfig, input_config: Dict, length: int, seed: int = 0,
                 fixed: bool = False) -> None:
        self.scans = scans
        self.config = config
        self.input_config = dict(input_config)
        self.length = int(length)
        self.seed = int(seed)
        self.fixed = fixed  # validation: the same pairs every epoch
        self.epoch = 0
        w = np.array([config.modality_weights.get(s.modality, 1.0) for s in scans], dtype=np.float64)
        counts = {m: sum(1 for s in scans if s.modality == m) for m in {s.modality for s in scans}}
        w = w / np.array([counts[s.modality] for s in scans])  # each modality's weight shared by its scans
        self.weights = w / w.sum()
        self.augment = build_augment(config.spatial_dims) if config.augment else None
        self._region_key: Optional[Tuple[int, int]] = None
        self._region: Optional[Region] = None

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        epoch = 0 if self.fixed else self.epoch
        k = max(1, int(self.config.patches_per_region))
        group, member = divmod(int(index), k)
        key = (epoch, group)
        if self._region_key != key:
            rng = np.random.default_rng([self.seed, epoch, group])
            scan = self.scans[int(rng.choice(len(self.scans), p=self.weights))]
            self._region = make_region(scan, self.config, rng, self.augment)
            self._region_key = key
        rng = np.random.default_rng([self.seed, epoch, group, member, 1])
        x, y = cut_pair(self._region, self.config, self.input_config, rng)
        return torch.from_numpy(x), torch.from_numpy(y)


def _context_region(scan: PreparedScan, config: PairConfig, rng: np.random.Generator) -> np.ndarray:
    a = scan.array
    ctx = config.context
    if config.spatial_dims == 2:
        z = int(rng.integers(0, a.shape[0]))
        y0, x0 = _crop_start(rng, a.shape[1], ctx), _crop_start(rng, a.shape[2], ctx)
        region = np.asarray(a[z, y0:y0 + ctx, x0:x0 + ctx], dtype=np.float32)
    else:
        cd = config.context_depth
        pix = 1
        if config.inplane_step:
            pix = int(rng.integers(config.inplane_step[0], config.inplane_step[1] + 1))
            pix = max(1, min(pix, a.shape[1] // ctx, a.shape[2] // ctx))
        ctx = ctx * pix
        if config.slice_shuffle and rng.uniform() < config.slice_shuffle and a.shape[0] >= cd:
            z = rng.choice(a.shape[0], size=cd, replace=False)  # unrelated slices, random order
            y0, x0 = _crop_start(rng, a.shape[1], ctx), _crop_start(rng, a.shape[2], ctx)
            region = np.stack([np.asarray(a[int(i), y0:y0 + ctx, x0:x0 + ctx], dtype=np.float32) for i in z])
            return (_pixel_blocks(region, pix) - scan.low) / max(scan.high - scan.low, 1e-12)
        step = 1
        if config.slice_step:
            step = int(rng.integers(config.slice_step[0], config.slice_step[1] + 1))
        elif config.slice_mm:
            step = int(round(rng.uniform(float(config.slice_mm[0]), float(config.slice_mm[1])) / scan.slice_spacing))
        step = max(1, min(step, a.shape[0] // cd))
        z0 = _crop_start(rng, a.shape[0], cd * step)
        y0, x0 = _crop_start(rng, a.shape[1], ctx), _crop_start(rng, a.shape[2], ctx)
        region = np.asarray(a[z0:z0 + cd * step, y0:y0 + ctx, x0:x0 + ctx], dtype=np.float32)
        region = _pixel_blocks(thick_slices(region, step), pix)
    return (region - scan.low) / max(scan.high - scan.low, 1e-12)


def thick_slices(region: np.ndarray, step: int) -> np.ndarray:
    """Each ``step`` consecutive slices of a ``(z, y, x)`` region averaged into one thick slice (before any noise);
    ``z`` must be a multiple of ``step``."""
    return region if step <= 1 else region.reshape((-1, step) + region.shape[1:]).mean(axis=1)


def _pixel_blocks(region: np.ndarray, pix: int) -> np.ndarray:
    """Mean of ``pix x pix`` in-plane blocks of a ``(z, y, x)`` region (coarser pixels, before any noise)."""
    if pix <= 1:
        return region
    z, h, w = region.shape
    h, w = h - h % pix, w - w % pix
    return region[:, :h, :w].reshape(z, h // pix, pix, w // pix, pix).mean(axis=(2, 4))


@dataclasses.dataclass
class Region:
    """A degraded context region, normalised as the engine would, with its target and noise estimate."""

    noisy: np.ndarray  # normalised noisy region
    target: np.ndarray  # target in the same normalised units
    noise: NoiseProfile  # estimated on ``noisy`` (blind)
    degradation: Degradation


def make_region(scan: PreparedScan, config: PairConfig, rng: np.random.Generator, augment=None,
                attempts: int = 10) -> Region:
    """Steps 1-4 of the module docstring for one context region of ``scan``.

    A region whose noisy version carries no measurable signal or noise (e.g. zero background under
    multiplicative noise, where the noise estimate is undefined) is redrawn, up to ``attempts`` times.
    """
    for _ in range(max(1, attempts)):
        region = _try_region(scan, config, rng, augment)
        if region is not None:
            return region
    raise ValueError(f"PreparedScan {scan.id!r} gave no usable region in {attempts} attempts.")


def _try_region(scan: PreparedScan, config: PairConfig, rng: np.random.Generator, augment=None) -> Optional[Region]:
    clean = _pad_to(_context_region(scan, config, rng), _patch_shape(config))
    if augment is not None:
        augment.set_random_state(seed=int(rng.integers(0, 2**31 - 1)))
        clean = np.asarray(augment(clean[np.newaxis]), dtype=np.float32)[0]
        clean = intensity_augment(clean[np.newaxis], rng)[0]
    clean = np.clip(clean, 0.0, 1.0)
    degradation = draw_degradation(config, rng)
    noisy = degradation.apply(clean, rng).astype(np.float32)
    target = clean_target(degradation, clean, config.target)
    if float(np.ptp(noisy)) <= 1e-6 or float(np.ptp(target)) <= 1e-6:
        return None
    norm = Normalizer.fit(noisy)
    noisy_n = norm.forward(noisy)
    # enhance: the clean image as it should look in the noisy image's [0, 1] frame (own robust range)
    target_n = norm.forward(target) if config.target == "denoise" else Normalizer.fit(target).forward(target)
    noise = estimate_noise(noisy_n, constrained=True)  # what a LearnedMethod is given at inference (noise_fit)
    if not all(np.isfinite(v) for v in (noise.sigma, noise.a, noise.b)):
        return None
    return Region(noisy_n, target_n, noise, degradation)


def _patch_shape(config: PairConfig) -> Tuple[int, ...]:
    return (config.patch, config.patch) if config.spatial_dims == 2 else (config.depth, config.patch, config.patch)


def cut_pair(region: Region, config: PairConfig, input_config: Dict,
             rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """A random patch of ``region`` as (network input, target), both from the engine's own functions:
    :func:`~LowLightDenoiseLib.methods.learned.prepare_input` and ``prepare_target`` (the target in the
    network's output domain: normalised units, or the rescaled VST domain of a ``vst`` model)."""
    from LowLightDenoiseLib.models.spec import prepare_input, prepare_target

    patch = _patch_shape(config)
    starts = [_crop_start(rng, s, p) for s, p in zip(region.noisy.shape, patch)]
    index = tuple(slice(s, s + p) for s, p in zip(starts, patch))
    x = prepare_input(np.ascontiguousarray(region.noisy[index]), region.noise, input_config)
    y = prepare_target(np.ascontiguousarray(region.target[index]), region.noise, input_config)
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float32)


def make_pair(scan: PreparedScan, config: PairConfig, input_config: Dict, rng: np.random.Generator,
              augment=None) -> Tuple[np.ndarray, np.ndarray]:
    """One blind (network input, target) pair from ``scan`` (a region, then one patch of it)."""
    return cut_pair(make_region(scan, config, rng, augment), config, input_config, rng)
