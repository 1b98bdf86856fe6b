from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from storage_dump import logical_dump

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.engine.training import train
from hpsearch.errors import ConfigError
from hpsearch.search import objective as objective_module
from hpsearch.search.records import read_trial
from hpsearch.search.runner import StudyMismatchError, finished_trials, run_study
from hpsearch.search.space import SearchSpace
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage

FAST = TrainConfig(epochs=3, hidden=(64,))


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe"])
def test_each_strategy_runs_end_to_end_into_sqlite(strategy: str, tmp_path: Path, digits: Data) -> None:
    spec = StudySpec(strategy=strategy, n_trials=6, grid_points=2, pruner="none", train=FAST)
    run_study(spec, sqlite(tmp_path), data=digits)

    # Read back with Optuna's own API only: nothing of ours in between.
    study = optuna.load_study(study_name=f"digits-{strategy}", storage=sqlite(tmp_path))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == (4 if strategy == "grid" else 6)
    for trial in trials:
        assert set(trial.params) == {"lr", "weight_decay"}
        assert sorted(trial.intermediate_values) == [1, 2, 3]
        assert trial.value == trial.intermediate_values[3]
        attrs = trial.user_attrs["hpsearch"]  # the trial record, one user attr
        assert attrs["status"] == "completed" and attrs["seed"] == 0 and attrs["seconds"] > 0
        assert attrs["config"]["lr"] == trial.params["lr"] and attrs["config"]["epochs"] == 3
        assert [m["epoch"] for m in attrs["history"]] == [1, 2, 3]
        assert attrs["history"][-1]["val_loss"] == trial.value
    info = study.user_attrs["hpsearch"]
    assert info["spec"]["study"]["strategy"] == strategy
    assert set(info["versions"]) == {"hpsearch", "torch", "optuna"}


def test_grid_ends_when_the_grid_is_exhausted(tmp_path: Path, digits: Data) -> None:
    spec = StudySpec(strategy="grid", grid_points=2, n_trials=10, pruner="none", train=FAST)
    study = run_study(spec, sqlite(tmp_path), data=digits)
    assert len(study.trials) == 4
    points = sorted((t.params["lr"], t.params["weight_decay"]) for t in study.trials)
    assert [value for point in points for value in point] == pytest.approx(
        [1e-5, 1e-5, 1e-5, 1e-1, 1e-1, 1e-5, 1e-1, 1e-1])


def test_rerunning_resumes_to_exactly_n_trials(tmp_path: Path, digits: Data) -> None:
    spec = StudySpec(strategy="random", n_trials=3, pruner="none", train=FAST)
    run_study(spec, sqlite(tmp_path), data=digits)
    run_study(spec.replace(n_trials=5), sqlite(tmp_path), data=digits)
    study = run_study(spec.replace(n_trials=5), sqlite(tmp_path), data=digits)
    assert len(study.trials) == 5
    params = [t.params["lr"] for t in study.trials]
    assert len(set(params)) == 5  # a resumed random sampler does not repeat earlier picks


def test_an_interrupted_study_resumes_and_the_interrupted_trial_does_not_count(
    tmp_path: Path, digits: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = StudySpec(strategy="tpe", n_trials=4, pruner="none", train=FAST)
    calls = {"n": 0}

    def interrupted_on_third_call(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of training
        return train(*args, **kwargs)

    monkeypatch.setattr(objective_module, "train", interrupted_on_third_call)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, sqlite(tmp_path), data=digits)
    monkeypatch.undo()
    trials = optuna.load_study(study_name="digits-tpe", storage=sqlite(tmp_path)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert read_trial(trials[2]).status == "interrupted"

    study = run_study(spec, sqlite(tmp_path), data=digits)
    assert len(finished_trials(study)) == 4 and len(study.trials) == 5


def test_median_pruner_prunes_bad_trials_and_keeps_the_reason(tmp_path: Path, digits: Data) -> None:
    space = SearchSpace.from_mapping({"lr": {"low": 1e-7, "high": 1.0, "log": True}})
    spec = StudySpec(strategy="random", n_trials=16, pruner="median", space=space,
                     train=TrainConfig(epochs=6, hidden=(64,)))
    study = run_study(spec, sqlite(tmp_path), data=digits)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "a range from 1e-7 to 1 must give the median pruner trials to stop"
    for trial in pruned:
        assert read_trial(trial).status in ("pruned", "diverged")
        assert read_trial(trial).reason.startswith(("pruned at epoch", "diverged at epoch"))
        assert len(read_trial(trial).history) < 6 or read_trial(trial).status == "diverged"


@pytest.mark.parametrize("batch", [None, 3], ids=["one-at-a-time", "batched"])
def test_a_trial_the_pruner_would_stop_after_its_last_epoch_completes(batch: int | None, tmp_path: Path,
                                                                       digits: Data) -> None:
    # asha's first rung at the last epoch: it stops two trials in three there, when stopping saves nothing.
    space = SearchSpace.from_mapping({"lr": {"low": 1e-5, "high": 1e-1, "log": True}})
    spec = StudySpec(strategy="random", n_trials=6, pruner="asha", pruner_warmup=2, space=space,
                     train=TrainConfig(epochs=2, hidden=(16,)))
    study = run_study(spec, sqlite(tmp_path), data=digits, batch=batch)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert {read_trial(t).status for t in study.trials} == {"completed"}


def test_a_diverged_trial_is_pruned_with_its_reason(tmp_path: Path, digits: Data) -> None:
    poisoned = Data(digits.x_train * 1e38, digits.y_train, digits.x_val, digits.y_val, 10, "digits")
    spec = StudySpec(strategy="random", n_trials=2, pruner="none", train=FAST)
    study = run_study(spec, sqlite(tmp_path), data=poisoned)
    for trial in study.trials:
        assert trial.state == TrialState.PRUNED
        assert read_trial(trial).status == "diverged"
        assert "diverged at epoch 1" in read_trial(trial).reason


@pytest.mark.parametrize("pruner", ["hyperband", "median"])
def test_pruning_works_with_the_grid_too(pruner: str, tmp_path: Path, digits: Data) -> None:
    space = SearchSpace.from_mapping({"lr": {"low": 1e-7, "high": 1e-1, "log": True}})
    spec = StudySpec(strategy="grid", grid_points=8, pruner=pruner, space=space,
                     train=TrainConfig(epochs=6, hidden=(64,)))
    study = run_study(spec, sqlite(tmp_path), data=digits)
    assert len(study.trials) == 8
    assert study.get_trials(states=(TrialState.PRUNED,))


def test_same_spec_and_seed_give_the_same_trials_and_values(digits: Data) -> None:
    spec = StudySpec(strategy="tpe", n_trials=12, train=FAST)
    first = run_study(spec, "memory", data=digits)
    second = run_study(spec, "memory", data=digits)
    assert [(t.params, t.value, t.state) for t in first.trials] == [(t.params, t.value, t.state)
                                                                     for t in second.trials]


def test_a_different_space_under_the_same_name_is_refused_and_nothing_changes(tmp_path: Path, digits: Data) -> None:
    spec = StudySpec(name="mine", strategy="random", n_trials=2, train=FAST)
    run_study(spec, sqlite(tmp_path), data=digits)
    before = logical_dump(sqlite(tmp_path))
    other = spec.replace(n_trials=4, space=SearchSpace.from_mapping({"lr": {"low": 1e-3, "high": 1e-1, "log": True}}))
    with pytest.raises(StudyMismatchError, match="choose a new --study name"):
        run_study(other, sqlite(tmp_path), data=digits)
    assert logical_dump(sqlite(tmp_path)) == before
    with pytest.raises(StudyMismatchError, match=r"train\.epochs=3, not 4"):
        run_study(spec.replace(train=FAST.replace(epochs=4)), sqlite(tmp_path), data=digits)
    assert len(optuna.load_study(study_name="mine", storage=sqlite(tmp_path)).trials) == 2
    assert logical_dump(sqlite(tmp_path)) == before


def test_a_batch_larger_than_the_data_is_refused_before_the_study_exists(tmp_path: Path, digits: Data) -> None:
    space = SearchSpace.from_mapping({"batch_size": {"choices": [64, 4096]}})
    with pytest.raises(ConfigError, match="batch_size must be at most the 1438 training samples"):
        run_study(StudySpec(space=space, train=FAST), sqlite(tmp_path), data=digits)
    assert optuna.get_all_study_names(open_storage(sqlite(tmp_path))) == []


def test_searched_schedule_warmup_clip_and_batch_size_reach_training(digits: Data) -> None:
    space = SearchSpace.from_mapping({
        "schedule": {"choices": ["wsd"]}, "warmup": {"low": 0.1, "high": 0.2},
        "clip": {"choices": [0.5]}, "batch_size": {"choices": [32]}})
    study = run_study(StudySpec(strategy="random", n_trials=1, pruner="none", space=space, train=FAST), "memory",
                      data=digits)
    config = read_trial(study.trials[0]).config
    assert config["schedule"] == "wsd" and config["clip"] == 0.5 and config["batch_size"] == 32
    assert 0.1 <= config["warmup"] <= 0.2
    history = read_trial(study.trials[0]).history
    assert history[0]["lr"] < history[1]["lr"]  # warmup reached the optimizer
    assert all(math.isfinite(m["val_loss"]) for m in history)


def test_timeout_stops_starting_trials(digits: Data) -> None:
    spec = StudySpec(strategy="random", n_trials=10_000, timeout=1.0, pruner="none", train=FAST)
    study = run_study(spec, "memory", data=digits)
    assert 1 <= len(study.trials) < 10_000
