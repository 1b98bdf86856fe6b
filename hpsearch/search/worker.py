"""One worker's loop: run trials of a stored study until the study, across all its workers, holds its budget.

Any number of these may run on one storage, in one machine or many. Before each trial a worker
fails the trials of dead workers (heartbeats) and counts what is finished and running; it stops
when the finished trials reach the budget, and waits while the rest of the budget is running
elsewhere, so a killed worker's trial is retried rather than lost.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage

from hpsearch.data import TaskData
from hpsearch.devices import resolve_device
from hpsearch.errors import ConfigError
from hpsearch.search.batched_study import check_files_unbatched, optimize_batched, resolve_batch
from hpsearch.search.beats import beating
from hpsearch.search.budget import budget
from hpsearch.search.objective import (
    NO_FILES,
    Objective,
    TrialCallback,
    TrialFiles,
    ask_within_budget,
    finish_trial,
    give_up,
)
from hpsearch.search.optuna_private import heartbeat_interval, in_optimize_loop, take_stop_request
from hpsearch.search.records import read_record
from hpsearch.search.setup import fail_stale_trials_quietly, prepare_study
from hpsearch.search.summary import load_family
from hpsearch.search.trust import check_trusted
from hpsearch.spec import StudySpec
from hpsearch.storage import GRACE_BEATS, describe_storage
from hpsearch.task import check_task
from hpsearch.training import config_data

__all__ = ["join_study", "optimize_to_budget", "stored_spec"]

logger = logging.getLogger(__name__)

# Seconds between looks at the storage while other workers run the last trials of the budget.
WAIT_POLL = 1.0


def optimize_to_budget(study: optuna.Study, spec: StudySpec, data: TaskData, *, callbacks: Sequence[TrialCallback] = (),
                       timeout: float | None = None, files: TrialFiles = NO_FILES, worker: int = 0) -> None:
    """Run trials of ``study`` in this process until it holds ``spec.total_trials`` finished ones."""
    prepare_study(study, spec, worker)
    deadline = time.monotonic() + timeout if timeout is not None else None
    objective = Objective(spec, data, files)
    # Without heartbeats a RUNNING trial may be a dead one that never ends: do not wait for it.
    heartbeats = heartbeat_interval(study)
    waiting_since: float | None = None
    warned = False
    stale_checked = time.monotonic()  # prepare_study has just failed the stale trials
    room = 0  # places left in the budget after this worker's last trial, as last counted
    while deadline is None or time.monotonic() < deadline:
        if heartbeats and time.monotonic() - stale_checked >= heartbeats:
            fail_stale_trials_quietly(study)  # retries of dead workers' trials join the queue
            stale_checked = time.monotonic()
        if room >= 1:  # known free without a look: one read per trial fewer (the surplus check still looks)
            room = 0
        else:
            state = budget(study)
            if state.finished >= spec.total_trials:
                return
            if heartbeats and state.finished + state.running >= spec.total_trials:
                waited = time.monotonic() - (waiting_since := waiting_since or time.monotonic())
                if not warned and waited > heartbeats:
                    warned = True
                    logger.warning("waiting for %d running trial(s) of %s in other workers; one whose worker was "
                                   "killed is retried after %d s without a heartbeat", state.running,
                                   study.study_name, GRACE_BEATS * heartbeats)
                time.sleep(WAIT_POLL)
                continue
        waiting_since, warned = None, False
        # Optuna's samplers and callbacks may call study.stop() (a grid does when it is done), which
        # Optuna allows only inside its optimize loop: this is that loop, so say so.
        with in_optimize_loop(study):
            try:
                room = _run_trial(study, objective, spec.total_trials, callbacks)
            except UpdateFinishedTrialError:
                logger.warning("a trial of %s outlived its heartbeat and was failed by another worker; its retry "
                               "runs it again", study.study_name)
        if take_stop_request(study):
            return


def _run_trial(study: optuna.Study, objective: Objective, total: int, callbacks: Sequence[TrialCallback]) -> int:
    """Ask, train, tell: ``study.optimize``'s trial step, by hand because a trial that two workers started
    at once for the last place in the budget must go back to the queue, not run as one too many.
    Returns the places the budget has left beyond this trial and those started before it.

    The process's heartbeat thread beats while the trial runs (hpsearch.search.beats), and Optuna's ``tell`` stores
    the outcome (COMPLETE, PRUNED, or FAIL for an error, which is logged and does not stop the worker).
    """
    asked = ask_within_budget(study, total)
    if asked is None:
        return 0
    trial, room = asked
    record = None
    try:
        config, record = objective.start(trial)
    except BaseException as exc:  # Ctrl-C or SIGTERM between ask and train: the trial must not stay RUNNING
        give_up(study, trial, record, exc)
        raise
    failure: RuntimeError | None = None
    with beating(study, trial):
        try:
            result = objective.train(trial, config, record)
        except RuntimeError as exc:  # a training error fails this trial, not the search
            logger.warning("trial %d of %s failed: %s: %s", trial.number, study.study_name, type(exc).__name__, exc)
            failure = exc
        except BaseException as exc:
            give_up(study, trial, record, exc)
            raise
    if failure is not None:
        frozen = give_up(study, trial, record, failure)
    else:
        frozen = finish_trial(study, trial, record, result, objective.spec.metric, objective)
    for callback in callbacks:
        callback(study, frozen)
    return room


def join_study(name: str, storage: BaseStorage, *, device: str | None = None, threads: int | None = None,
               files: TrialFiles = NO_FILES, callbacks: Sequence[TrialCallback] = (),
               worker: int | None = None, timeout: float | None = None, trust: Sequence[str] = (),
               batch: int | str | None = None) -> optuna.Study:
    """Work on the stored study ``name`` (or the stages of a coarse-to-fine family, in order) with the
    spec stored with it, until it holds its budget; return the last study worked on.

    The stored spec's entry points are imported only when ``trust`` allows them (hpsearch.search.trust),
    and the model is built once on the data before the first trial, so an entry point that does not
    import stops the worker with one line before it takes a trial."""
    if threads is not None:
        torch.set_num_threads(threads)
    worker = worker if worker is not None else os.getpid()
    deadline = time.monotonic() + timeout if timeout is not None else None
    family = load_family(name, storage)
    study = family[0]
    follow_stages = study.study_name != name  # a coarse-to-fine family's name, not one stage's
    data: TaskData | None = None
    while True:
        spec = stored_spec(study, storage)
        check_trusted(spec.train, trust, study.study_name)
        if device is not None:
            spec = spec.replace(train=spec.train.replace(device=device))
        if data is None:
            data = config_data(spec.train, resolve_device(spec.train.device))
            check_task(spec.train, data)
        left = deadline - time.monotonic() if deadline is not None else None
        if batch is None:
            optimize_to_budget(study, spec, data, callbacks=callbacks, timeout=left, files=files, worker=worker)
        else:
            check_files_unbatched(files)
            k = resolve_batch(batch, resolve_device(spec.train.device), spec, data)
            optimize_batched(study, spec, data, k, callbacks=callbacks, timeout=left, worker=worker)
        following = _next_stage(study, storage) if follow_stages else None
        if following is None or (deadline is not None and time.monotonic() >= deadline):
            return study
        study = following


def stored_spec(study: optuna.Study, storage: BaseStorage) -> StudySpec:
    """The spec hpsearch stored with ``study``; a study it did not create is a user error."""
    stored = read_record(study).spec
    if stored is None:
        raise ConfigError(f"study {study.study_name!r} in {describe_storage(storage)} was not created by hpsearch; "
                          f"a worker needs the spec that `hpsearch run` stores")
    return StudySpec.from_mapping(stored, source=f"study {study.study_name!r}")


def _next_stage(study: optuna.Study, storage: BaseStorage) -> optuna.Study | None:
    """The coarse-to-fine stage after ``study`` once its coordinator has created it, if there is one."""
    family = read_record(study).coarse_to_fine
    if family is None or family["stage"] >= family["spec"].get("coarse_to_fine", {}).get("stages", 0):
        return None
    deadline = time.monotonic() + 60  # the coordinator narrows the ranges, then creates the next stage
    while time.monotonic() < deadline:
        stages = load_family(family["name"], storage)
        if len(stages) > family["stage"]:
            return stages[family["stage"]]
        time.sleep(WAIT_POLL)
    return None
