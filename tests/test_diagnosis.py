"""Trial labels from curves built to show each one, range advice on real studies, and the run's
pre-flight check."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from hpsearch.cli import app
from hpsearch.config import TrainConfig
from hpsearch.data import Data
from hpsearch.diagnosis import diagnose, label_summary, range_advice
from hpsearch.models import MODELS
from hpsearch.search.records import RECORD_ATTR, TrialRecord, read_trial
from hpsearch.search.runner import run_study
from hpsearch.search.space import SearchSpace
from hpsearch.spec import StudySpec


def curve(train: list[float], val: list[float] | None = None) -> list[dict[str, float]]:
    return [{"epoch": i + 1, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(zip(train, val or train,
                                                                                           strict=True))]


def test_the_label_counts_take_every_trial_though_stages_repeat_their_numbers() -> None:
    trials = []
    for labels in (["OK", "OVERFITTING", "OK"], ["OK", "DIVERGING"]):  # two stages, each numbering from 0
        stage = optuna.create_study()
        for label in labels:
            record = TrialRecord(diagnosis={"label": label, "rule": "made for the test"})
            stage.add_trial(optuna.trial.create_trial(value=1.0, params={"lr": 0.5}, user_attrs={
                RECORD_ATTR: record.to_dict()}, distributions={"lr": optuna.distributions.FloatDistribution(1e-5, 1)}))
        trials += stage.trials
    assert label_summary(trials) == "5 trials diagnosed: 1 diverging (all at lr >= 0.5), 1 overfitting, 3 ok"


@pytest.mark.parametrize(("history", "status", "label"), [
    (curve([2.3, 1.2, 0.6, 0.4, 0.3], [2.2, 1.3, 0.7, 0.5, 0.45]), "completed", "OK"),
    (curve([2.3, 1.0, 5.0, 40.0]), "completed", "DIVERGING"),
    (curve([2.3, float("nan")]), "diverged", "DIVERGING"),
    ([{"epoch": 1, "train_loss": None, "val_loss": None}], "diverged", "DIVERGING"),  # as stored: JSON has no NaN
    (curve([2.30, 2.29, 2.29, 2.28, 2.28]), "completed", "STUCK"),
    (curve([2.3, 1.0, 1.4, 0.8, 1.2, 0.7], [2.3, 1.1, 1.3, 0.9, 1.1, 0.8]), "completed", "OSCILLATING"),
    (curve([2.3, 1.0, 0.5, 0.2, 0.05], [2.2, 1.1, 0.8, 1.0, 1.4]), "completed", "OVERFITTING"),
])
def test_each_label_comes_out_for_a_curve_that_shows_it(history: list[dict[str, float]], status: str,
                                                        label: str) -> None:
    diagnosis = diagnose(history, status)
    assert diagnosis.label == label and diagnosis.rule


def grid_study(low: float, high: float, digits: Data, tmp_path: Path) -> optuna.Study:
    space = SearchSpace.from_mapping({"lr": {"low": low, "high": high, "log": True}})
    spec = StudySpec(name=f"grid-{low:g}", strategy="grid", grid_points=5, pruner="none", space=space,
                     train=TrainConfig(epochs=3, hidden=(32,)))
    return run_study(spec, f"sqlite:///{tmp_path / 'hp.db'}", data=digits)


def test_edge_advice_fires_for_a_range_far_too_low(digits: Data, tmp_path: Path) -> None:
    study = grid_study(1e-7, 1e-5, digits, tmp_path)
    advice = range_advice(study.trials, {"lr": {"low": 1e-7, "high": 1e-5, "log": True}}, maximize=False)
    assert len(advice) == 1 and "top 10% of the lr range: try --lr-range 1e-06 0.0001" in advice[0]


def test_edge_advice_stays_silent_for_a_well_centred_range(digits: Data, tmp_path: Path) -> None:
    study = grid_study(1e-5, 1.0, digits, tmp_path)
    assert range_advice(study.trials, {"lr": {"low": 1e-5, "high": 1.0, "log": True}}, maximize=False) == []
    assert all(read_trial(t).diagnosis is not None for t in study.trials)


def test_divergence_advice_names_the_lr_above_which_trials_diverge(digits: Data, tmp_path: Path) -> None:
    study = grid_study(1e-3, 100.0, digits, tmp_path)
    advice = range_advice(study.trials, {"lr": {"low": 1e-3, "high": 100.0, "log": True}}, maximize=False)
    assert any("trials diverged, all at lr >=" in line and "try --lr-range 0.001" in line for line in advice)


def test_run_stops_on_a_failed_preflight_check_and_writes_nothing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from test_checks import DetachedHead

    monkeypatch.setitem(MODELS, "detached-head", DetachedHead)
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    runner = CliRunner()
    args = ["run", "--model", "detached-head", "--hidden", "32", "--epochs", "1", "--n-trials", "1", "--storage",
            storage, "--quiet"]
    done = runner.invoke(app, args)
    assert done.exit_code == 2
    assert done.stderr.startswith("error: pre-flight check 'gradients' failed: max relative error")
    assert optuna.get_all_study_names(storage) == []
    assert runner.invoke(app, [*args, "--no-check"]).exit_code == 0
