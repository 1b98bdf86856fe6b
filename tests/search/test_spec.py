from __future__ import annotations

from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpsearch.engine.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.search.space import ParamSpec, SearchSpace
from hpsearch.search.spec import DEFAULT_TRIALS, StudySpec, load_spec_file

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.toml"))


def test_default_spec_searches_lr_and_weight_decay_on_log_scales() -> None:
    spec = StudySpec()
    assert spec.study_name == "digits-tpe" and spec.direction == "minimize"
    assert spec.total_trials == DEFAULT_TRIALS
    assert spec.space.distributions() == {"lr": FloatDistribution(1e-5, 1e-1, log=True),
                                          "weight_decay": FloatDistribution(1e-5, 1e-1, log=True)}


def test_spaces_map_to_optuna_distributions_and_grids() -> None:
    space = SearchSpace.from_mapping({
        "lr": {"low": 1e-4, "high": 1e-1, "log": True},
        "batch_size": {"low": 32, "high": 256, "log": True},
        "warmup": {"low": 0.0, "high": 0.2},
        "schedule": {"choices": ["constant", "cosine"]},
    })
    assert space.distributions() == {
        "lr": FloatDistribution(1e-4, 1e-1, log=True), "batch_size": IntDistribution(32, 256, log=True),
        "warmup": FloatDistribution(0.0, 0.2), "schedule": CategoricalDistribution(["constant", "cosine"])}
    grid = space.grid(4)
    assert grid["lr"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    assert grid["batch_size"] == [32, 64, 128, 256]
    assert grid["warmup"] == pytest.approx([0.0, 0.2 / 3, 0.4 / 3, 0.2])
    assert grid["schedule"] == ["constant", "cosine"]
    assert StudySpec(strategy="grid", grid_points=4, space=space).total_trials == 4 * 4 * 4 * 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"low": 0.1, "high": 0.01, "log": True}, "space.lr: low must be < high, got low=0.1 high=0.01"),
        ({"low": 0.0, "high": 0.1, "log": True}, "space.lr: a log-scale range needs low > 0, got low=0"),
        ({"low": 0.1}, "space.lr: needs low and high"),
        ({"low": 0.1, "high": 1, "step": 2}, "space.lr: unknown key 'step'"),
        ({"low": "a", "high": 1}, "space.lr: low and high must be numbers"),
    ],
)
def test_bad_ranges_name_the_parameter_and_values(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SearchSpace.from_mapping({"lr": values})
    assert message in str(caught.value)


def test_only_training_hyperparameters_can_be_searched() -> None:
    with pytest.raises(ConfigError, match=r"space\.dataset: cannot search 'dataset'"):
        ParamSpec("dataset", choices=("digits",))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategy": "bayes"}, "strategy must be one of grid, random, tpe, coarse-to-fine, got 'bayes'"),
        ({"pruner": "sha"}, "pruner must be one of median, hyperband, asha, none, got 'sha'"),
        ({"metric": "f1"}, "direction must be given for metric 'f1', which is not built in"),
        ({"metric": "f1", "direction": "up"}, "direction must be one of minimize, maximize, got 'up'"),
        ({"metric": "val_loss", "direction": "maximize"}, "direction must be minimize for metric val_loss"),
        ({"metric": " "}, "metric must be val_loss, val_acc or a name your metrics function reports"),
        ({"n_trials": 0}, "n_trials must be >= 1, got 0"),
        ({"timeout": -1.0}, "timeout must be > 0 seconds, got -1.0"),
    ],
)
def test_bad_study_fields_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        StudySpec(**change)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_spec_files_reject_unknown_tables_and_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown table \[model\]"):
        StudySpec.from_mapping({"model": {}})
    with pytest.raises(ConfigError, match="unknown key 'trials' in \\[study\\]"):
        StudySpec.from_mapping({"study": {"trials": 3}})
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate' in \\[train\\]"):
        StudySpec.from_mapping({"train": {"learning_rate": 3}})
    broken = tmp_path / "broken.toml"
    broken.write_text("[study\n")
    with pytest.raises(ConfigError, match="cannot parse spec file"):
        load_spec_file(broken)


def test_to_dict_round_trips() -> None:
    spec = StudySpec(name="x", strategy="grid", train=TrainConfig(epochs=3),
                     space=SearchSpace.from_mapping({"schedule": {"choices": ["constant", "wsd"]}}))
    assert StudySpec.from_mapping(spec.to_dict()) == spec


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_example_specs_load(path: Path) -> None:
    spec = StudySpec.from_mapping(load_spec_file(path), str(path))
    assert spec.study_name == path.stem


def test_the_textbook_example_is_the_textbook_setup() -> None:
    spec = StudySpec.from_mapping(load_spec_file(next(p for p in STUDIES if p.stem == "textbook")))
    assert spec.space.to_dict() == {"lr": {"low": 1e-5, "high": 1e-1, "log": True},
                                    "weight_decay": {"low": 1e-4, "high": 1e-1, "log": True}}
    assert spec.total_trials == 30 and spec.train.epochs == 5


def test_model_args_tables_and_their_search_round_trip_through_the_stored_spec() -> None:
    tables = {"study": {"strategy": "random", "n_trials": 3},
              "model_args": {"width": 16},
              "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True},
                        "optimizer": {"choices": ["adamw", "sgd"]},
                        "model_args": {"width": {"low": 8, "high": 32}, "act": {"choices": ["relu", "gelu"]}}},
              "train": {"model": "mytask.py:net", "dataset": "mytask.py:load"}}
    spec = StudySpec.from_mapping(tables)
    assert spec.train.model_args == {"width": 16}
    assert spec.space.distributions() == {
        "optimizer": CategoricalDistribution(["adamw", "sgd"]), "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "model_args.width": IntDistribution(8, 32), "model_args.act": CategoricalDistribution(["relu", "gelu"])}
    assert spec.study_name == "mytask-random"
    assert StudySpec.from_mapping(spec.to_dict()) == spec.replace(name="mytask-random")


def test_a_float_model_arg_range_is_searched_as_floats() -> None:
    space = SearchSpace.from_mapping({"model_args": {"dropout": {"low": 0.0, "high": 0.5}}})
    assert space.distributions() == {"model_args.dropout": FloatDistribution(0.0, 0.5)}


TEXTBOOK = Path(__file__).resolve().parents[2] / "studies" / "textbook.toml"


def test_from_sources_puts_the_flags_over_the_file_as_run_does() -> None:
    spec = StudySpec.from_sources(TEXTBOOK, train={"epochs": 2, "model_args": {"width": 8}}, lr_range=(1e-4, 1e-2),
                                  n_trials=6, seed=3, strategy=None)
    assert (spec.study_name, spec.strategy, spec.n_trials, spec.seed) == ("textbook", "tpe", 6, 3)
    assert (spec.train.epochs, spec.train.batch_size, spec.train.seed) == (2, 128, 3)  # the seed goes to both
    ranges = {param.name: (param.low, param.high) for param in spec.space.params}
    assert ranges == {"lr": (1e-4, 1e-2), "weight_decay": (1e-4, 1e-1)}  # the file's other range is kept


def test_from_sources_merges_model_args_key_by_key_and_takes_stored_tables() -> None:
    stored = {"study": {"name": "kept", "n_trials": 4}, "train": {"model_args": {"width": 8, "depth": 2}}}
    spec = StudySpec.from_sources(stored, train={"model_args": {"width": 16}})
    assert spec.study_name == "kept" and spec.n_trials == 4
    assert spec.train.model_args == {"width": 16, "depth": 2}
    assert StudySpec.from_sources() == StudySpec()


def test_train_config_from_sources_reads_the_file_under_the_flags(tmp_path: Path) -> None:
    settings = tmp_path / "best.json"
    settings.write_text('{"lr": 0.01, "epochs": 4, "model_args": {"width": 8, "depth": 2}}')
    config = TrainConfig.from_sources(settings, lr=0.003, seed=None, model_args={"width": 16})
    assert (config.lr, config.epochs, config.model_args) == (0.003, 4, {"width": 16, "depth": 2})


OBJECTIVE = "train.py:objective"


@pytest.mark.parametrize("strategy", ["grid", "coarse-to-fine"])
def test_a_strategy_that_needs_the_space_refuses_an_objective_that_declares_none(strategy: str) -> None:
    with pytest.raises(ConfigError, match=rf"^strategy {strategy} with objective 'train.py:objective' needs the "
                                          r"objective's parameters declared: a spec's \[space\]"):
        StudySpec.from_sources(None, objective=OBJECTIVE, strategy=strategy)
    declared = {"space": {"n_layers": {"low": 1, "high": 3}}}
    assert StudySpec.from_sources(declared, objective=OBJECTIVE, strategy=strategy).space.params[0].kind is int


@pytest.mark.parametrize(("sources", "message"), [
    ({"train": {"epochs": 3}}, "--epochs sets hpsearch's training loop; objective 'train.py:objective' trains itself"),
    ({"lr_find": True}, "lr_find runs hpsearch's training loop; objective 'train.py:objective' trains itself"),
    ({"direction": "up"}, "direction must be one of minimize, maximize, got 'up'"),
    ({"objective": "train.py"}, "objective must be an entry point (path/to/file.py:fn or package.module:fn)"),
], ids=["train-flag", "lr-find", "direction", "not-an-entry-point"])
def test_what_an_objective_cannot_do_is_one_error_naming_it(sources: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        StudySpec.from_sources(None, **{"objective": OBJECTIVE, **sources})  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_an_objectives_spec_names_its_value_and_direction_and_round_trips_with_its_own_params() -> None:
    spec = StudySpec.from_sources({"space": {"dropout_l0": {"low": 0.2, "high": 0.5}}}, objective=OBJECTIVE,
                                  direction="maximize")
    assert (spec.metric, spec.direction, spec.study_name) == ("value", "maximize", "train-tpe")
    assert StudySpec.from_mapping(spec.to_dict()) == spec.replace(name="train-tpe")
    undeclared = StudySpec.from_sources(None, objective=OBJECTIVE, name="own")
    assert undeclared.space.params == () and StudySpec.from_mapping(undeclared.to_dict()) == undeclared
    assert StudySpec.from_sources({"study": {"objective": OBJECTIVE}}).space.params == ()  # a spec file's


def test_a_study_of_hpsearchs_loop_stores_its_metrics_own_direction_and_reads_one_stored_without_it() -> None:
    assert StudySpec(metric="val_acc").to_dict()["study"]["direction"] == "maximize"  # one stored field for all
    assert StudySpec.from_mapping({"study": {"metric": "val_acc"}}).direction == "maximize"  # as stored before it
    with pytest.raises(ConfigError, match="direction must be maximize for metric val_acc, got 'minimize'"):
        StudySpec(metric="val_acc", direction="minimize")
