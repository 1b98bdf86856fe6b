"""Which trials count toward a study's budget, and the retries that keep it honest across workers.

A trial counts once it is complete, pruned, or failed by an error. An interrupted trial (Ctrl-C,
SIGTERM) and a trial failed because its worker died do not: each is queued again as a retry that
keeps its params and names it (Optuna's ``failed_trial`` / ``retry_history`` system attrs).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from hpsearch.search.records import RECORD_ATTR, own_trials, read_trial
from hpsearch.status import Status

__all__ = ["INTERRUPTED", "Budget", "budget", "finished_in_family", "finished_trials", "requeue_interrupted"]

INTERRUPTED = Status.INTERRUPTED  # the name earlier code imports


@dataclass(frozen=True)
class Budget:
    """Trials of a study by what they mean for its budget."""

    finished: int
    running: int
    waiting: int


def budget(study: optuna.Study, before: int | None = None) -> Budget:
    """The study's counts, in one read; with ``before``, only trials numbered below it count as running."""
    trials = own_trials(study)
    running = [t for t in trials if t.state == TrialState.RUNNING and (before is None or t.number < before)]
    return Budget(finished=len(_counted(trials)), running=len(running),
                  waiting=sum(t.state == TrialState.WAITING for t in trials))


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that count toward the budget: complete, pruned, or failed by an error and not retried."""
    return _counted(own_trials(study))


def finished_in_family(family: Sequence[optuna.Study]) -> int:
    """Trials that count toward the budget over a study or the stages of a coarse-to-fine family."""
    return sum(len(finished_trials(study)) for study in family)


def requeue_interrupted(study: optuna.Study) -> int:
    """Queue a retry of every interrupted trial that has none yet; return how many were queued."""
    trials = study.get_trials(deepcopy=False)
    retried = _retried_numbers(trials)
    queued = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=None)
        for trial in trials:
            if _interrupted(trial) and trial.number not in retried:
                fresh = copy.deepcopy(trial)
                # A retry starts with what the trial is, not what happened to it.
                fresh.user_attrs = {RECORD_ATTR: read_trial(trial).identity().to_dict()}
                retry(study, fresh)
                queued += 1
    return queued


def _counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    retried = _retried_numbers(trials)
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and not _interrupted(t) and t.number not in retried)]


def _interrupted(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and read_trial(trial).status == INTERRUPTED


def _retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials that a later trial retries."""
    return {number for t in trials for number in t.system_attrs.get("retry_history", ())}
