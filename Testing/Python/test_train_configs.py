"""train/configs: the shipped/experiments layout, type checks of every field, and the paths quoted elsewhere.

No training here: only that every committed config loads, that values of the wrong JSON type are refused
in one sentence naming the field, and that the commands which say how a shipped model was trained name a
config that exists.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from train import export
from train.train import TrainConfig

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "train" / "configs"
SHIPPED = sorted((CONFIGS / "shipped").glob("*.json"))
EXPERIMENTS = sorted((CONFIGS / "experiments").glob("*.json"))


def base_config() -> dict:
    return json.loads((CONFIGS / "shipped" / "default-2d-vst-rel.json").read_text())


def with_value(path: tuple, value) -> dict:
    """The shipped default-2d config with the field at ``path`` set to ``value``."""
    raw = base_config()
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return raw


def test_configs_are_split_into_shipped_and_experiments_only():
    assert sorted(p.name for p in CONFIGS.iterdir() if p.name != "__pycache__") == ["experiments", "shipped"]
    assert [p.stem for p in SHIPPED] == ["default-2d-vst-rel", "enhance-2d", "volume-2.5d"]
    assert len(EXPERIMENTS) >= 10
    assert not {p.stem for p in SHIPPED} & {p.stem for p in EXPERIMENTS}


@pytest.mark.parametrize("path", SHIPPED + EXPERIMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_committed_config_loads_and_is_named_after_its_file(path):
    config = TrainConfig.load(path)
    assert config.name == path.stem  # train/runs/<name> and export's default model name
    assert TrainConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()  # what a run's config.json holds
    if config.init_weights:  # a shipped file, or an experiment's earlier run (gitignored, not checked)
        assert config.init_weights.startswith("train/runs/") or (REPO / config.init_weights).is_file()


@pytest.mark.parametrize("path, value, message", [
    (("optim", "lr"), "1e-3", "Config field optim.lr must be a number, not the text '1e-3'."),
    (("optim", "batch_size"), 16.0, "Config field optim.batch_size must be a whole number, not the number 16.0."),
    (("optim", "max_epochs"), True, "Config field optim.max_epochs must be a whole number, not true."),
    (("optim", "lr_groups"), {"unet.": "0.1"}, "Config field optim.lr_groups.unet. must be a number, not the text '0.1'."),
    (("loss", "relative_mse"), 1, "Config field loss.relative_mse must be true or false, not the whole number 1."),
    (("loss", "perceptual_weights"), 5, "Config field loss.perceptual_weights must be a text or null, not the whole number 5."),
    (("data", "patch"), "64", "Config field data.patch must be a whole number, not the text '64'."),
    (("data", "kinds"), "lowlight", "Config field data.kinds must be a list of texts or null, not the text 'lowlight'."),
    (("data", "lowlight", "peak"), [10, "1000"], "Config field data.lowlight.peak[1] must be a number, not the text '1000'."),
    (("data", "kind_weights"), [1, 2], "Config field data.kind_weights must be an object of numbers or null, not the list [1, 2]."),
    (("data", "augment"), "yes", "Config field data.augment must be true or false, not the text 'yes'."),
    (("spatial_dims",), "2", "Config field spatial_dims must be a whole number, not the text '2'."),
    (("seed",), 0.5, "Config field seed must be a whole number, not the number 0.5."),
    (("name",), 7, "Config field name must be a text, not the whole number 7."),
    (("network",), [16, 32], "Config field network must be an object, not the list [16, 32]."),
    (("init_weights",), None, "Config field init_weights must be a text, not null."),
    (("input", "vst"), "true", "Config field input.vst must be true or false, not the text 'true'."),
    (("optim",), "fast", "Config field optim must be an object, not the text 'fast'."),
])
def test_values_of_the_wrong_type_are_refused_in_one_sentence_naming_the_field(path, value, message):
    with pytest.raises(ValueError) as caught:
        TrainConfig.from_dict(with_value(path, value))
    assert str(caught.value) == message


def test_numbers_may_be_written_as_whole_numbers_and_optional_fields_as_null():
    raw = with_value(("optim", "lr"), 1)  # a float field takes 1 as well as 1.0
    raw["loss"]["perceptual_weights"] = None
    raw["data"]["kinds"] = None
    config = TrainConfig.from_dict(raw)
    assert config.optim.lr == 1 and config.loss.perceptual_weights is None


def test_a_config_that_is_not_an_object_is_refused():
    with pytest.raises(ValueError, match="must be a JSON object, not the list"):
        TrainConfig.from_dict([base_config()])


def test_shipped_models_name_their_config_under_shipped():
    """Models.json and the model cards say how each shipped model was trained: that config must exist."""
    registry = json.loads((REPO / "Resources" / "Models.json").read_text())
    # models converted from another project's weights (oidn-2d) name their conversion script instead
    converted = [m for m in registry["models"] if m["training"]["command"].startswith("python train/convert_")]
    for m in converted:
        assert (REPO / m["training"]["command"].split()[1]).is_file(), m["training"]["command"]
    trained = [m for m in registry["models"] if m not in converted]
    quoted = [m["training"]["command"] for m in trained]
    for card in (REPO / "Resources" / "ModelCards").glob("*.md"):
        quoted += re.findall(r"`(python train/train\.py [^`]+)`", card.read_text())
    assert len(quoted) >= 2 * len(trained)
    for command in quoted:
        path = command.split()[2]
        assert path.startswith("train/configs/shipped/") and (REPO / path).is_file(), command
    # the 2.5D model's config trains it under its current name
    assert TrainConfig.load(CONFIGS / "shipped" / "volume-2.5d.json").name == "volume-2.5d"
    assert export.config_path_of("volume-2.5d") == "train/configs/shipped/volume-2.5d.json"
    assert export.config_path_of("volume-3d-ct") == "train/configs/experiments/volume-3d-ct.json"


def test_export_keeps_former_names_and_refuses_one_as_a_new_name(tmp_path):
    models_json = tmp_path / "Models.json"
    models_json.write_text((REPO / "Resources" / "Models.json").read_text())
    entry = copy.deepcopy(next(m for m in json.loads(models_json.read_text())["models"] if m["name"] == "volume-2.5d"))
    entry.pop("aliases")
    entry["version"] = "0.3.1"
    export.update_registry(entry, models_json)
    models = json.loads(models_json.read_text())["models"]
    assert [m["name"] for m in models] == ["default-2d", "volume-2.5d", "enhance-2d", "oidn-2d"]
    assert models[1]["version"] == "0.3.1" and models[1]["aliases"] == ["volume-3d"]
    with pytest.raises(ValueError, match="'volume-3d' is a former name of 'volume-2.5d': export it with --name volume-2.5d"):
        export.update_registry(dict(entry, name="volume-3d"), models_json)
