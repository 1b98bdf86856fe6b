"""Studies of the user's optimizer and metric (tests/useroptim.py): optimizer_args fixed and searched as model_args
are, any reported metric optimized in either direction by every strategy and pruner, workers' trust, --batch."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.errors import ConfigError, EntryPointError
from hpsearch.search.objective import apply_params
from hpsearch.search.records import read_record, read_trial, write_record
from hpsearch.search.runner import run_study
from hpsearch.search.space import SearchSpace
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage
from hpsearch.search.trust import check_trusted, entry_point_trust

optuna.logging.set_verbosity(optuna.logging.WARNING)

USEROPTIM = Path(__file__).parent.with_name("useroptim.py")
LR = {"low": 1e-3, "high": 1e-2, "log": True}
RMSPROP = TrainConfig(optimizer="useroptim.py:rmsprop", epochs=1, hidden=(16,))
F1 = TrainConfig(metrics="useroptim.py:macro_f1", epochs=2, hidden=(16,))


@pytest.fixture(autouse=True)
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """useroptim.py in the working directory; its rmsprop logs each alpha it is built with."""
    shutil.copy(USEROPTIM, tmp_path / "useroptim.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USEROPTIM_LOG", str(tmp_path / "alphas.log"))
    return tmp_path


def test_a_spec_fixes_optimizer_args_in_its_table_and_searches_them_in_its_space() -> None:
    spec = StudySpec.from_mapping({"train": {"optimizer": "useroptim.py:rmsprop"},
                                   "optimizer_args": {"momentum": 0.5},
                                   "space": {"lr": LR, "optimizer_args": {"alpha": {"low": 0.9, "high": 0.99}}}})
    assert spec.train.optimizer_args == {"momentum": 0.5}
    assert [p.name for p in spec.space.params] == ["lr", "optimizer_args.alpha"]
    assert spec.to_dict()["space"]["optimizer_args"] == {"alpha": {"low": 0.9, "high": 0.99, "log": False}}
    config = apply_params(spec.train, {"lr": 2e-3, "optimizer_args.alpha": 0.95})
    assert (config.lr, config.optimizer_args) == (2e-3, {"momentum": 0.5, "alpha": 0.95})


def test_optimizer_args_are_searched_and_each_trial_builds_its_optimizer_with_its_own(user_folder: Path,
                                                                                      digits: Data) -> None:
    space = SearchSpace.from_mapping({"lr": LR, "optimizer_args": {"alpha": {"low": 0.9, "high": 0.99}}})
    study = run_study(StudySpec(name="alphas", strategy="random", n_trials=3, pruner="none", space=space,
                                train=RMSPROP), "memory", data=digits)
    alphas = [t.params["optimizer_args.alpha"] for t in study.trials]
    assert all(t.state == TrialState.COMPLETE for t in study.trials) and len(set(alphas)) == 3
    assert [read_trial(t).config["optimizer_args"] for t in study.trials] == [{"alpha": a} for a in alphas]
    built = [float(line) for line in (user_folder / "alphas.log").read_text().split()]
    assert set(alphas) <= set(built)


def test_optimizer_args_are_sampled_only_for_trials_of_the_users_optimizer(digits: Data) -> None:
    space = SearchSpace.from_mapping({"lr": LR, "optimizer": {"choices": ["adamw", "useroptim.py:rmsprop"]},
                                      "optimizer_args": {"alpha": {"low": 0.9, "high": 0.99}}})
    study = run_study(StudySpec(name="either", strategy="random", n_trials=6, pruner="none", space=space, seed=3,
                                train=RMSPROP), "memory", data=digits)
    assert {t.params["optimizer"] for t in study.trials} == {"adamw", "useroptim.py:rmsprop"}
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        assert ("optimizer_args.alpha" in trial.params) == (trial.params["optimizer"] != "adamw")


def f1_per_epoch(trial: FrozenTrial) -> list[float]:
    return [epoch["user_metrics"]["macro_f1"] for epoch in read_trial(trial).history or []]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_study_of_macro_f1_takes_each_trials_f1_as_its_value_and_picks_its_best_by_it(direction: str,
                                                                                         digits: Data) -> None:
    space = SearchSpace.from_mapping({"lr": {"choices": [1e-4, 1e-3, 1e-2]}})
    spec = StudySpec(name=f"f1-{direction}", strategy="grid", metric="macro_f1", direction=direction, pruner="none",
                     space=space, train=F1)
    study = run_study(spec, "memory", data=digits)
    assert study.direction.name.lower() == direction and study.metric_names == ["macro_f1"]
    assert len(study.trials) == 3
    for trial in study.trials:
        assert list(trial.intermediate_values.values()) == f1_per_epoch(trial)
        assert trial.value == f1_per_epoch(trial)[-1]
    by_f1 = (max if direction == "maximize" else min)(study.trials, key=lambda t: f1_per_epoch(t)[-1])
    assert study.best_trial.number == by_f1.number
    by_accuracy = max(study.trials, key=lambda t: read_trial(t).history[-1]["val_acc"])
    assert (by_f1.number == by_accuracy.number) == (direction == "maximize")  # minimized, F1 picks the worst


@pytest.mark.parametrize(("strategy", "pruner"), [("grid", "none"), ("random", "median"), ("tpe", "hyperband"),
                                                  ("tpe", "asha"), ("coarse-to-fine", None)])
def test_every_strategy_and_pruner_optimizes_the_users_metric(strategy: str, pruner: str | None,
                                                              digits: Data) -> None:
    space = SearchSpace.from_mapping({"lr": {"low": 1e-4, "high": 1e-1, "log": True}})
    spec = StudySpec.from_sources({"space": space.to_dict()}, train=F1.replace(epochs=3).to_dict(),
                                  name=f"f1-{strategy}", strategy=strategy, pruner=pruner, metric="macro_f1",
                                  direction="maximize", n_trials=6, grid_points=3)
    study = run_study(spec, "memory", data=digits)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert study.direction.name == "MAXIMIZE" and len(finished) >= 3
    for trial in finished:
        assert [trial.intermediate_values[epoch] for epoch in sorted(trial.intermediate_values)] == \
            f1_per_epoch(trial)[-len(trial.intermediate_values):]
        if trial.state == TrialState.COMPLETE:
            assert trial.value == f1_per_epoch(trial)[-1]


@pytest.mark.parametrize(("metric", "train", "message"), [
    ("f1", F1, "metric 'f1' is not reported: metrics 'useroptim.py:macro_f1' returns val_loss, val_acc, macro_f1, "
               "samples"),
    ("macro_f1", F1.replace(metrics=None), "metric 'macro_f1' is not reported: without --metrics file.py:fn, each "
                                           "epoch reports val_loss, val_acc"),
], ids=["a name the function does not return", "no metrics function"])
def test_a_metric_no_epoch_reports_stops_the_run_before_anything_is_stored(metric: str, train: TrainConfig,
                                                                           message: str, user_folder: Path,
                                                                           digits: Data) -> None:
    storage = f"sqlite:///{user_folder / 'hp.db'}"
    with pytest.raises(ConfigError) as caught:
        run_study(StudySpec(name="missing", metric=metric, direction="maximize", n_trials=1, train=train), storage,
                  data=digits)
    assert str(caught.value) == message
    assert optuna.get_all_study_names(storage) == []


@pytest.mark.parametrize(("train", "message"), [
    (RMSPROP, "got optimizer 'useroptim.py:rmsprop' (your optimizer: run without --batch, or with --jobs"),
    (F1, "got metrics 'useroptim.py:macro_f1' (your metrics: run without --batch, or with --jobs"),
], ids=["optimizer", "metrics"])
def test_batched_trials_refuse_the_users_optimizer_and_metrics(train: TrainConfig, message: str,
                                                               digits: Data) -> None:
    with pytest.raises(ConfigError, match="--batch steps its stacked members with its own AdamW") as caught:
        run_study(StudySpec(name="batched", n_trials=2, train=train), "memory", data=digits, batch=2)
    assert message in str(caught.value)


@pytest.mark.parametrize("field", ["optimizer", "metrics"])
def test_a_worker_imports_the_users_optimizer_and_metrics_only_when_trusted(field: str, tmp_path: Path) -> None:
    outside = str(tmp_path.parent / "elsewhere" / "useroptim.py")
    config = TrainConfig(**{field: f"{outside}:fn"})
    assert entry_point_trust(config) == {outside}
    with pytest.raises(EntryPointError, match=f"{field} '{outside}:fn' of study 'mine' is not trusted"):
        check_trusted(config, (), "mine")
    check_trusted(config, (outside,), "mine")
    check_trusted(TrainConfig(**{field: "useroptim.py:fn"}), (), "mine")  # a file of the working directory


def test_a_study_stored_before_direction_and_optimizer_args_existed_resumes(user_folder: Path, digits: Data) -> None:
    storage = open_storage(f"sqlite:///{user_folder / 'hp.db'}")
    spec = StudySpec(name="older", n_trials=1, pruner="none", train=TrainConfig(epochs=1, hidden=(16,)))
    study = run_study(spec, storage, data=digits)
    record = read_record(study)
    older = {table: dict(values) for table, values in (record.spec or {}).items()}
    del older["study"]["direction"], older["train"]["optimizer_args"], older["train"]["metrics"]
    write_record(study, record.with_spec(older))
    again = run_study(spec.replace(n_trials=2), storage, data=digits)
    assert len(again.trials) == 2
