"""The trusted epoch's rank correlation, the median pruner that waits for it, and the note that says so."""

from __future__ import annotations

import math
import warnings

import optuna
import pytest
from optuna.pruners import MedianPruner
from scipy.stats import spearmanr

from hpsearch.presentation.notes import study_note
from hpsearch.search.pruners import TrustedEpochMedianPruner, make_pruner
from hpsearch.search.records import StudyRecord, write_record
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage
from hpsearch.search.trusted_epoch import rank_correlation

# Fast learners that overfit (best after epoch 1, worst at the end) and slow ones that overtake them by epoch 3.
OVERFITTING = [[0.8, 1.0, 1.3, 1.5], [0.9, 1.0, 1.2, 1.3], [1.8, 1.2, 0.9, 0.8], [2.0, 1.4, 0.8, 0.7],
               [2.1, 1.3, 1.0, 0.9]]
AGREEING = [[2.0, 1.0, 0.5, 0.3], [2.2, 1.2, 0.7, 0.5], [2.4, 1.4, 0.9, 0.7], [2.6, 1.6, 1.1, 0.9],
            [2.8, 1.8, 1.3, 1.1]]


@pytest.mark.parametrize(("x", "y"), [
    ([1, 2, 3, 4], [10, 20, 30, 40]),
    ([1, 2, 3, 4], [4, 3, 2, 1]),
    ([1, 1, 2, 3, 3], [5, 4, 4, 1, 2]),
    ([0.3, 0.1, 0.2, 0.9, 0.5, 0.5], [2.0, 1.0, 3.0, 2.0, 2.0, 7.0]),
    ([2, 2, 2, 2], [1, 2, 3, 4]),
], ids=["same order", "reversed", "ties in both", "ties in one", "constant"])
def test_rank_correlation_is_spearmans_rho(x: list[float], y: list[float]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns of a constant input, and gives nan
        expected = spearmanr(x, y).statistic
    assert rank_correlation(x, y) == pytest.approx(0.0 if math.isnan(expected) else expected, abs=1e-12)


def study_of(curves: list[list[float]], study: optuna.Study | None = None) -> optuna.Study:
    """A study (new, or ``study``) holding one more complete trial per curve (epochs 1..n), its last value its value."""
    study = study or optuna.create_study(pruner=make_pruner("median", epochs=4))
    for values in curves:
        trial = study.ask()
        for epoch, value in enumerate(values, start=1):
            trial.report(value, epoch)
        study.tell(trial, values[-1])
    return study


def first_epoch_stopped(study: optuna.Study, values: list[float]) -> int | None:
    """The epoch at which the study's pruner stops a trial reporting ``values``; None when it never does."""
    trial = study.ask()
    for epoch, value in enumerate(values, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return epoch
    study.tell(trial, values[-1])
    return None


@pytest.mark.parametrize(("curves", "stopped_at"), [(OVERFITTING, 3), (AGREEING, 1)],
                         ids=["early epochs mislead: waits for epoch 3", "epoch 1 already ranks: stops there"])
def test_the_median_pruner_stops_no_trial_before_the_trusted_epoch(curves: list[list[float]],
                                                                   stopped_at: int) -> None:
    study = study_of(curves)
    assert isinstance(study.pruner, TrustedEpochMedianPruner)
    assert first_epoch_stopped(study, [9.0, 9.0, 9.0, 9.0]) == stopped_at


def test_a_slow_learner_that_ends_best_is_not_stopped_by_its_first_epochs() -> None:
    study = study_of(OVERFITTING)
    assert first_epoch_stopped(study, [2.2, 1.5, 0.7, 0.6]) is None  # worst after epochs 1 and 2, best at 3
    assert study.best_value == 0.6


def test_the_trusted_epoch_is_learned_again_as_trials_complete() -> None:
    study = study_of(AGREEING)
    pruner = study.pruner
    assert isinstance(pruner, TrustedEpochMedianPruner) and pruner.warmup(study) == 1
    study_of(OVERFITTING, study)  # trials whose first two epochs rank against their last
    assert pruner.warmup(study) == 3
    assert first_epoch_stopped(study, [9.0, 9.0, 9.0, 9.0]) == 3


def test_too_few_complete_trials_prune_nothing() -> None:
    study = study_of(AGREEING[:3])
    assert first_epoch_stopped(study, [9.0, 9.0, 9.0, 9.0]) is None


@pytest.mark.parametrize(("warmup", "kind"), [(None, TrustedEpochMedianPruner), (2, MedianPruner)])
def test_a_warmup_given_is_the_median_pruners_own(warmup: int | None, kind: type) -> None:
    pruner = make_pruner("median", epochs=4, warmup=warmup)
    assert type(pruner) is kind


@pytest.mark.parametrize(("curves", "study_table", "line"), [
    (OVERFITTING, {"pruner": "median"}, "Median pruner: no trial pruned before epoch 3"),
    (AGREEING, {"pruner": "median"}, None),
    (OVERFITTING, {"pruner": "median", "pruner_warmup": 2}, None),
    (OVERFITTING, {"pruner": "hyperband"}, None),
], ids=["learned later than epoch 1", "epoch 1", "a warm-up the spec fixed", "another pruner"])
def test_the_dashboard_note_says_which_epoch_the_median_pruner_waited_for(
        curves: list[list[float]], study_table: dict[str, object], line: str | None) -> None:
    storage = open_storage("memory")
    study = optuna.create_study(study_name="noted", storage=storage)
    spec = StudySpec.from_mapping({"study": {"name": "noted", **study_table}}).to_dict()
    write_record(study, StudyRecord(spec=spec))
    study_of(curves, study)
    note = study_note("noted", storage)
    assert ("Median pruner:" in note) == (line is not None), note
    assert line is None or line in note
