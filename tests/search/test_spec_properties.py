"""Properties of spec and space parsing over generated inputs: a valid spec file reads back as itself, a bad value
is always one ConfigError naming the field and the value, and a space the spec accepts only suggests values that
the training settings can take."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from input_strategies import (
    FOR_OPTIMIZERS,
    METRICS,
    PRUNERS,
    SEARCHABLE,
    STRATEGIES,
    model_arg_values,
    model_args,
    searched,
    spec_tables,
    toml_text,
    toml_values,
)
from optuna.trial import FixedTrial

from hpsearch.engine.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.search.objective import apply_params
from hpsearch.search.space import ParamSpec
from hpsearch.search.spec import StudySpec


def spec_from_toml(tables: dict[str, Any], **flags: Any) -> StudySpec:
    """The spec ``hpsearch run --spec FILE`` builds from ``tables`` written as a TOML file, with ``flags``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.toml"
        path.write_text(toml_text(tables))
        return StudySpec.from_sources(path, **flags)


@given(spec_tables())
def test_a_valid_spec_file_reads_back_as_itself_from_its_stored_tables(tables: dict[str, Any]) -> None:
    spec = spec_from_toml(tables)
    assert spec.total_trials >= 1
    stored = StudySpec.from_mapping(spec.to_dict(), source="stored")
    assert stored == spec.replace(name=spec.study_name, coarse_to_fine=stored.coarse_to_fine)
    if spec.strategy == "coarse-to-fine":  # the stages' plan is stored only where it is used
        assert stored.coarse_to_fine == spec.coarse_to_fine


@given(spec_tables(), st.sampled_from(STRATEGIES), st.integers(4, 100), st.integers(0, 2**32 - 1))
def test_flags_override_the_spec_file_key_by_key(tables: dict[str, Any], strategy: str, n_trials: int,
                                                 seed: int) -> None:
    from_file = spec_from_toml(tables)
    flagged = spec_from_toml(tables, strategy=strategy, n_trials=n_trials, seed=seed, metric=None)
    assert (flagged.strategy, flagged.n_trials, flagged.seed, flagged.train.seed) == (strategy, n_trials, seed, seed)
    assert (flagged.metric, flagged.space, flagged.train.lr) == (from_file.metric, from_file.space, from_file.train.lr)


@given(spec_tables(), st.lists(st.floats(1e-9, 10.0), min_size=2, max_size=2, unique=True).map(sorted))
def test_an_lr_range_flag_replaces_only_the_lr_of_the_space(tables: dict[str, Any], bounds: list[float]) -> None:
    from_file = spec_from_toml(tables)
    flagged = spec_from_toml(tables, lr_range=(bounds[0], bounds[1]))
    lr = next(p for p in flagged.space.params if p.name == "lr")
    assert (lr.low, lr.high, lr.log) == (bounds[0], bounds[1], True)
    assert {p for p in flagged.space.params if p.name != "lr"} == {p for p in from_file.space.params if p.name != "lr"}


@given(spec_tables(), st.data())
def test_every_value_an_accepted_space_suggests_makes_valid_training_settings(tables: dict[str, Any],
                                                                               data: st.DataObject) -> None:
    """What a trial does with its suggestion (space.suggest, then apply_params) never fails on any value the space
    can give, each range's ends and middle, in every combination; where it would, the spec itself is refused."""
    wider = {**tables, "space": {**tables.get("space", {}), **data.draw(any_ranges())}}
    try:
        spec = StudySpec.from_mapping(wider)
    except ConfigError as exc:
        assert "space." in str(exc)
        return
    grid = spec.space.grid(3)
    for values in itertools.product(*grid.values()):
        trial = FixedTrial(dict(zip(grid, values, strict=True)))
        config = apply_params(spec.train, spec.space.suggest(trial, spec.train.optimizer))
        assert TrainConfig.from_mapping(config.to_dict()) == config  # what export, then train --config, reads


@st.composite
def any_ranges(draw: st.DrawFn) -> dict[str, Any]:
    """One or two searched settings with bounds or choices drawn regardless of the setting's rule."""
    names = draw(st.lists(st.sampled_from(SEARCHABLE), min_size=1, max_size=2, unique=True))
    numbers = st.floats(-2.0, 2.0) | st.integers(-3, 300)
    entries = {}
    for name in names:
        if name in ("schedule", "optimizer", "precision", "nesterov") or draw(st.booleans()):
            choices = st.sampled_from(["constant", "wsd", "bogus", "adamw", "sgd", "adam", "fp16", True, False])
            entries[name] = {"choices": draw(st.lists(choices | numbers, min_size=1, max_size=3, unique=True))}
        else:
            low, high = sorted(draw(st.lists(numbers, min_size=2, max_size=2, unique=True)))
            entries[name] = {"low": low, "high": high, "log": low > 0 and draw(st.booleans())}
    return entries


@given(st.dictionaries(st.sampled_from(["study", "space", "train", "model_args", "coarse_to_fine", "extra"]),
                       toml_values, max_size=3))
@example({"study": 5})
@example({"train": "fast"})
@example({"space": [1]})
def test_any_tables_give_a_spec_or_a_config_error(tables: dict[str, Any]) -> None:
    try:
        StudySpec.from_mapping(tables)
    except ConfigError:
        pass


@given(st.sampled_from(["study", "space", "train", "model_args", "coarse_to_fine"]),
       st.dictionaries(st.text(max_size=12), toml_values, max_size=4))
def test_any_keys_and_values_in_a_table_give_a_spec_or_a_config_error(table: str, values: dict[str, Any]) -> None:
    try:
        StudySpec.from_mapping({table: values})
    except ConfigError:
        pass


# Values each [study] key must refuse: another type (a bool is not a number), or a number out of its range.
_NOT_STR = st.one_of(st.booleans(), st.integers(), st.floats(), st.lists(st.text(), max_size=2))
_NOT_INT = st.one_of(st.booleans(), st.floats(), st.text(), st.lists(st.integers(), max_size=2))
BAD_STUDY_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": _NOT_STR | st.text(" \t\n", max_size=3),
    "strategy": _NOT_STR | st.text().filter(lambda s: s not in STRATEGIES),
    "metric": _NOT_STR | st.text().filter(lambda s: s not in METRICS),
    "pruner": _NOT_STR | st.text().filter(lambda s: s not in PRUNERS),
    "pruner_warmup": _NOT_INT | st.integers(max_value=0),
    "n_trials": _NOT_INT | st.integers(max_value=0),
    "timeout": st.booleans() | st.text() | st.floats(max_value=0) | st.integers(max_value=0)
    | st.sampled_from([float("inf"), float("nan")]),
    "seed": _NOT_INT | st.integers(max_value=-1),
    "grid_points": _NOT_INT | st.integers(max_value=1),
    "lr_find": st.integers() | st.floats() | st.text(),
}


@pytest.mark.parametrize("key", sorted(BAD_STUDY_VALUES))
@given(data=st.data())
def test_a_bad_study_value_is_a_config_error_naming_the_key_and_the_value(key: str, data: st.DataObject) -> None:
    value = data.draw(BAD_STUDY_VALUES[key], label=key)
    with pytest.raises(ConfigError) as caught:
        StudySpec.from_mapping({"study": {key: value}})
    message = str(caught.value)
    shown = [repr(value)] + ([repr(float(value))] if isinstance(value, int) and not isinstance(value, bool) else [])
    assert key in message and any(text in message for text in shown)


@given(st.sampled_from(SEARCHABLE).flatmap(lambda name: st.tuples(st.just(name), searched(name))))
def test_a_searched_setting_in_its_rule_gives_its_distribution_and_table_back(entry: tuple[str, Any]) -> None:
    name, values = entry
    param = ParamSpec.from_mapping(name, values)
    distribution = param.distribution()
    assert ParamSpec.from_mapping(name, param.to_dict()) == param
    assert distribution == ParamSpec.from_mapping(name, param.to_dict()).distribution()
    assert all(param.holds(value) for value in param.grid(3))


@given(st.sampled_from([*SEARCHABLE, "model_args.width"]),
       st.dictionaries(st.sampled_from(["low", "high", "log", "choices", "step"]), toml_values, max_size=4))
@example("batch_size", {"low": 0.5, "high": 4, "log": True})  # whole-number bounds: was Optuna's ValueError
@example("lr", {"low": 1e-4, "high": 1e-1, "log": "false"})  # a string was taken as true
@example("optimizer", {"choices": "sgd"})  # a string was searched letter by letter
def test_any_parameter_table_gives_a_searchable_parameter_or_a_config_error(name: str, values: dict[str, Any]) -> None:
    try:
        param = ParamSpec.from_mapping(name, values)
    except ConfigError as exc:
        assert f"space.{name}" in str(exc)
        return
    assert isinstance(values.get("log", False), bool)
    assert values.get("choices") is None or isinstance(values["choices"], list)
    param.distribution()
    param.grid(3)


@given(model_args.filter(bool), st.data())
def test_model_args_of_the_train_table_win_over_the_model_args_table(own: dict[str, Any], data: st.DataObject) -> None:
    names = data.draw(st.sets(st.sampled_from(sorted(own)), min_size=1))
    in_train = {name: data.draw(model_arg_values.filter(lambda v, name=name: v != own[name])) for name in names}
    spec = StudySpec.from_mapping({"model_args": own, "train": {"model_args": in_train}})
    assert spec.train.model_args == {**own, **in_train}


@given(spec_tables())
def test_optimizer_settings_are_searched_only_with_an_optimizer_that_has_them(tables: dict[str, Any]) -> None:
    spec = spec_from_toml(tables)
    optimizers = next((p.choices for p in spec.space.params if p.name == "optimizer"), (spec.train.optimizer,))
    for optimizer in optimizers:
        names = {name for name in spec.space.suggest(FixedTrial(_first_values(spec, optimizer)), spec.train.optimizer)}
        assert all(optimizer in FOR_OPTIMIZERS[name] for name in names & set(FOR_OPTIMIZERS))


def _first_values(spec: StudySpec, optimizer: str) -> dict[str, Any]:
    values = {name: grid[0] for name, grid in spec.space.grid(2).items()}
    return {**values, "optimizer": optimizer} if "optimizer" in values else values

