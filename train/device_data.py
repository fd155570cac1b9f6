"""Carry the training data to a GPU machine that can fetch nothing: central crops of every scan of some splits,
quantised to 16 bits over each scan's own range, in one compressed archive under a size budget.

A device machine receives the working tree (tracked files, about 38 MB, plus carried paths) up to 64 MiB in all,
and ``train/data`` (about 500 MB, not tracked) cannot travel. ``pack`` writes ``.devicedata/scans.npz`` (ignored
by git; name it in ``carry``) within ``--budget-mb``: every scan keeps its metadata (its full-scan ``min`` /
``max``, so the training's normalisation is unchanged) and a central crop (volumes: the central ``--depth``
slices; every image: the central square, as large as the budget allows, the same voxel count per scan). ``unpack``
writes them back as ``train/data``'s ``NAME.npy`` (float32) and ``NAME.json`` on the device, where
``train/train.py`` reads them as usual. Quantisation error: under 1e-5 of a scan's range (16 bits).

    python train/device_data.py pack --splits train,val --budget-mb 24      # here
    python3 train/device_data.py unpack                                    # there, before train/train.py
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.dataset import DATA_DIR, SPLITS, split_ids  # noqa: E402

ARCHIVE = Path(__file__).resolve().parents[1] / ".devicedata" / "scans.npz"
LEVELS = 65535


def crop(array: np.ndarray, dims: int, voxels: int, depth: int) -> np.ndarray:
    """The central part of a scan ``(z, y, x)`` (a 2D image: ``(channels, y, x)``, every channel kept) with at
    most ``voxels`` voxels: a volume keeps its central ``depth`` slices, then the central square in-plane."""
    z = min(int(depth), array.shape[0]) if dims == 3 else array.shape[0]
    side = max(8, int(math.isqrt(max(voxels // z, 1))))
    h, w = min(side, array.shape[1]), min(side, array.shape[2])
    z0, y0, x0 = (array.shape[0] - z) // 2, (array.shape[1] - h) // 2, (array.shape[2] - w) // 2
    return np.asarray(array[z0:z0 + z, y0:y0 + h, x0:x0 + w])


def _quantise(array: np.ndarray, low: float, high: float) -> np.ndarray:
    scale = (high - low) or 1.0
    return np.round(np.clip((array - low) / scale, 0.0, 1.0) * LEVELS).astype(np.uint16)


def _archive_bytes(crops: Dict[str, np.ndarray], metas: Dict[str, Dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, __meta__=np.frombuffer(json.dumps(metas).encode(), dtype=np.uint8),
                        **{k: _quantise(v, metas[k]["min"], metas[k]["max"]) for k, v in crops.items()})
    return buffer.getvalue()


def pack(ids: Iterable[str], out: Path = ARCHIVE, budget_mb: float = 24.0, depth: int = 16,
         data_dir: Path = DATA_DIR) -> Dict[str, Any]:
    """Write the archive of scans ``ids`` under ``budget_mb`` MiB; returns what it holds (shapes, size)."""
    ids = list(ids)
    if not ids:
        raise ValueError("Name at least one scan to pack.")
    missing = [i for i in ids if not (data_dir / f"{i}.npy").exists()]
    if missing:
        raise ValueError(f"{len(missing)} scans are not prepared in {data_dir} ({', '.join(missing[:3])}); "
                         "run python train/prepare_data.py first.")
    metas = {i: json.loads((data_dir / f"{i}.json").read_text()) for i in ids}
    arrays = {i: np.load(data_dir / f"{i}.npy", mmap_mode="r") for i in ids}
    budget = int(budget_mb * 2 ** 20)
    voxels = 3 * budget // len(ids)  # compressed 16-bit voxels take about 0.7 bytes: start large, shrink to fit
    for _ in range(40):
        crops = {i: crop(arrays[i], int(metas[i]["dims"]), voxels, depth) for i in ids}
        for i, c in crops.items():
            metas[i]["packed_shape"] = list(c.shape)
        data = _archive_bytes(crops, metas)
        if len(data) <= budget:
            break
        voxels = int(voxels * 0.85)
    else:
        raise ValueError(f"The scans do not fit in {budget_mb:g} MiB even cropped small; give a larger budget.")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(data)
    partial.replace(out)
    return {"archive": str(out), "bytes": len(data), "scans": {i: list(c.shape) for i, c in crops.items()}}


def unpack(archive: Path = ARCHIVE, data_dir: Path = DATA_DIR, overwrite: bool = False) -> List[str]:
    """Write the archive's scans into ``data_dir`` as ``NAME.npy`` (float32, physical units) and ``NAME.json``."""
    if not Path(archive).exists():
        raise ValueError(f"No packed data at {archive}; pack it with python train/device_data.py pack.")
    with np.load(archive) as held:
        metas = json.loads(bytes(held["__meta__"]).decode())
        clash = [i for i in metas if (data_dir / f"{i}.npy").exists()]
        if clash and not overwrite:
            raise ValueError(f"{data_dir} already holds {len(clash)} of these scans ({clash[0]}, ...); "
                             "unpack elsewhere or pass --overwrite.")
        data_dir.mkdir(parents=True, exist_ok=True)
        for i, meta in metas.items():
            low, high = float(meta["min"]), float(meta["max"])
            array = held[i].astype(np.float32) / LEVELS * ((high - low) or 1.0) + low
            np.save(data_dir / f"{i}.npy", array.astype(np.float32))
            (data_dir / f"{i}.json").write_text(json.dumps(meta, indent=1))
    return list(metas)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="write the archive (here)")
    p.add_argument("--splits", default="train,val", help="comma-separated splits of train/splits.json")
    p.add_argument("--budget-mb", type=float, default=24.0, help="archive size limit in MiB")
    p.add_argument("--depth", type=int, default=16, help="central slices kept of a volume")
    p.add_argument("--out", type=Path, default=ARCHIVE)
    u = sub.add_parser("unpack", help="write train/data from the archive (on the device machine)")
    u.add_argument("--archive", type=Path, default=ARCHIVE)
    u.add_argument("--data-dir", type=Path, default=DATA_DIR)
    u.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            ids = [i for s in args.splits.split(",") for i in split_ids(s.strip(), SPLITS)]
            held = pack(dict.fromkeys(ids), args.out, args.budget_mb, args.depth)
            print(f"Wrote {held['archive']}: {held['bytes'] / 2 ** 20:.1f} MiB, {len(held['scans'])} scans")
            for i, shape in held["scans"].items():
                print(f"  {i}: {' x '.join(str(s) for s in shape)}")
        else:
            ids = unpack(args.archive, args.data_dir, args.overwrite)
            print(f"Wrote {len(ids)} scans to {args.data_dir}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
