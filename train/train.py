"""Train a denoising/enhancement network from a JSON config; CPU, one GPU or several GPUs, no code change.

    python train/train.py train/configs/shipped/default-2d-vst-rel.json             # CPU or one GPU
    python train/train.py train/configs/shipped/default-2d-vst-rel.json --resume    # continue the last checkpoint
    torchrun --nproc_per_node=4 train/train.py train/configs/shipped/default-2d-vst-rel.json   # several GPUs (DDP)

Configs: ``train/configs/shipped/`` made the shipped models, ``train/configs/experiments/`` everything else.

Recipe: Adam (lr from the config, 1e-3), ReduceLROnPlateau (factor 0.1, patience 5) and early stopping
(patience 10) on the validation loss, fixed seeds, a time budget (``optim.max_minutes``), resumable
checkpoints (``checkpoint_last.pt``, ``checkpoint_best.pt``: plain state dicts, loaded with
``weights_only=True``), a CSV log and a loss-curve PNG in ``train/runs/<name>/``, TensorBoard events
there too when ``tensorboard`` is installed. Under ``torchrun`` each rank draws its own share of the
samples (``DistributedSampler``); rank 0 validates, logs and saves.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

TRAIN_DIR = Path(__file__).resolve().parent
if str(TRAIN_DIR.parent) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(TRAIN_DIR.parent))

from LowLightDenoiseLib.models.networks import build_network, count_parameters, initialise_from  # noqa: E402
from train.dataset import DATA_DIR, SPLITS, PairConfig, PairDataset, load_scans  # noqa: E402
from train.config_fields import check_fields, describe_value, field_types, from_config_dict  # noqa: E402
from train.losses import DenoiseLoss, LossConfig  # noqa: E402

RUNS_DIR = TRAIN_DIR / "runs"


@dataclasses.dataclass
class OptimConfig:
    """Optimisation settings (the ``optim`` section of a training config)."""

    lr: float = 1e-3
    batch_size: int = 16
    samples_per_epoch: int = 1024
    val_samples: int = 128
    max_epochs: int = 500
    max_minutes: float = 40.0
    early_stopping_patience: int = 10
    plateau_patience: int = 5
    plateau_factor: float = 0.1
    grad_clip: float = 0.0  # clip the gradient's global norm to this (0: off); guards against rare huge losses
    #: learning-rate multipliers by parameter-name prefix (the longest matching prefix wins, 1 for the
    #: rest; 0 freezes), e.g. ``{"unet2d.net.": 0.1, "unet2d.net.conv_0.conv_0.": 1}`` to fine-tune a
    #: slab_unet's body ten times slower than its slab input layer (batch-norm running statistics of a
    #: frozen part still update: they are buffers, not parameters)
    lr_groups: Dict[str, float] = dataclasses.field(default_factory=dict)
    #: which weights the run delivers as ``checkpoint_best.pt`` (what evaluate and export read): the
    #: lowest validation loss (``"best_val"``), or the last epoch's (``"last"``: for a fixed budget when
    #: the validation split cannot judge the model, e.g. its only volume is unlike the use case)
    keep: str = "best_val"
    num_workers: int = 0
    threads: int = 2

    @classmethod
    def from_dict(cls, d: Dict) -> "OptimConfig":
        cfg = from_config_dict(cls, d, "optim")
        if cfg.keep not in ("best_val", "last"):
            raise ValueError(f"optim.keep must be best_val or last, not {cfg.keep!r}.")
        bad = {k: v for k, v in cfg.lr_groups.items() if not isinstance(v, (int, float)) or v < 0}
        if bad:
            raise ValueError(f"optim.lr_groups multipliers must be numbers >= 0, not {bad}.")
        return cfg


@dataclasses.dataclass
class TrainConfig:
    """A whole training run, read from ``train/configs/{shipped,experiments}/*.json``."""

    name: str
    architecture: str
    spatial_dims: int
    network: Dict[str, Any]
    input: Dict[str, Any]
    category: str
    data: PairConfig
    loss: LossConfig
    optim: OptimConfig
    seed: int = 0
    description: str = ""
    #: start from these weights (repository-relative or absolute; a .safetensors export or a run's
    #: checkpoint .pt) instead of random ones: the same network, or a 2D unet for a slab_unet
    init_weights: str = ""

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        raw = json.loads(Path(path).read_text())
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Dict) -> "TrainConfig":
        """The config of a JSON object; unknown keys, missing ones and values of the wrong type raise
        ValueError in one sentence naming the field (``train/config_fields.py``)."""
        from LowLightDenoiseLib.models.spec import INPUT_DEFAULTS, validate_input_config

        if not isinstance(raw, dict):
            raise ValueError(f"A training config must be a JSON object, not {describe_value(raw)}.")
        raw = copy.deepcopy(raw)
        required = ["name", "architecture", "spatial_dims"]
        missing = [k for k in required if k not in raw]
        if missing:
            raise ValueError(f"Training config lacks {missing}.")
        sections = {"data": Dict[str, Any], "loss": Dict[str, Any], "optim": Dict[str, Any]}  # checked in turn below
        check_fields(raw, dict(field_types(cls), **sections))
        data = PairConfig.from_dict(dict(raw.pop("data", {}), spatial_dims=raw["spatial_dims"]))
        cfg = cls(name=raw.pop("name"), architecture=raw.pop("architecture"), spatial_dims=raw.pop("spatial_dims"),
                  network=raw.pop("network", {}), input=raw.pop("input", {}), category=raw.pop("category", "denoise"),
                  data=data, loss=LossConfig.from_dict(raw.pop("loss", {})),
                  optim=OptimConfig.from_dict(raw.pop("optim", {})), seed=raw.pop("seed", 0),
                  description=raw.pop("description", ""), init_weights=raw.pop("init_weights", ""))
        if raw:
            raise ValueError(f"Unknown config key(s) {sorted(raw)}.")
        if cfg.category not in ("denoise", "enhance"):
            raise ValueError(f"category must be denoise or enhance, not {cfg.category!r}.")
        check_fields(cfg.input, {k: type(v) for k, v in INPUT_DEFAULTS.items()}, "input")
        validate_input_config(cfg.input)  # unknown keys and values, as the engine will read them
        return cfg

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"].pop("spatial_dims")
        return d

    def in_channels(self) -> int:
        """Network input channels implied by the input config (image + optional noise map)."""
        from LowLightDenoiseLib.models.spec import input_channels

        return int(input_channels(self.input))

    def build_network(self) -> nn.Module:
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.network.items()}
        return build_network(self.architecture, self.spatial_dims, self.in_channels(), **kwargs)


def init_weights_path(config: TrainConfig) -> Optional[Path]:
    """The file named by ``init_weights`` (relative paths from the repository root), or None."""
    if not config.init_weights:
        return None
    path = Path(config.init_weights)
    path = path if path.is_absolute() else TRAIN_DIR.parent / path
    if not path.is_file():
        raise ValueError(f"init_weights names {config.init_weights}, which does not exist.")
    return path


def load_init_weights(model: nn.Module, config: TrainConfig) -> Optional[str]:
    """Initialise ``model`` from ``config.init_weights``; returns a line for the log (None: random start)."""
    from LowLightDenoiseLib.models.spec import load_state_dict

    path = init_weights_path(config)
    if path is None:
        return None
    if path.suffix == ".pt":  # a run's checkpoint: {"model": state, ...}, read without unpickling code
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.get("model", state)
    else:
        state = load_state_dict(path)
    try:
        how = initialise_from(model, state)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"init_weights {config.init_weights} do not fit {config.name}'s network: {error}") from error
    return f"initialised from {config.init_weights} ({how})"


def parameter_groups(model: nn.Module, lr: float, lr_groups: Dict[str, float]) -> List[Dict[str, Any]]:
    """Adam parameter groups from ``optim.lr_groups``; parameters with multiplier 0 are frozen.

    A prefix that matches no parameter is refused (a typo would otherwise train everything)."""
    named = list(model.named_parameters())
    unused = [p for p in lr_groups if not any(n.startswith(p) for n, _ in named)]
    if unused:
        raise ValueError(f"optim.lr_groups prefix(es) {unused} match no parameter of the network.")
    groups: Dict[float, List[nn.Parameter]] = {}
    for name, param in named:
        matches = [p for p in lr_groups if name.startswith(p)]
        scale = float(lr_groups[max(matches, key=len)]) if matches else 1.0
        if scale == 0.0:
            param.requires_grad_(False)
            continue
        groups.setdefault(scale, []).append(param)
    if not groups:
        raise ValueError("optim.lr_groups freezes every parameter; nothing would train.")
    return [{"params": params, "lr": lr * scale} for scale, params in sorted(groups.items())]


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclasses.dataclass
class Dist:
    """Distributed context: world size 1 unless started by ``torchrun``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "auto") -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available() and device != "cpu"
        if world > 1:
            torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
        dev = torch.device(f"cuda:{local}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(dev)
        return cls(rank, world, local, dev)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1:
            torch.distributed.destroy_process_group()


class History:
    """Per-epoch log as CSV (and TensorBoard when importable), with a loss-curve PNG."""

    def __init__(self, run_dir: Path, rows: Optional[List[Dict[str, float]]] = None) -> None:
        self.run_dir = run_dir
        self.rows: List[Dict[str, float]] = list(rows or [])
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.writer = None

    def add(self, row: Dict[str, float]) -> None:
        self.rows.append(row)
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch":
                    self.writer.add_scalar(k, v, int(row["epoch"]))
            self.writer.flush()
        self.save()

    def save(self) -> None:
        if not self.rows:
            return
        keys = list(self.rows[-1])
        with open(self.run_dir / "log.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)
        self.plot()

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ep = [r["epoch"] for r in self.rows]
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        ax[0].plot(ep, [r["train_loss"] for r in self.rows], label="train")
        ax[0].plot(ep, [r["val_loss"] for r in self.rows], label="validation")
        ax[0].set_xlabel("epoch")
        ax[0].set_ylabel("loss")
        ax[0].set_yscale("log")
        ax[0].legend()
        ax[1].plot(ep, [r["val_psnr"] for r in self.rows], label="validation PSNR (normalised units)")
        ax[1].plot(ep, [r["val_input_psnr"] for r in self.rows], "--", label="noisy input")
        ax[1].set_xlabel("epoch")
        ax[1].set_ylabel("dB")
        ax[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(self.run_dir / "loss_curve.png", dpi=100)
        plt.close(fig)


def _psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mse = torch.mean((output - target) ** 2, dim=tuple(range(1, output.dim())))
    return torch.mean(10 * torch.log10(1.0 / torch.clamp(mse, min=1e-12)))


def evaluate_loader(model: nn.Module, loader: DataLoader, loss_fn: DenoiseLoss, device: torch.device) -> Dict[str, float]:
    """Mean loss and PSNR (normalised units) of the model and of the noisy input on a loader."""
    model.eval()
    tot = {"val_loss": 0.0, "val_psnr": 0.0, "val_input_psnr": 0.0}
    n = 0
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            k = x.shape[0]
            tot["val_loss"] += float(loss_fn(out, y, x[:, :1])["total"]) * k
            tot["val_psnr"] += float(_psnr(out, y)) * k
            tot["val_input_psnr"] += float(_psnr(x[:, :1], y)) * k
            n += k
    model.train()
    return {k: v / max(n, 1) for k, v in tot.items()}


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` without unpickling code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def train(config: TrainConfig, run_dir: Optional[Path] = None, resume: bool = False, device: str = "auto",
          data_dir: Path = DATA_DIR, splits_file: Path = SPLITS, log=print) -> Dict[str, Any]:
    """Run (or resume) one training; returns the summary written to ``run_dir/summary.json``."""
    dist = Dist.setup(device)
    run_dir = Path(run_dir or RUNS_DIR / config.name)
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    opt_cfg = config.optim
    if dist.device.type == "cpu":
        torch.set_num_threads(max(1, int(opt_cfg.threads)))
    seed_everything(config.seed + dist.rank)

    last = run_dir / "checkpoint_last.pt"
    resuming = resume and last.is_file()
    model = config.build_network()
    initialised = None if resuming else load_init_weights(model, config)  # a resumed run has its own weights
    model = model.to(dist.device)
    net = nn.parallel.DistributedDataParallel(model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None) \
        if dist.world > 1 else model
    optimizer = torch.optim.Adam(parameter_groups(model, opt_cfg.lr, opt_cfg.lr_groups), lr=opt_cfg.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=opt_cfg.plateau_factor,
                                                           patience=opt_cfg.plateau_patience)
    loss_fn = DenoiseLoss(config.loss, config.spatial_dims).to(dist.device)

    train_set = PairDataset(load_scans("train", config.data, data_dir, splits_file), config.data, config.input,
                            opt_cfg.samples_per_epoch, seed=config.seed)
    val_set = PairDataset(load_scans("val", config.data, data_dir, splits_file), config.data, config.input,
                          opt_cfg.val_samples, seed=config.seed + 10_000, fixed=True)
    val_set.augment = None
    sampler = DistributedSampler(train_set, num_replicas=dist.world, rank=dist.rank, shuffle=False) \
        if dist.world > 1 else None
    train_loader = DataLoader(train_set, batch_size=opt_cfg.batch_size, sampler=sampler, shuffle=False,
                              num_workers=opt_cfg.num_workers, drop_last=True,
                              persistent_workers=opt_cfg.num_workers > 0)
    val_loader = DataLoader(val_set, batch_size=opt_cfg.batch_size, num_workers=0)

    start_epoch, best, bad_epochs, elapsed, rows = 0, math.inf, 0, 0.0, []
    if resuming:
        state = load_checkpoint(last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, bad_epochs = int(state["epoch"]) + 1, float(state["best"]), int(state["bad_epochs"])
        elapsed, rows = float(state["elapsed"]), list(state["history"])
        torch.set_rng_state(state["torch_rng"])
        if dist.main:
            log(f"resumed {config.name} at epoch {start_epoch} (best val loss {best:.5f})")
    history = History(run_dir, rows) if dist.main else None
    if dist.main:
        log(f"{config.name}: {config.architecture} {config.spatial_dims}D, {count_parameters(model)} parameters, "
            f"{len(train_set.scans)} training scans, {len(val_set.scans)} validation scans, device {dist.device}, "
            f"world {dist.world}")
        if initialised:
            log(initialised)
            # what the run starts from, on the same validation samples as every epoch (a fine-tuning run must beat it)
            start = evaluate_loader(model, val_loader, loss_fn, dist.device)
            log(f"start    val {start['val_loss']:.5f} psnr {start['val_psnr']:.2f} (input {start['val_input_psnr']:.2f})")

    stop_reason = "max_epochs"
    t_start = time.perf_counter() - elapsed
    for epoch in range(start_epoch, opt_cfg.max_epochs):
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        sums: Dict[str, float] = {}
        steps = clipped = 0
        for x, y in train_loader:
            x, y = x.to(dist.device, non_blocking=True), y.to(dist.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            terms = loss_fn(net(x), y, x[:, :1])
            terms["total"].backward()
            if opt_cfg.grad_clip > 0:  # the norm before clipping is logged: spikes show what was cut
                norm = float(nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad],
                                                      opt_cfg.grad_clip))
                sums["grad_norm_max"] = max(sums.get("grad_norm_max", 0.0), norm)
                clipped += int(norm > opt_cfg.grad_clip)
            optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            steps += 1
        metrics = evaluate_loader(model, val_loader, loss_fn, dist.device)
        val_loss = metrics["val_loss"]
        scheduler.step(val_loss)
        improved = val_loss < best
        if improved:
            best, bad_epochs = val_loss, 0
        else:
            bad_epochs += 1
        elapsed = time.perf_counter() - t_start
        if dist.main:
            row = {"epoch": epoch, "train_loss": sums.get("total", 0.0) / max(steps, 1),
                   **{f"train_{k}": v / max(steps, 1) for k, v in sums.items() if k not in ("total", "grad_norm_max")},
                   **({"grad_norm_max": sums.get("grad_norm_max", 0.0), "clipped_steps": clipped}
                      if opt_cfg.grad_clip > 0 else {}),
                   **metrics, "lr": max(g["lr"] for g in optimizer.param_groups), "epoch_seconds": time.perf_counter() - t0,
                   "elapsed_minutes": elapsed / 60}
            history.add(row)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch, "best": best, "bad_epochs": bad_epochs,
                     "elapsed": elapsed, "history": history.rows, "torch_rng": torch.get_rng_state(),
                     "config": json.dumps(config.to_dict())}
            save_checkpoint(last, state)
            if improved or opt_cfg.keep == "last":
                save_checkpoint(run_dir / "checkpoint_best.pt", {"model": model.state_dict(), "epoch": epoch,
                                                                 "best": best, "config": json.dumps(config.to_dict())})
            log(f"epoch {epoch:3d} train {row['train_loss']:.5f} val {val_loss:.5f} "
                f"psnr {metrics['val_psnr']:.2f} (input {metrics['val_input_psnr']:.2f}) lr {row['lr']:.1e} "
                f"{row['epoch_seconds']:.0f}s{' *' if improved else ''}")
        if bad_epochs >= opt_cfg.early_stopping_patience:
            stop_reason = "early_stopping"
            break
        if elapsed / 60 >= opt_cfg.max_minutes:
            stop_reason = "time_budget"
            break
    dist.barrier()
    summary = {"name": config.name, "stop_reason": stop_reason, "epochs": (history.rows[-1]["epoch"] + 1)
               if history and history.rows else 0, "best_val_loss": best, "minutes": elapsed / 60,
               "parameters": count_parameters(model), "device": str(dist.device), "world_size": dist.world,
               "scans": {"train": [s.id for s in train_set.scans], "val": [s.id for s in val_set.scans]}}
    if dist.main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        log(f"{config.name}: stopped ({stop_reason}) after {summary['epochs']} epochs, {summary['minutes']:.1f} min")
    dist.close()
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Train a LowLightDenoise model from a JSON config.")
    parser.add_argument("config", type=Path)
    parser.add_argument("--run-dir", type=Path, default=None, help="default train/runs/<name>")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoint_last.pt")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--max-minutes", type=float, default=None, help="override optim.max_minutes")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="prepared scans (default train/data)")
    args = parser.parse_args(argv)
    config = TrainConfig.load(args.config)
    if args.max_minutes is not None:
        config.optim.max_minutes = args.max_minutes
    train(config, args.run_dir, resume=args.resume, device=args.device, data_dir=args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
