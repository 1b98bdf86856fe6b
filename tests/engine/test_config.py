from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpsearch.engine.config import TrainConfig, applicable_settings, load_config_file, parse_arg
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
        ("model", "resnet", "model must be one of mlp, cnn or an entry point"),
        ("optimizer", "lion", "optimizer must be one of adamw, adam, sgd or an entry point"),
        ("loss", "hinge", "loss must be one of cross-entropy, mse or an entry point"),
        ("precision", "fp8", "precision must be one of fp32, bf16, fp16, got 'fp8'"),
        ("feed", "disk", "feed must be one of auto, device, stream, got 'disk'"),
        ("momentum", 0.9, "momentum must be unset with optimizer 'adamw', which has no momentum"),
        ("nesterov", True, "nesterov must be false with optimizer 'adamw'"),
        ("label_smoothing", 1.0, "label_smoothing must be in [0, 1), got 1.0"),
        ("num_classes", 0, "num_classes must be >= 1, got 0"),
        ("model_args", {"not an identifier": 1}, "model_args must be a table of keyword arguments"),
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


@pytest.mark.parametrize(("changes", "message"), [
    ({"optimizer": "sgd", "beta1": 0.8}, "beta1 must be unset with optimizer 'sgd' (use momentum)"),
    ({"optimizer": "sgd", "nesterov": True}, "nesterov must be false unless momentum > 0"),
    ({"optimizer": "sgd", "momentum": 1.0}, "momentum must be in [0, 1), got 1.0"),
    ({"loss": "mse", "label_smoothing": 0.1}, "label_smoothing must be 0 with loss 'mse'"),
])
def test_optimizer_and_loss_settings_that_do_not_go_together(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**changes)  # type: ignore[arg-type]
    assert message in str(caught.value)


@pytest.mark.parametrize(("text", "parsed"), [
    ("width=32", ("width", 32)), ("dropout=0.1", ("dropout", 0.1)), ("bias=false", ("bias", False)),
    ("act=gelu", ("act", "gelu")), ("hidden=64,32", ("hidden", "64,32")),
])
def test_model_args_are_read_as_int_float_bool_or_string(text: str, parsed: tuple[str, object]) -> None:
    value = parse_arg(text)
    assert value == parsed and type(value[1]) is type(parsed[1])


@pytest.mark.parametrize("text", ["width", "=3", "2x=1"])
def test_a_malformed_model_arg_names_itself(text: str) -> None:
    with pytest.raises(ConfigError, match=f"model-arg must be NAME=VALUE with NAME a Python identifier, got {text!r}"):
        parse_arg(text)


def test_model_args_and_the_new_fields_round_trip_through_json(tmp_path: Path) -> None:
    config = TrainConfig(model="cnn", model_args={"width": 8}, optimizer="sgd", momentum=0.9, nesterov=True,
                         precision="bf16", loss="cross-entropy", label_smoothing=0.1, num_classes=10)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config.to_dict()))
    assert TrainConfig.from_mapping(load_config_file(path)) == config


def test_the_mlp_takes_hidden_from_model_args_before_the_shorthand() -> None:
    assert TrainConfig(hidden=(32,)).model_kwargs() == {"hidden": (32,)}
    assert TrainConfig(hidden=(32,), model_args={"hidden": "16,8"}).model_kwargs() == {"hidden": "16,8"}
    assert TrainConfig(model="cnn", model_args={"width": 4}).model_kwargs() == {"width": 4}


@pytest.mark.parametrize(("changes", "left_out", "kept"), [
    ({}, {"data_dir", "download", "momentum", "nesterov", "step_size", "gamma", "warmup", "decay_fraction",
          "min_lr_ratio"}, {"hidden", "val_fraction", "beta1", "beta2", "label_smoothing"}),
    ({"model": "usertask.py:cnn", "dataset": "usertask.py:load"}, {"hidden", "val_fraction"}, {"model_args"}),
    ({"dataset": "npz:data.npz"}, {"data_dir"}, {"val_fraction", "hidden"}),
    ({"dataset": "mnist"}, set(), {"data_dir", "download", "val_fraction"}),
    ({"optimizer": "sgd", "momentum": 0.9}, {"beta1", "beta2"}, {"momentum", "nesterov"}),
    ({"loss": "mse"}, {"label_smoothing"}, {"loss"}),
    ({"schedule": "step"}, {"warmup", "min_lr_ratio", "decay_fraction"}, {"step_size", "gamma"}),
    ({"schedule": "wsd"}, {"step_size", "gamma"}, {"warmup", "min_lr_ratio", "decay_fraction"}),
])
def test_a_shown_config_leaves_out_the_settings_that_do_not_apply(changes: dict[str, object], left_out: set[str],
                                                                  kept: set[str]) -> None:
    full = {**TrainConfig().to_dict(), **changes}
    shown = applicable_settings(full)
    assert not left_out & set(shown) and kept <= set(shown)
    assert {key: full[key] for key in shown} == shown  # values as stored, in their order
    assert TrainConfig.from_mapping(shown) == TrainConfig.from_mapping(full).replace(
        **{key: getattr(TrainConfig, key) for key in left_out})  # what is left out is at its default or unused
