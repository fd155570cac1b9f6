"""train/: data split, on-the-fly pairs, losses, one tiny training run, resume, export round trip.

Everything runs on the real crops of Testing/Data (never on train/data, which CI does not have), with
tiny networks and patches. Training itself is not tested: only that the machinery works.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LowLightDenoiseLib.degrade import LowLight
from LowLightDenoiseLib.models.spec import finish_output, prepare_input, prepare_target
from LowLightDenoiseLib.noise import estimate_noise
from LowLightDenoiseLib.volume import Volume
from train import prepare_data
from train.dataset import PairConfig, PairDataset, PreparedScan, draw_degradation, load_scans, make_pair, make_region
from train.losses import DenoiseLoss, LossConfig, gradient_loss
from train.train import TrainConfig, load_checkpoint, train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, ct_path, mr_path, xray_path) -> tuple:
    """A data folder in train/data's format built from the Testing/Data crops, with its own split."""
    folder = tmp_path_factory.mktemp("data")
    scans = {"ct": ct_path, "mr": mr_path, "xray": xray_path}
    for sid, path in scans.items():
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
        a = a[np.newaxis] if a.ndim == 2 else a
        np.save(folder / f"{sid}.npy", a)
        meta = {"id": sid, "modality": sid, "dims": 3 if a.shape[0] > 1 else 2, "channels": 1,
                "min": float(a.min()), "max": float(a.max()), "spacing_xyz": [1.0, 1.0, 1.0]}
        (folder / f"{sid}.json").write_text(json.dumps(meta))
    splits = folder / "splits.json"
    splits.write_text(json.dumps({"train": ["ct", "xray"], "val": ["mr"], "test": []}))
    return folder, splits


def tiny_config(run_name: str = "tiny", spatial_dims: int = 2, **optim) -> TrainConfig:
    return TrainConfig.from_dict({
        "name": run_name, "architecture": "unet", "spatial_dims": spatial_dims,
        "network": {"features": [4, 4, 8, 8, 8, 4], "norm": "batch"}, "input": {"noise_map": True},
        "data": {"patch": 32, "depth": 8, "context": 48, "context_depth": 10, "patches_per_region": 2},
        "loss": {"mse": 1.0, "ssim": 0.1, "gradient": 0.1},
        "optim": {"batch_size": 4, "samples_per_epoch": 8, "val_samples": 4, "max_epochs": 2, "threads": 1, **optim}})


def test_committed_split_is_by_scan_and_matches_the_sources():
    splits = json.loads((REPO / "train" / "splits.json").read_text())
    assert prepare_data.make_splits() == {k: splits[k] for k in ("train", "val", "test")}
    by_split = {k: set(splits[k]) for k in ("train", "val", "test")}
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"]
                or by_split["val"] & by_split["test"])
    # no source file (hence no slice of any scan) is used by two splits
    files = {}
    for s in prepare_data.SOURCES:
        for p in s.paths:
            assert files.setdefault(p, s.split) == s.split
    manifest = json.loads((REPO / "train" / "data_manifest.json").read_text())
    assert set(manifest["images"]) == {s.id for s in prepare_data.SOURCES}
    assert all(len(h) == 64 for img in manifest["images"].values() for h in img["files"].values())


def test_convert_reads_ct_in_hounsfield_units(ct_path):
    source = prepare_data.Source("ct", "ct", (ct_path.name,), "train", "test", "MIT")
    array, meta = prepare_data.convert(source, ct_path.parent)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path)))
    assert array.dtype == np.float32 and array.shape == reference.shape
    np.testing.assert_array_equal(array, reference.astype(np.float32))
    assert meta["min"] < -500 and meta["channels"] == 1


def test_pairs_are_reproducible_blind_and_shaped(tiny_data):
    folder, splits = tiny_data
    cfg = PairConfig(patch=32, context=48)
    scan = PreparedScan.load("ct", folder)
    a = make_pair(scan, cfg, {"noise_map": True}, np.random.default_rng(3))
    b = make_pair(scan, cfg, {"noise_map": True}, np.random.default_rng(3))
    c = make_pair(scan, cfg, {"noise_map": True}, np.random.default_rng(4))
    assert a[0].shape == (2, 32, 32) and a[1].shape == (1, 32, 32)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    region = make_region(scan, PairConfig(patch=32, context=48, augment=False), np.random.default_rng(5))
    # the noise channel comes from the ESTIMATE on the noisy region, as in the engine (blind)
    np.testing.assert_allclose(prepare_input(region.noisy, estimate_noise(region.noisy), {"noise_map": True})[1],
                               prepare_input(region.noisy, region.noise, {"noise_map": True})[1])


def test_denoise_target_is_the_noise_free_dark_mean_and_enhance_target_the_clean_frame(tiny_data):
    folder, _ = tiny_data
    scan = PreparedScan.load("xray", folder)
    diffs, ranges = [], []
    for seed in range(6):
        cfg = PairConfig(patch=32, context=96, augment=False, kinds=["lowlight"])
        r = make_region(scan, cfg, np.random.default_rng(seed))
        assert isinstance(r.degradation, LowLight)
        diffs.append(float(np.mean(r.noisy - r.target)) / max(float(np.std(r.noisy - r.target)), 1e-9))
        e = make_region(scan, PairConfig(patch=32, context=96, augment=False, kinds=["lowlight"], target="enhance"),
                        np.random.default_rng(seed))
        ranges.append((np.percentile(e.target, 0.5), np.percentile(e.target, 99.5)))
    # denoise: noise is zero-mean around the target (a darkened, not restored, image)
    assert abs(np.mean(diffs)) < 0.1
    # enhance: the clean image spans [0, 1] by its own robust range whatever the darkening
    np.testing.assert_allclose(np.array(ranges), np.tile([0.0, 1.0], (6, 1)), atol=1e-4)


def test_lowlight_ranges_of_a_config_bound_the_draw_and_bad_ranges_are_refused():
    cfg = PairConfig(kinds=["lowlight"], lowlight={"peak": [30, 300], "brightness": [0.5, 1.0], "gamma": [1, 1]})
    draws = [draw_degradation(cfg, np.random.default_rng(s)) for s in range(200)]
    peaks = np.array([d.peak for d in draws])
    assert all(isinstance(d, LowLight) for d in draws)
    assert peaks.min() >= 30 and peaks.max() <= 300 and np.median(peaks) == pytest.approx(np.sqrt(30 * 300), rel=0.25)
    assert min(d.brightness for d in draws) >= 0.5 and {d.gamma for d in draws} == {1.0}
    # read noise was not given: the default range 0..3 photons
    assert 0 <= min(d.read_noise for d in draws) < 0.5 and 2.5 < max(d.read_noise for d in draws) <= 3
    # the default draw reaches much darker images than the configured one
    default = [draw_degradation(PairConfig(kinds=["lowlight"]), np.random.default_rng(s)) for s in range(200)]
    assert min(d.brightness for d in default) < 0.2
    with pytest.raises(ValueError, match="Unknown data.lowlight"):
        PairConfig(lowlight={"photons": [1, 2]})
    with pytest.raises(ValueError, match="low <= high"):
        PairConfig(lowlight={"peak": [300, 30]})


def test_vst_model_targets_are_the_stabilised_clean_image_that_the_inverse_maps_back(tiny_data):
    folder, _ = tiny_data
    scan = PreparedScan.load("ct", folder)
    # shot noise dominant, so the estimated profile is signal-dependent (a > 0) and the VST not affine
    cfg = PairConfig(patch=32, context=128, augment=False, kinds=["lowlight"],
                     lowlight={"peak": [20, 50], "brightness": [1, 1], "gamma": [1, 1], "read_noise": [0, 0.5]})
    vst = {"noise_map": True, "vst": True, "vst_inverse": "algebraic"}
    x, y = make_pair(scan, cfg, vst, np.random.default_rng(7))
    region = make_region(scan, cfg, np.random.default_rng(7))
    assert region.noise.a > 0
    _, y_plain = make_pair(scan, cfg, {"noise_map": True}, np.random.default_rng(7))
    assert x.shape == (2, 32, 32) and y.shape == (1, 32, 32)
    assert not np.allclose(y, y_plain, atol=1e-3)  # a different domain from the normalised target
    # a perfect network output goes back to the normalised clean patch exactly (algebraic inverse)
    np.testing.assert_allclose(finish_output(y, y_plain[0], region.noise, vst), y_plain[0], atol=1e-4)
    # in that domain the noise is stabilised: input - target has about the level the noise channel states
    assert float(np.std(x[0] - y[0])) == pytest.approx(float(x[1].mean()), rel=0.35)
    np.testing.assert_allclose(prepare_target(y_plain[0], region.noise, vst), y, atol=1e-6)


def test_dataset_shares_samples_disjointly_between_ranks_and_changes_with_epoch(tiny_data):
    from torch.utils.data import DistributedSampler

    folder, splits = tiny_data
    cfg = PairConfig(patch=32, context=48, patches_per_region=2)
    ds = PairDataset(load_scans("train", cfg, folder, splits), cfg, {"noise_map": True}, length=8, seed=1)
    ranks = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == list(range(8)) and not set(ranks[0]) & set(ranks[1])
    first = ds[5][0].clone()
    ds[2]  # another region replaces the cached one
    assert torch.equal(ds[5][0], first)  # a sample is a pure function of (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[5][0], first)


def test_3d_scans_only_for_3d_configs(tiny_data):
    folder, splits = tiny_data
    scans = load_scans("train", PairConfig(spatial_dims=3), folder, splits)
    assert [s.id for s in scans] == ["ct"]


def test_losses_gradient_term_and_weighted_total():
    t = torch.rand(2, 1, 24, 24)
    assert float(gradient_loss(t, t)) == 0.0
    blurred = torch.nn.functional.avg_pool2d(t, 3, 1, 1)
    assert float(gradient_loss(blurred, t)) > 0.01
    loss = DenoiseLoss(LossConfig(mse=1.0, ssim=0.5, gradient=2.0), spatial_dims=2)
    terms = loss(blurred, t)
    expected = terms["mse"] + 0.5 * terms["ssim"] + 2.0 * terms["gradient"]
    assert math.isclose(float(terms["total"]), float(expected), rel_tol=1e-6)
    with pytest.raises(ValueError, match="local pretrained weights file"):
        DenoiseLoss(LossConfig(perceptual=0.1), spatial_dims=2)


def test_relative_mse_weighs_every_noise_level_equally():
    target = torch.rand(2, 1, 16, 16)
    noise = torch.randn(2, 1, 16, 16) * torch.tensor([0.01, 0.2]).view(2, 1, 1, 1)
    loss = DenoiseLoss(LossConfig(relative_mse=True, relative_floor=1e-8, ssim=0.0, gradient=0.0), spatial_dims=2)
    # returning the noisy input scores 1 (one noise variance) whatever the level
    assert float(loss(target + noise, target, target + noise)["mse"]) == pytest.approx(1.0, rel=1e-5)
    # halving the noise of the quiet sample only counts as much as halving that of the loud one
    quiet = target + noise * torch.tensor([0.5, 1.0]).view(2, 1, 1, 1)
    loud = target + noise * torch.tensor([1.0, 0.5]).view(2, 1, 1, 1)
    assert float(loss(quiet, target, target + noise)["mse"]) == pytest.approx(
        float(loss(loud, target, target + noise)["mse"]), rel=1e-4)
    with pytest.raises(ValueError, match="noisy input"):
        loss(target, target)
    # a noise-free patch is scored against the floor, not against zero
    floored = DenoiseLoss(LossConfig(relative_mse=True, relative_floor=1e-2, ssim=0.0, gradient=0.0), spatial_dims=2)
    assert float(floored(target + 0.1, target, target)["mse"]) == pytest.approx(1.0, rel=1e-4)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="Unknown"):
        TrainConfig.from_dict({"name": "x", "architecture": "unet", "spatial_dims": 2, "optim": {"lr0": 1}})


def test_tiny_training_writes_logs_checkpoints_and_resumes(tiny_data, tmp_path):
    folder, splits = tiny_data
    run = tmp_path / "run"
    summary = train(tiny_config(max_epochs=2), run, data_dir=folder, splits_file=splits, device="cpu", log=lambda s: None)
    assert summary["epochs"] == 2
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "log.csv", "loss_curve.png", "summary.json"):
        assert (run / name).is_file(), name
    state = load_checkpoint(run / "checkpoint_last.pt")  # weights_only=True
    assert state["epoch"] == 1 and len(state["history"]) == 2
    weights_before = {k: v.clone() for k, v in state["model"].items()}
    summary = train(tiny_config(max_epochs=3), run, resume=True, data_dir=folder, splits_file=splits, device="cpu",
                    log=lambda s: None)
    state = load_checkpoint(run / "checkpoint_last.pt")
    assert summary["epochs"] == 3 and state["epoch"] == 2
    assert len((run / "log.csv").read_text().strip().splitlines()) == 4  # header + 3 epochs, none repeated
    assert any(not torch.equal(weights_before[k], v) for k, v in state["model"].items())


def test_gradient_clipping_logs_the_norm_before_clipping_and_counts_the_clipped_steps(tiny_data, tmp_path):
    import csv

    folder, splits = tiny_data
    run = tmp_path / "clip"
    train(tiny_config("tiny-clip", max_epochs=1, grad_clip=1e-6), run, data_dir=folder, splits_file=splits,
          device="cpu", log=lambda s: None)
    row = next(csv.DictReader((run / "log.csv").open()))
    assert float(row["grad_norm_max"]) > 1e-6 and int(row["clipped_steps"]) == 2  # 8 samples / batch 4
    plain = tmp_path / "plain"
    train(tiny_config("tiny-plain", max_epochs=1), plain, data_dir=folder, splits_file=splits, device="cpu",
          log=lambda s: None)
    assert "grad_norm_max" not in (plain / "log.csv").read_text().splitlines()[0]


def test_export_round_trip_through_the_registry(tiny_data, tmp_path, ct_path):
    from LowLightDenoiseLib import registry
    from LowLightDenoiseLib.pipeline import denoise_volume
    from train import export

    folder, splits = tiny_data
    run = tmp_path / "run"
    train(tiny_config("tiny-export", max_epochs=1), run, data_dir=folder, splits_file=splits, device="cpu",
          log=lambda s: None)
    models_json = tmp_path / "Models.json"
    models_json.write_text((REPO / "Resources" / "Models.json").read_text())
    argv = [str(run), "--version", "0.0.1", "--modalities", "ct", "--models-json", str(models_json),
            "--models-dir", str(tmp_path / "models"), "--cards-dir", str(tmp_path / "cards"),
            "--curves-dir", str(tmp_path / "curves")]
    assert export.main(argv) == 0
    entry = registry.load_registry(models_json)["tiny-export"]
    # the run's log kept as the model's committed training curve, named with its version
    curve = (tmp_path / "curves" / "tiny-export-0.0.1.csv").read_text().splitlines()
    assert curve[0].startswith("epoch,train_loss,val_loss,val_psnr") and len(curve) == 2  # header + 1 epoch
    path = tmp_path / "models" / entry.file
    assert entry.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and entry.size == path.stat().st_size
    assert entry.url.endswith("/v0.0.1/tiny-export-0.0.1.safetensors")
    card = (tmp_path / "cards" / "tiny-export.md").read_text()
    assert card.startswith("# Model card: tiny-export 0.0.1")
    # the card lists the scans the run itself trained and validated on (recorded in its summary.json)
    assert json.loads((run / "summary.json").read_text())["scans"] == {"train": ["ct", "xray"], "val": ["mr"]}
    assert "- train (2): ct, xray\n- validation (1): mr\n" in card
    assert export.main(argv) == 0  # exporting again gives the same bytes
    assert registry.load_registry(models_json)["tiny-export"].sha256 == entry.sha256

    from LowLightDenoiseLib.methods.learned import LearnedMethod

    method = LearnedMethod.from_weights(entry.spec, path)
    state = load_checkpoint(run / "checkpoint_best.pt")["model"]
    assert all(torch.equal(method.network.state_dict()[k], v) for k, v in state.items())
    vol = Volume(sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path))).astype(np.float32))
    out = denoise_volume(vol, method, mode="2d", device="cpu")
    assert out.volume.array.shape == vol.array.shape and np.all(np.isfinite(out.volume.array))

    # a candidate run is shipped under another name: same weights, the run's training command kept
    assert export.main(argv + ["--name", "shipped-2d"]) == 0
    renamed = registry.load_registry(models_json)["shipped-2d"]
    assert renamed.file == "shipped-2d-0.0.1.safetensors" and "tiny-export" in registry.load_registry(models_json)
    assert renamed.training["command"].endswith("train/configs/experiments/tiny-export.json")  # a new run's
    card = (tmp_path / "cards" / "shipped-2d.md").read_text()
    assert f"python train/export.py {run} --name shipped-2d --version 0.0.1" in card
    shipped = LearnedMethod.from_weights(renamed.spec, tmp_path / "models" / renamed.file)
    assert all(torch.equal(shipped.network.state_dict()[k], v) for k, v in state.items())


def test_thick_slices_average_consecutive_thin_ones_and_bad_steps_are_refused(tiny_data):
    from train.dataset import _context_region

    folder, splits = tiny_data
    scan = PreparedScan.load("ct", folder)
    depth = scan.array.shape[0]
    step = depth // 2
    assert step >= 2
    config = PairConfig(spatial_dims=3, context=16, context_depth=2, slice_step=[step, step])
    region = _context_region(scan, config, np.random.default_rng(0))
    assert region.shape == (2, 16, 16)
    norm = (np.asarray(scan.array, dtype=np.float32) - scan.low) / (scan.high - scan.low)
    # the region is one of the crops of the block-averaged volume
    thick = norm[:2 * step].reshape(2, step, *norm.shape[1:]).mean(axis=1)
    found = any(np.allclose(region, thick[:, y:y + 16, x:x + 16], atol=1e-6)
                for y in range(norm.shape[1] - 15) for x in range(norm.shape[2] - 15))
    assert found
    for bad in ([0, 2], [3, 2], [1.5, 2], [1]):
        with pytest.raises(ValueError, match="slice_step"):
            PairConfig(spatial_dims=3, slice_step=bad)
    with pytest.raises(ValueError, match="3D configs only"):
        PairConfig(spatial_dims=2, slice_step=[1, 2])


def test_slice_thickness_in_millimetres_follows_each_volume_s_slice_spacing(tiny_data):
    from train.dataset import _context_region

    folder, splits = tiny_data
    scan = PreparedScan.load("ct", folder)
    norm = (np.asarray(scan.array, dtype=np.float32) - scan.low) / (scan.high - scan.low)

    def region_for(spacing: float, mm: float) -> np.ndarray:
        thin = dataclasses.replace(scan, slice_spacing=spacing)
        config = PairConfig(spatial_dims=3, context=16, context_depth=2, slice_mm=[mm, mm])
        return _context_region(thin, config, np.random.default_rng(0))

    def is_crop_of(region: np.ndarray, step: int) -> bool:
        starts = range(norm.shape[0] - 2 * step + 1)
        thick = [norm[z:z + 2 * step].reshape(2, step, *norm.shape[1:]).mean(axis=1) for z in starts]
        return any(np.allclose(region, t[:, y:y + 16, x:x + 16], atol=1e-6)
                   for t in thick for y in range(norm.shape[1] - 15) for x in range(norm.shape[2] - 15))

    step = scan.array.shape[0] // 2
    assert is_crop_of(region_for(0.5, 0.5 * step), step)  # thin slices: averaged to the asked thickness
    assert not is_crop_of(region_for(0.5, 0.5 * step), 1)
    assert is_crop_of(region_for(5.0, 0.5 * step), 1)  # already thicker than asked: the volume's own slices
    for bad in ([0, 2], [3, 2], [2]):
        with pytest.raises(ValueError, match="slice_mm"):
            PairConfig(spatial_dims=3, slice_mm=bad)
    with pytest.raises(ValueError, match="slice_mm"):
        PairConfig(spatial_dims=3, slice_mm=[1, 2], slice_step=[1, 2])


def test_a_slab_model_trains_from_2d_weights_and_wrong_weights_are_refused(tiny_data, tmp_path):
    from LowLightDenoiseLib.models.spec import ModelSpec, save_weights

    folder, splits = tiny_data
    flat = ModelSpec(name="flat", architecture="unet", spatial_dims=2,
                     network={"features": [4, 4, 8, 8, 8, 4], "norm": "batch"}, input={"noise_map": True})
    torch.manual_seed(0)
    flat_net = flat.build_network()
    weights = save_weights(tmp_path / "flat.safetensors", flat_net, flat)

    def slab_config(init: str, features=(4, 4, 8, 8, 8, 4)) -> TrainConfig:
        raw = tiny_config("tiny-slab", 3, max_epochs=1).to_dict()
        raw.update(architecture="slab_unet", init_weights=init,
                   network={"features": list(features), "norm": "batch", "neighbours": 1})
        raw["data"]["slice_step"] = [1, 2]
        return TrainConfig.from_dict(raw)

    lines = []
    run = tmp_path / "slab"
    train(slab_config(str(weights)), run, data_dir=folder, splits_file=splits, device="cpu", log=lines.append)
    assert any("inflated" in line for line in lines)
    trained = load_checkpoint(run / "checkpoint_last.pt")["model"]
    first = "unet2d.net.conv_0.conv_0.conv.weight"
    assert trained[first].shape[1] == 2 * 3
    assert not torch.equal(trained[first][:, :2], flat_net.state_dict()["net.conv_0.conv_0.conv.weight"])
    with pytest.raises(ValueError, match="do not fit"):
        train(slab_config(str(weights), features=(8, 8, 8, 8, 8, 8)), tmp_path / "bad", data_dir=folder,
              splits_file=splits, device="cpu", log=lambda s: None)
    with pytest.raises(ValueError, match="does not exist"):
        train(slab_config(str(tmp_path / "missing.safetensors")), tmp_path / "bad2", data_dir=folder,
              splits_file=splits, device="cpu", log=lambda s: None)


def test_lr_groups_freeze_and_slow_parameters_by_prefix(tiny_data, tmp_path):
    from train.train import parameter_groups

    folder, splits = tiny_data
    first = "net.conv_0.conv_0."
    raw = tiny_config("tiny-groups", max_epochs=1, lr_groups={"net.": 0.0, first: 1.0}).to_dict()
    raw["network"]["norm"] = None  # (batch-norm running statistics would still move: they are not parameters)
    config = TrainConfig.from_dict(raw)
    torch.manual_seed(0)
    start = config.build_network().state_dict()
    run = tmp_path / "groups"
    raw["init_weights"] = str(tmp_path / "start.pt")
    torch.save({"model": start}, raw["init_weights"])
    train(TrainConfig.from_dict(raw), run, data_dir=folder, splits_file=splits, device="cpu", log=lambda s: None)
    trained = load_checkpoint(run / "checkpoint_last.pt")["model"]
    moved = {k for k in start if not torch.equal(start[k], trained[k])}
    assert moved and all(k.startswith(first) for k in moved)
    # the longest prefix wins; multipliers scale the base rate; typos and freezing everything are refused
    groups = parameter_groups(config.build_network(), 1e-3, {"net.": 0.1, first: 1.0})
    assert sorted(g["lr"] for g in groups) == [pytest.approx(1e-4), pytest.approx(1e-3)]
    with pytest.raises(ValueError, match="match no parameter"):
        parameter_groups(config.build_network(), 1e-3, {"unet2d.": 0.0})
    with pytest.raises(ValueError, match="nothing would train"):
        parameter_groups(config.build_network(), 1e-3, {"net.": 0.0})
    with pytest.raises(ValueError, match="lr_groups"):
        tiny_config(lr_groups={"net.": -1})


def test_shuffled_regions_hold_unrelated_whole_slices_and_bad_shares_are_refused(tiny_data):
    from train.dataset import _context_region

    folder, splits = tiny_data
    scan = PreparedScan.load("ct", folder)
    norm = (np.asarray(scan.array, dtype=np.float32) - scan.low) / (scan.high - scan.low)
    config = PairConfig(spatial_dims=3, context=max(norm.shape[1:]), context_depth=3, slice_shuffle=1.0)
    seen = set()
    for seed in range(6):
        region = _context_region(scan, config, np.random.default_rng(seed))
        assert region.shape == (3,) + norm.shape[1:]  # the context covers whole slices
        rows = []
        for s in region:  # every region slice is one slice of the volume, none repeated
            match = [z for z in range(norm.shape[0]) if np.allclose(s, norm[z], atol=1e-6)]
            assert len(match) == 1
            rows.append(match[0])
        assert len(set(rows)) == 3
        seen.add(tuple(rows))
    assert len(seen) > 1 and any(list(r) != sorted(r) or np.diff(r).max() > 1 for r in seen)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="slice_shuffle"):
            PairConfig(spatial_dims=3, slice_shuffle=bad)
    with pytest.raises(ValueError, match="slice_shuffle"):
        PairConfig(spatial_dims=2, slice_shuffle=0.5)


def test_keep_last_delivers_the_last_epoch_whatever_the_validation_says(tiny_data, tmp_path):
    folder, splits = tiny_data
    run = tmp_path / "last"
    train(tiny_config("tiny-last", max_epochs=3, keep="last"), run, data_dir=folder, splits_file=splits, device="cpu",
          log=lambda s: None)
    best, last = load_checkpoint(run / "checkpoint_best.pt"), load_checkpoint(run / "checkpoint_last.pt")
    assert best["epoch"] == last["epoch"] == 2
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])
    with pytest.raises(ValueError, match="optim.keep"):
        tiny_config(keep="newest")


def test_coarse_pixels_average_in_plane_blocks(tiny_data):
    from train.dataset import _context_region

    folder, splits = tiny_data
    scan = PreparedScan.load("ct", folder)
    norm = (np.asarray(scan.array, dtype=np.float32) - scan.low) / (scan.high - scan.low)
    depth, side = norm.shape[0], norm.shape[1] // 2
    assert norm.shape[1] == norm.shape[2] == 2 * side  # the square CT crop: a 2x coarser region is all of it
    config = PairConfig(spatial_dims=3, context=side, context_depth=depth, inplane_step=[2, 2])
    region = _context_region(scan, config, np.random.default_rng(0))
    coarse = norm.reshape(depth, side, 2, side, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(region, coarse, atol=1e-6)
    with pytest.raises(ValueError, match="inplane_step"):
        PairConfig(spatial_dims=3, inplane_step=[0, 2])
    with pytest.raises(ValueError, match="3D configs only"):
        PairConfig(spatial_dims=2, inplane_step=[1, 2])


def test_probe_thick_crop_averages_slices_and_refuses_too_thin_volumes(tiny_data):
    from train.probe_volumes import thick_crop

    folder, _ = tiny_data
    a = np.load(folder / "ct.npy")
    crop = thick_crop("ct", 2, slices=3, side=32, data_dir=folder)
    z0, y0, x0 = (a.shape[0] - 6) // 2, (a.shape[1] - 32) // 2, (a.shape[2] - 32) // 2
    expected = a[z0:z0 + 6, y0:y0 + 32, x0:x0 + 32].reshape(3, 2, 32, 32).mean(axis=1)
    np.testing.assert_allclose(crop.array, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="too few"):
        thick_crop("ct", a.shape[0] + 1, data_dir=folder)
