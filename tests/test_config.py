from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpsearch.config import TrainConfig, load_config_file
from hpsearch.errors import ConfigError


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr", 0.0, "lr must be > 0, got 0.0"),
        ("lr", float("nan"), "lr must be > 0, got nan"),
        ("weight_decay", -0.1, "weight_decay must be >= 0, got -0.1"),
        ("epochs", 0, "epochs must be >= 1, got 0"),
        ("batch_size", 0, "batch_size must be >= 1, got 0"),
        ("schedule", "linear", "schedule must be one of constant, step, cosine, warmup-cosine, wsd, got 'linear'"),
        ("dataset", "cifar", "got 'cifar'"),
        ("device", "tpu", "got 'tpu'"),
        ("val_fraction", 1.0, "val_fraction must be between 0 and 1, got 1.0"),
        ("clip", 0.0, "clip must be > 0, got 0.0"),
        ("hidden", (), "hidden must be one or more positive layer widths, got ()"),
    ],
)
def test_bad_values_name_the_field_and_the_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        TrainConfig(**{field: value})
    assert message in str(caught.value)


def test_from_mapping_coerces_loose_types() -> None:
    config = TrainConfig.from_mapping({"lr": 1, "epochs": 3.0, "hidden": "64,32", "clip": None})
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.epochs == 3
    assert config.hidden == (64, 32)
    assert config.clip is None


def test_from_mapping_rejects_unknown_keys_and_wrong_types() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rate' in my\.json"):
        TrainConfig.from_mapping({"learning_rate": 0.1}, source="my.json")
    with pytest.raises(ConfigError, match="epochs must be int, got 'many'"):
        TrainConfig.from_mapping({"epochs": "many"})
    with pytest.raises(ConfigError, match="download must be bool, got 'yes'"):
        TrainConfig.from_mapping({"download": "yes"})


def test_round_trip_through_json_and_toml(tmp_path: Path) -> None:
    config = TrainConfig(lr=3e-4, hidden=(64,), schedule="wsd", clip=1.0)
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps(config.to_dict()))
    assert TrainConfig.from_mapping(load_config_file(as_json)) == config
    as_toml = tmp_path / "c.toml"
    as_toml.write_text('lr = 3e-4\nhidden = [64]\nschedule = "wsd"\nclip = 1.0\n')
    assert TrainConfig.from_mapping(load_config_file(as_toml)) == config


def test_an_export_file_is_read_through_its_config_table(tmp_path: Path) -> None:
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"schema_version": 1, "config": {"lr": 0.01}, "value": 0.9}))
    assert load_config_file(path) == {"lr": 0.01}


def test_unreadable_and_unparsable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path / "missing.json")
    broken = tmp_path / "broken.toml"
    broken.write_text("lr = = 1")
    with pytest.raises(ConfigError, match="cannot parse config file"):
        load_config_file(broken)
