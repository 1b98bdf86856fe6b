"""One worker: run trials of a stored study, one at a time or K at once, until the study, across all its
workers, holds its budget.

Any number of these may run on one storage, in one machine or many; hpsearch.search.loop is the loop
around the trials (dead workers' trials, the budget, waiting for the last ones), the same for both.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.storages import BaseStorage

from hpsearch.engine.data import TaskData
from hpsearch.engine.devices import resolve_device
from hpsearch.engine.task import load_checked
from hpsearch.errors import ConfigError
from hpsearch.search.batched_study import check_files_unbatched, optimize_batched, resolve_batch
from hpsearch.search.loop import WAIT_POLL, run_trials
from hpsearch.search.objective import (
    NO_FILES,
    Objective,
    TrialCallback,
    TrialFiles,
    ask_within_budget,
    finish_trial,
    give_up,
)
from hpsearch.search.records import read_record
from hpsearch.search.setup import prepare_study
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import describe_storage, open_storage
from hpsearch.search.storages.beats import beating
from hpsearch.search.summary import load_family
from hpsearch.search.trust import check_trusted
from hpsearch.search.user_objective import check_loop_options, optimize_objective

__all__ = ["OneTrialSteps", "WorkerOptions", "join_study", "optimize_to_budget", "run_worker", "stored_spec"]

logger = logging.getLogger(__name__)

def optimize_to_budget(study: optuna.Study, spec: StudySpec, data: TaskData, *, callbacks: Sequence[TrialCallback] = (),
                       timeout: float | None = None, files: TrialFiles = NO_FILES, worker: int = 0) -> None:
    """Run trials of ``study`` in this process, one at a time, until it holds ``spec.total_trials`` finished ones."""
    prepare_study(study, spec, worker)
    deadline = time.monotonic() + timeout if timeout is not None else None
    run_trials(study, spec.total_trials, OneTrialSteps(study, Objective(spec, data, files), callbacks), deadline)


class OneTrialSteps:
    """Steps of one whole trial each (hpsearch.search.loop.TrialSteps): any model, through train()."""

    def __init__(self, study: optuna.Study, objective: Objective, callbacks: Sequence[TrialCallback]) -> None:
        self.study, self.objective, self.callbacks = study, objective, callbacks

    def in_flight(self) -> int:
        return 0

    def step(self, ask: bool) -> int:
        return _run_trial(self.study, self.objective, self.objective.spec.total_trials, self.callbacks)

    def abandon(self, exc: BaseException) -> None:
        pass  # _run_trial gives up its own trial

    def close(self) -> None:
        pass


def _run_trial(study: optuna.Study, objective: Objective, total: int, callbacks: Sequence[TrialCallback]) -> int:
    """Ask, train, tell: ``study.optimize``'s trial step, by hand because a trial that two workers started
    at once for the last place in the budget must go back to the queue, not run as one too many.
    Returns the places the budget has left beyond this trial and those started before it.

    The process's heartbeat thread beats while the trial runs (hpsearch.search.storages.beats), and Optuna's
    ``tell`` stores the outcome (COMPLETE, PRUNED, or FAIL for an error, which is logged and does not stop the worker).
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
    import stops the worker with one line before it takes a trial. A study of the user's objective runs it
    (hpsearch.search.user_objective), imported and checked the same way before the first trial."""
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
        check_trusted(spec.train, trust, study.study_name, spec.objective)
        if spec.objective is not None:
            check_loop_options(spec, batch=batch, files=files)
            left = deadline - time.monotonic() if deadline is not None else None
            optimize_objective(study, spec, callbacks=callbacks, timeout=left, worker=worker)
        else:
            data = _optimize_loop(study, spec, data, device=device, files=files, callbacks=callbacks,
                                  deadline=deadline, worker=worker, batch=batch)
        following = _next_stage(study, storage) if follow_stages else None
        if following is None or (deadline is not None and time.monotonic() >= deadline):
            return study
        study = following


def _optimize_loop(study: optuna.Study, spec: StudySpec, data: TaskData | None, *, device: str | None,
                   files: TrialFiles, callbacks: Sequence[TrialCallback], deadline: float | None, worker: int,
                   batch: int | str | None) -> TaskData:
    """A worker's run of hpsearch's loop on ``study``: its data loaded once (``data`` from a stage before), one
    trial at a time or ``batch`` at once; returns the data, for the next stage."""
    if device is not None:
        spec = spec.replace(train=spec.train.replace(device=device))
    if data is None:
        data = load_checked(spec.train)
    timeout = deadline - time.monotonic() if deadline is not None else None
    if batch is None:
        optimize_to_budget(study, spec, data, callbacks=callbacks, timeout=timeout, files=files, worker=worker)
    else:
        check_files_unbatched(files)
        k = resolve_batch(batch, resolve_device(spec.train.device), spec, data)
        optimize_batched(study, spec, data, k, callbacks=callbacks, timeout=timeout, worker=worker)
    return data


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


@dataclass(frozen=True)
class WorkerOptions:
    """What one worker process needs, as the pool hands it over (JSON on its command line): the study and its
    storage with the heartbeat settings the run shares, the trials' files, and this worker's own device, threads,
    number (which seeds its sampler apart), time limit, trusted entry points and batch."""

    study: str
    storage: str | None = None  # None: the default storage
    heartbeat: int | None = None
    max_retries: int | None = None
    durable: bool = False
    checkpoint_dir: str | None = None
    artifact_dir: str | None = None
    curve_writer: str | None = None
    device: str | None = None
    threads: int | None = None
    index: int | None = None
    timeout: float | None = None
    trust: tuple[str, ...] = ()
    batch: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerOptions:
        values = json.loads(text)
        return cls(**{**values, "trust": tuple(values.get("trust", ()))})

    def files(self) -> TrialFiles:
        return TrialFiles(Path(self.checkpoint_dir) if self.checkpoint_dir else None,
                          Path(self.artifact_dir) if self.artifact_dir else None, self.curve_writer)


def run_worker(options: WorkerOptions, callbacks: Sequence[TrialCallback] = (), storage: BaseStorage | None = None,
               ) -> optuna.Study:
    """Work on the study ``options`` name until it holds its budget (join_study), on ``storage`` when the caller
    opened it already, else on the storage as ``options`` say."""
    if storage is None:
        settings = {key: value for key, value in (("heartbeat", options.heartbeat),
                                                  ("max_retries", options.max_retries)) if value is not None}
        storage = open_storage(options.storage, durable=options.durable, **settings)
    files = options.files()
    files.prepare(options.study)
    return join_study(options.study, storage, device=options.device, threads=options.threads, files=files,
                      callbacks=callbacks, worker=options.index, timeout=options.timeout, trust=options.trust,
                      batch=options.batch)
