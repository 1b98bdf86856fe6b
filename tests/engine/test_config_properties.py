"""Properties of TrainConfig over generated settings: a valid table reads back equal from the JSON and TOML files
that store and export it, flags override it key by key, and a bad value is always one ConfigError that names the
field and the value, never another exception."""

from __future__ import annotations

import json
import math
import re
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from input_strategies import (
    FLOAT_RULES,
    INT_MINIMUMS,
    WORDS,
    identifiers,
    model_args,
    out_of_rule,
    toml_text,
    toml_values,
    train_tables,
)

from hpsearch.engine.config import TrainConfig, parse_arg
from hpsearch.errors import ConfigError

FIELDS = sorted(TrainConfig.__dataclass_fields__)


def _parses(kind: type, text: str) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def config_from_file(name: str, text: str, **flags: Any) -> TrainConfig:
    """What ``--config FILE`` (with ``flags``) gives for a file ``name`` holding ``text``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text)
        return TrainConfig.from_sources(path, **flags)


@given(train_tables())
def test_a_valid_table_makes_a_config_that_reads_back_equal_from_its_json(table: dict[str, Any]) -> None:
    config = TrainConfig.from_mapping(table)
    assert TrainConfig.from_mapping(json.loads(json.dumps(config.to_dict()))) == config


@given(train_tables())
def test_a_toml_file_json_file_and_export_of_the_same_settings_give_the_same_config(table: dict[str, Any]) -> None:
    expected = TrainConfig.from_mapping(table)
    assert config_from_file("settings.toml", toml_text(table)) == expected
    assert config_from_file("settings.json", json.dumps(table)) == expected
    assert config_from_file("best.json", json.dumps({"trial": 3, "value": 0.5, "config": table})) == expected


@given(train_tables(), st.fixed_dictionaries({}, optional={
    "lr": st.floats(1e-6, 10.0), "epochs": st.integers(1, 100), "seed": st.integers(0, 2**32 - 1),
    "weight_decay": st.floats(0, 1.0), "model_args": model_args}))
def test_flags_override_a_config_file_key_by_key_and_model_args_name_by_name(table: dict[str, Any],
                                                                             flags: dict[str, Any]) -> None:
    from_file = TrainConfig.from_mapping(table)
    flagged = config_from_file("settings.json", json.dumps(table), **flags, batch_size=None)  # None: not given
    for field in FIELDS:
        if field == "model_args":
            assert flagged.model_args == {**from_file.model_args, **flags.get("model_args", {})}
        else:
            assert getattr(flagged, field) == flags.get(field, getattr(from_file, field)), field


def _letters_only(kind: type) -> st.SearchStrategy[str]:
    """Text ``kind`` cannot parse (letters only: no number, but not ``nan`` or ``inf`` either)."""
    return st.text(st.characters(categories=["L"]), min_size=1, max_size=8).filter(lambda t: not _parses(kind, t))


def _bad_int(minimum: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(max_value=minimum - 1), st.booleans(), _letters_only(int),
                     st.floats().filter(lambda v: not (math.isfinite(v) and v.is_integer())))


def _bad_float(name: str) -> st.SearchStrategy[Any]:
    return st.one_of(out_of_rule(name), st.booleans(), _letters_only(float))


def _not_one_of(words: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.one_of(st.text(max_size=10).filter(lambda t: t not in words), st.integers(), st.booleans())


def _is_device(text: str) -> bool:
    """The documented device names: auto, cpu, cuda, cuda:N, mps."""
    return re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", text) is not None


_SYNTHETIC_KEYS = ("n", "d", "classes", "noise")


def _is_synthetic(name: str) -> bool:
    """``synthetic`` or ``synthetic:n=…,d=…,classes=…,noise=…``, each a positive integer, classes >= 2."""
    items = [item.partition("=") for item in name.removeprefix("synthetic:").split(",") if item]
    return all(key in _SYNTHETIC_KEYS and eq and raw.isascii() and raw.isdigit() and int(raw) >= 1
               and (key != "classes" or int(raw) >= 2) for key, eq, raw in items)


_raw_values = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=","), max_size=4)
synthetic_names = st.lists(st.tuples(st.sampled_from([*_SYNTHETIC_KEYS, "x"]), st.sampled_from(["=", ""]), _raw_values),
                           max_size=3).map(lambda items: "synthetic:" + ",".join(f"{k}{eq}{v}" for k, eq, v in items))
device_names = st.builds(str.__add__, st.sampled_from(["", "auto", "cpu", "mps", "cuda", "cuda:", "cuda:0"]),
                         st.text(max_size=3))

# For each field, values it must refuse (with what else the table needs, so that only this value is wrong).
BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **{name: _bad_float(name) for name in FLOAT_RULES},
    **{name: _bad_int(minimum) for name, minimum in INT_MINIMUMS.items()},
    **{name: _not_one_of(words) for name, words in WORDS.items()},
    "download": st.one_of(st.integers(), st.text(), st.floats()),
    "nesterov": st.one_of(st.integers(), st.text(), st.floats()),
    "device": device_names.filter(lambda t: not _is_device(t)) | st.integers(),
    "dataset": synthetic_names.filter(lambda t: not _is_synthetic(t))
    | st.text(string.ascii_letters + "-", max_size=10).filter(
        lambda t: t not in ("digits", "mnist", "fashion-mnist", "cifar10", "synthetic")),
    "hidden": st.lists(st.integers(max_value=0), min_size=1, max_size=3).flatmap(
        lambda bad: st.lists(st.integers(1, 64), max_size=2).map(lambda good: good + bad)) | st.just([]),
    "model_args": st.dictionaries(st.text(max_size=6).filter(lambda t: not t.isidentifier()), st.integers(),
                                  min_size=1, max_size=2),
    "model": st.text(string.ascii_letters, max_size=8).filter(lambda t: t not in ("mlp", "cnn")),
    "loss": st.text(string.ascii_letters + "-", max_size=14).filter(lambda t: t not in ("cross-entropy", "mse")),
}
NEEDS = {"momentum": {"optimizer": "sgd"}, "nesterov": {"optimizer": "sgd", "momentum": 0.9}}


@pytest.mark.parametrize("field", sorted(BAD_VALUES))
@given(data=st.data())
def test_a_bad_value_is_a_config_error_naming_the_field_and_the_value(field: str, data: st.DataObject) -> None:
    value = data.draw(BAD_VALUES[field], label=field)
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_mapping({**NEEDS.get(field, {}), field: value})
    message = str(caught.value)
    shown = {repr(value), repr(tuple(value)) if isinstance(value, list) else "",
             repr(float(value)) if field in FLOAT_RULES and isinstance(value, int) and not isinstance(value, bool)
             else ""} - {""}
    assert f"{field} " in message and any(text in message for text in shown), message


@given(st.sampled_from(FIELDS), st.none() | toml_values)
@example("dataset", "synthetic:n=\u00b2")  # a superscript 2: str.isdigit took it, int() raised ValueError
@example("device", "cuda:\u0661")  # an Arabic-Indic 1: re's \d took it, torch.device does not
@example("device", "cpu\n")  # re's $ matched before the newline
def test_any_value_of_any_field_gives_a_config_that_reads_back_or_a_config_error(field: str, value: Any) -> None:
    try:
        config = TrainConfig.from_mapping({field: value})
    except ConfigError:
        return
    assert TrainConfig.from_mapping(config.to_dict()) == config
    if field == "device":
        assert _is_device(config.device)
    if field == "dataset" and config.dataset.startswith("synthetic"):
        assert _is_synthetic(config.dataset)


@given(synthetic_names)
@example("synthetic:n=\u00b2")  # a superscript 2: str.isdigit took it, int() did not
def test_a_synthetic_dataset_is_accepted_exactly_when_its_parameters_are_positive_integers(name: str) -> None:
    try:
        TrainConfig(dataset=name)
    except ConfigError as exc:
        assert not _is_synthetic(name) and repr(name) in str(exc)
    else:
        assert _is_synthetic(name)


@given(device_names)
@example("cuda:\u0661")
@example("cpu\n")
def test_a_device_name_is_accepted_exactly_when_it_is_a_documented_one(name: str) -> None:
    try:
        TrainConfig(device=name)
    except ConfigError as exc:
        assert not _is_device(name) and repr(name) in str(exc)
    else:
        assert _is_device(name)


@given(identifiers, st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans()), st.text(" ", max_size=2))
def test_a_model_arg_reads_back_as_the_number_or_bool_it_was_written_as(name: str, value: Any, pad: str) -> None:
    parsed = parse_arg(f"{pad}{name}{pad}={pad}{value}{pad}")
    assert parsed == (name, value) and type(parsed[1]) is type(value)


@given(identifiers, st.text().filter(lambda t: not any(_parses(kind, t) for kind in (int, float))
                                     and t.strip().lower() not in ("true", "false")))
def test_a_model_arg_that_is_no_number_or_bool_reads_back_as_its_text(name: str, text: str) -> None:
    assert parse_arg(f"{name}={text}") == (name, text.strip())


@given(st.text().filter(lambda t: not t.partition("=")[0].strip().isidentifier() or "=" not in t))
def test_a_model_arg_without_a_name_is_a_config_error_showing_it(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_arg(text)
    assert repr(text) in str(caught.value)
