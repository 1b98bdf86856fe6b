"""The user's own Optuna objective as a trial body (``--objective file.py:fn``): ``fn(trial) -> float``, unchanged.

The objective suggests its own parameters, reports and prunes itself; everything around it is what hpsearch's loop
gets (hpsearch.search.loop: the budget, heartbeats and retries, Ctrl-C; the trial's record; the callbacks that move
the progress bar and write the dashboard note). What a spec's ``[space]`` declares of its parameters, its suggest
calls take from there: a grid lists those points, and coarse-to-fine narrows those ranges stage by stage.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.engine.diagnosis import diagnose_reported
from hpsearch.engine.entry_points import resolve
from hpsearch.errors import ConfigError, EntryPointError, HPSearchError
from hpsearch.search.budget import finished_trials
from hpsearch.search.loop import run_trials
from hpsearch.search.objective import TrialCallback, TrialFiles, ask_within_budget, give_up
from hpsearch.search.records import read_trial, write_trial
from hpsearch.search.setup import prepare_study
from hpsearch.search.space import ParamSpec, SearchSpace
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages.beats import beating
from hpsearch.search.storages.optuna_private import storage_of, trial_id
from hpsearch.status import Status

__all__ = ["FIRST_FAILURES", "REPEATED_FAILURE_EXIT", "DeclaredTrial", "ObjectiveSteps", "RepeatedFailureError",
           "check_loop_options", "check_repeated_failure", "load_objective", "optimize_objective", "run_fixed"]

logger = logging.getLogger(__name__)

Objective = Callable[[Any], Any]
# When this many trials have finished and every one of them failed with the same reason, the study stops: the
# objective is broken, and the rest of the budget would fail alike.
FIRST_FAILURES = 3
# A worker process of ``--jobs`` that stops for that exits with this code, its reason left for the pool to say once.
REPEATED_FAILURE_EXIT = 3


class RepeatedFailureError(HPSearchError):
    """The first trials of a study all failed with one reason: the run stops rather than spend its budget."""


def load_objective(entry_point: str) -> Objective:
    """The objective ``entry_point`` names, imported and checked to take a trial; a missing one, one that is not
    callable or takes no argument is one error line, before any trial."""
    objective = resolve(entry_point, "objective")
    try:
        signature = inspect.signature(objective)
    except (TypeError, ValueError):  # a builtin or an extension's callable: its call will tell
        return objective
    try:
        signature.bind(None)
    except TypeError:
        shown = f"{getattr(objective, '__name__', 'it')}({', '.join(signature.parameters)})"
        raise EntryPointError(f"objective {entry_point!r}: {shown} does not take a trial; an Optuna objective is "
                              f"fn(trial) -> float") from None
    return objective


def check_loop_options(spec: StudySpec, *, batch: object = None, files: TrialFiles | None = None) -> None:
    """Refuse what only hpsearch's training loop does when the trials are the user's objective."""
    if spec.objective is None:
        return
    where = f"objective {spec.objective!r} trains itself"
    if batch is not None:
        raise ConfigError(f"--batch {batch} stacks trials of hpsearch's training loop; {where} (use --jobs)")
    if files is not None and files.checkpoint_dir is not None:
        raise ConfigError(f"--checkpoint-dir {files.checkpoint_dir} holds hpsearch's training loop's checkpoints; "
                          f"{where}")
    if files is not None and files.artifact_dir is not None:
        raise ConfigError(f"--artifacts stores hpsearch's training loop's learning curves and checkpoints; {where} "
                          f"(its reported curve is in the storage: hpsearch report)")


def optimize_objective(study: optuna.Study, spec: StudySpec, *, callbacks: Sequence[TrialCallback] = (),
                       timeout: float | None = None, worker: int = 0) -> None:
    """Run trials of ``spec.objective`` on ``study`` in this process, one at a time, until the study holds
    ``spec.total_trials`` finished ones; stop with RepeatedFailureError when its first trials all fail alike."""
    objective = load_objective(spec.objective or "")
    prepare_study(study, spec, worker)
    deadline = time.monotonic() + timeout if timeout is not None else None
    run_trials(study, spec.total_trials, ObjectiveSteps(study, spec, objective, callbacks), deadline)


class ObjectiveSteps:
    """Steps of one whole trial of the user's objective each (hpsearch.search.loop.TrialSteps)."""

    def __init__(self, study: optuna.Study, spec: StudySpec, objective: Objective,
                 callbacks: Sequence[TrialCallback] = ()) -> None:
        self.study, self.spec, self.objective, self.callbacks = study, spec, objective, callbacks

    def in_flight(self) -> int:
        return 0

    def step(self, ask: bool) -> int:
        asked = ask_within_budget(self.study, self.spec.total_trials)
        if asked is None:
            return 0
        trial, room = asked
        frozen = run_objective_trial(self.study, trial, self.objective, self.spec.space)
        for callback in self.callbacks:
            callback(self.study, frozen)
        if frozen.state == TrialState.FAIL:
            check_repeated_failure(self.study, self.spec.objective)
        return room

    def abandon(self, exc: BaseException) -> None:
        pass  # run_objective_trial gives up its own trial

    def close(self) -> None:
        pass


def run_objective_trial(study: optuna.Study, trial: optuna.Trial, objective: Objective,
                        space: SearchSpace) -> FrozenTrial:
    """Call ``objective`` on ``trial`` (through DeclaredTrial when ``space`` declares parameters) and tell the
    outcome: COMPLETE with the float it returned, PRUNED when it raised TrialPruned, FAIL with the exception's line
    (or a value that is no finite float) as the reason. Ctrl-C and SIGTERM interrupt it: the next run retries it."""
    record = replace(read_trial(trial).identity(), worker=f"{socket.gethostname()}:{os.getpid()}")
    started = time.perf_counter()
    try:
        write_trial(trial, record)
    except BaseException as exc:  # Ctrl-C or SIGTERM between ask and the objective: it must not stay RUNNING
        give_up(study, trial, record, exc)
        raise
    given = DeclaredTrial(trial, space) if space.params else trial
    value: float | None = None
    with beating(study, trial):
        try:
            returned = objective(given)
            value, status, reason = _checked_value(returned)
        except optuna.TrialPruned:
            status, reason = Status.PRUNED, None
        except Exception as exc:  # the objective's error fails this trial, not the search
            status, reason = Status.FAILED, _exception_line(exc)
        except BaseException as exc:
            give_up(study, trial, replace(record, seconds=time.perf_counter() - started), exc)
            raise
    reported = list(storage_of(study).get_trial(trial_id(trial)).intermediate_values.items())
    if status == Status.PRUNED:
        reason = f"pruned at step {reported[-1][0]}" if reported else "pruned before its first report"
    diagnosis = diagnose_reported([v for _, v in sorted(reported)], study.direction.name.lower() == "maximize")
    write_trial(trial, replace(record, status=status, reason=reason, seconds=time.perf_counter() - started,
                               diagnosis=diagnosis.to_dict() if diagnosis is not None else None))
    if status == Status.COMPLETED:
        return study.tell(trial, value)
    if status == Status.FAILED:
        logger.warning("trial %d of %s failed: %s", trial.number, study.study_name, reason)
    return study.tell(trial, state=TrialState.PRUNED if status == Status.PRUNED else TrialState.FAIL)


def _checked_value(returned: Any) -> tuple[float | None, Status, str | None]:
    """The objective's return as a trial's value, or why it is none: Optuna's rule, one finite float."""
    try:
        value = float(returned)
    except (TypeError, ValueError):
        return None, Status.FAILED, f"the objective returned {returned!r}, not a float"
    if not math.isfinite(value):
        return None, Status.FAILED, f"the objective returned {value}"
    return value, Status.COMPLETED, None


def _exception_line(exc: BaseException) -> str:
    """``ValueError: the message``: the exception's type and the first line of its message."""
    message = next((line for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def check_repeated_failure(study: optuna.Study, objective: str | None = None) -> None:
    """Raise RepeatedFailureError when ``study``'s finished trials, at least FIRST_FAILURES of them, all failed with
    one reason: nothing has worked yet and the same error would fail the rest of the budget."""
    finished = finished_trials(study)
    if len(finished) < FIRST_FAILURES or any(t.state != TrialState.FAIL for t in finished):
        return
    reasons = {read_trial(t).reason for t in finished}
    reason = reasons.pop()
    if reasons or reason is None:
        return
    what = f"objective {objective!r}" if objective else "the trials' code"
    raise RepeatedFailureError(f"the first {len(finished)} trials of study {study.study_name!r} all failed with "
                               f"{reason!r}; stopped rather than fail the rest alike: fix {what} and run again")


class DeclaredTrial:
    """The trial an objective is handed when the spec declares some of its parameters: a suggest call of a declared
    name draws from the declared range (a grid's points, a coarse-to-fine stage's narrowed range) in place of the
    one in the objective's code; every other call is the Optuna trial's own."""

    def __init__(self, trial: optuna.Trial, space: SearchSpace) -> None:
        self._trial = trial
        self._declared: dict[str, ParamSpec] = {param.name: param for param in space.params}

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        if name in self._declared:
            return self._declared[name].suggest(self._trial)
        return self._trial.suggest_float(name, low, high, step=step, log=log)

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        if name in self._declared:
            return self._declared[name].suggest(self._trial)
        return self._trial.suggest_int(name, low, high, step=step, log=log)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        if name in self._declared:
            return self._declared[name].suggest(self._trial)
        return self._trial.suggest_categorical(name, choices)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


def run_fixed(entry_point: str, params: dict[str, Any]) -> float:
    """The objective's value with ``params`` fixed (Optuna's FixedTrial: its reports go nowhere, it is never
    pruned): an exported best trial, run again."""
    returned = load_objective(entry_point)(optuna.trial.FixedTrial(params))
    value, _, reason = _checked_value(returned)
    if value is None:
        raise HPSearchError(f"objective {entry_point!r} with the exported params: {reason}")
    return value
