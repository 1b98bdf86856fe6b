"""The user's Optuna objective as each trial (hpsearch.search.user_objective), run from Python with the callable
itself: what it returns, raises and reports becomes the trial's state, value, reason and diagnosis; the spec's
declared space gives it its ranges; its first trials all failing alike stop the run."""

from __future__ import annotations

import pytest
from optuna import TrialPruned
from optuna.trial import BaseTrial, TrialState

from hpsearch.errors import EntryPointError, HPSearchError
from hpsearch.search.records import read_trial
from hpsearch.search.runner import run_study
from hpsearch.search.space import SearchSpace
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage
from hpsearch.search.summary import load_family
from hpsearch.search.user_objective import load_objective, run_fixed


def parabola(trial: BaseTrial) -> float:
    x = trial.suggest_float("x", -10, 10)
    return -((x - 2) ** 2)


def learner(trial: BaseTrial) -> float:
    """A curve per step that climbs to ``rate``'s level: higher rates learn more."""
    rate = trial.suggest_float("rate", 0.01, 1.0)
    value = 0.0
    for step in range(6):
        value = rate * (1 - 0.5 ** (step + 1))
        trial.report(value, step)
        if trial.should_prune():
            raise TrialPruned()
    return value


def fails_below_zero(trial: BaseTrial) -> float:
    x = trial.suggest_float("x", -1, 1)
    if x < 0:
        raise ValueError(f"x is negative: {x:.3f}\nthe traceback's second line")
    return x


def always_fails(trial: BaseTrial) -> float:
    trial.suggest_float("x", 0, 1)
    raise RuntimeError("CUDA out of memory")


def fails_by_number(trial: BaseTrial) -> float:
    trial.suggest_float("x", 0, 1)
    raise RuntimeError(f"trial {trial.number} broke")


def objective_spec(objective: object, **fields: object) -> StudySpec:
    return StudySpec(objective=objective, **{"strategy": "random", "pruner": "none", **fields})  # type: ignore[arg-type]


def test_a_callable_from_python_runs_to_its_budget_and_its_best_is_the_maximum_when_maximized() -> None:
    study = run_study(objective_spec(parabola, name="max", direction="maximize", n_trials=6), "memory")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6
    assert study.best_value == max(t.value for t in complete)
    assert study.best_value == -((study.best_params["x"] - 2) ** 2)
    assert study.metric_names == ["value"]


def test_an_objective_that_raises_fails_its_trial_with_the_exceptions_line_and_the_study_goes_on() -> None:
    study = run_study(objective_spec(fails_below_zero, name="half", n_trials=8, seed=3), "memory")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed and len(study.get_trials(states=(TrialState.COMPLETE,))) == 8 - len(failed)
    for trial in failed:
        assert read_trial(trial).reason == f"ValueError: x is negative: {trial.params['x']:.3f}"
        assert read_trial(trial).status == "failed"


def test_the_run_stops_with_the_reason_when_its_first_three_trials_all_fail_with_it() -> None:
    storage = open_storage("memory")
    with pytest.raises(HPSearchError, match=r"the first 3 trials of study 'broken' all failed with "
                                            r"'RuntimeError: CUDA out of memory'"):
        run_study(objective_spec(always_fails, name="broken", n_trials=20), storage)
    assert [t.state for t in load_family("broken", storage)[0].trials] == [TrialState.FAIL] * 3


def test_trials_that_fail_for_different_reasons_spend_the_budget() -> None:
    study = run_study(objective_spec(fails_by_number, name="varied", n_trials=5), "memory")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 5


def test_a_declared_range_takes_the_place_of_the_objectives_own() -> None:
    space = SearchSpace.from_mapping({"x": {"low": 3, "high": 4}}, own=True)
    study = run_study(objective_spec(parabola, name="declared", n_trials=6, space=space), "memory")
    assert all(3 <= t.params["x"] <= 4 for t in study.trials)


def test_a_grid_runs_every_declared_point_through_the_objective() -> None:
    space = SearchSpace.from_mapping({"x": {"choices": [-1.0, 0.5, 2.0]}}, own=True)
    study = run_study(objective_spec(parabola, name="grid", strategy="grid", direction="maximize", space=space),
                      "memory")
    assert sorted(t.params["x"] for t in study.trials) == [-1.0, 0.5, 2.0]
    assert study.best_params == {"x": 2.0}


def test_a_pruner_stops_trials_the_objective_reports_on_with_the_step_as_reason() -> None:
    study = run_study(objective_spec(learner, name="pruned", direction="maximize", n_trials=12, pruner="median",
                                     pruner_warmup=1, seed=1), "memory")
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned
    for trial in pruned:
        assert read_trial(trial).reason == f"pruned at step {max(trial.intermediate_values)}"


def test_a_complete_trial_is_diagnosed_from_the_curve_it_reported() -> None:
    study = run_study(objective_spec(learner, name="diagnosed", direction="maximize", n_trials=2), "memory")
    assert [read_trial(t).diagnosis["label"] for t in study.trials] == ["OK", "OK"]  # type: ignore[index]


def test_coarse_to_fine_narrows_the_declared_range_for_its_fine_stages() -> None:
    space = SearchSpace.from_mapping({"x": {"low": -10.0, "high": 10.0}}, own=True)
    storage = open_storage("memory")
    run_study(objective_spec(parabola, name="c2f", strategy="coarse-to-fine", direction="maximize", n_trials=9,
                             space=space), storage)
    _coarse, *fine = load_family("c2f", storage)
    assert len(fine) == 2
    for stage in fine:
        bounds = stage.user_attrs["hpsearch"]["spec"]["space"]["x"]
        assert bounds["high"] - bounds["low"] < 20
        own = [t for t in stage.trials if "carried_from" not in t.user_attrs["hpsearch"]]
        assert own and all(bounds["low"] <= t.params["x"] <= bounds["high"] for t in own)


def test_ctrl_c_in_the_objective_interrupts_its_trial_and_the_next_run_retries_its_params() -> None:
    calls: list[float] = []

    def interrupted_once(trial: BaseTrial) -> float:
        calls.append(trial.suggest_float("x", 0, 1))
        if len(calls) == 1:
            raise KeyboardInterrupt
        return calls[-1]

    storage = open_storage("memory")
    spec = objective_spec(interrupted_once, name="ctrl-c", n_trials=2)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, storage)
    study = run_study(spec, storage)
    assert read_trial(study.trials[0]).status == "interrupted"
    assert calls[1] == calls[0]  # the retry, with the interrupted trial's params
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2


def not_a_callable() -> None:
    pass


NOT_CALLABLE = 3


@pytest.mark.parametrize(("entry_point", "message"), [
    (f"{__file__}:nothing", "has no attribute 'nothing'"),
    (f"{__file__}.missing.py:objective", "no file"),
    (f"{__file__}:NOT_CALLABLE", "NOT_CALLABLE is a int, not a callable"),
    (f"{__file__}:not_a_callable", "not_a_callable() does not take a trial"),
], ids=["no-attribute", "no-file", "not-callable", "no-trial-argument"])
def test_an_objective_that_cannot_run_is_one_error_naming_it(entry_point: str, message: str) -> None:
    with pytest.raises(EntryPointError, match=r"^objective '.*': .*") as raised:
        load_objective(entry_point)
    assert message in str(raised.value) and entry_point in str(raised.value)


def test_run_fixed_calls_the_objective_with_the_params_fixed() -> None:
    assert run_fixed(f"{__file__}:parabola", {"x": 5.0}) == -9.0
