"""``--jobs N``: run a stored study in N worker processes on one storage and follow it from here.

Each worker is hpsearch.search.worker_process (the worker ``hpsearch worker STUDY`` runs, told its options as
JSON rather than as CLI flags) in a process of its own (its own session, so a Ctrl-C reaches only this
coordinator, which then stops the workers with SIGTERM: each marks its running trial interrupted and exits).
CPU threads are split between the workers, and ``devices`` are handed out round-robin. Progress comes from
polling the storage, the one place all workers write.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.errors import HPSearchError
from hpsearch.search.objective import NO_FILES, TrialFiles, interrupted
from hpsearch.search.records import RECORD_ATTR, own_trials, read_record, read_trial
from hpsearch.search.storages import DEFAULT_STORAGE
from hpsearch.search.storages.optuna_private import drop_idle_connections, storage_of, trial_id
from hpsearch.search.user_objective import REPEATED_FAILURE_EXIT, check_repeated_failure
from hpsearch.search.worker import WorkerOptions

__all__ = ["WorkerPool"]

logger = logging.getLogger(__name__)

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]
POLL_SECONDS = 0.5
_STOP_GRACE = 30.0  # seconds a worker gets to mark its trial interrupted after SIGTERM


@dataclass(frozen=True)
class WorkerPool:
    """How to start the workers: storage URL and heartbeat settings they share, and their number."""

    storage: str
    jobs: int
    devices: tuple[str, ...] = ()
    heartbeat: int | None = None
    max_retries: int | None = None
    durable: bool = False  # fsync every write (``worker --durable``)
    files: TrialFiles = NO_FILES
    trust: tuple[str, ...] = ()  # what the workers may import: the run's own entry points (``worker --trust``)
    batch: str | None = None  # trials each worker trains at once (``worker --batch``: a number or auto)

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise HPSearchError(f"jobs must be >= 1, got {self.jobs}")
        if self.storage == "memory":
            raise HPSearchError("--jobs needs a storage that processes share, not memory (--storage memory)")

    def run(self, study: optuna.Study, callbacks: Sequence[TrialCallback] = (), timeout: float | None = None) -> None:
        """Run ``study`` in ``jobs`` workers until they stop; each finished trial goes to ``callbacks``."""
        workers = [self._start(study.study_name, index, timeout) for index in range(self.jobs)]
        seen: set[int] = set()
        try:
            while any(worker.poll() is None for worker in workers):
                time.sleep(POLL_SECONDS)
                _follow(study, seen, callbacks)
                if REPEATED_FAILURE_EXIT in (worker.returncode for worker in workers):
                    _stop(workers)  # the others' trials would fail alike: interrupted, they are retried next run
                    _fail_orphans(study, workers)
                    break
        except KeyboardInterrupt:
            drop_idle_connections(study)
            _stop(workers)
            _fail_orphans(study, workers)
            raise
        _follow(study, seen, callbacks)
        _check_exits(study, workers)

    @classmethod
    def for_run(cls, storage: str | None, jobs: int, devices: str | None, **settings: Any) -> WorkerPool | None:
        """The pool ``run --jobs N --devices a,b`` asks for (``settings``: the other fields); None for one process
        on its own device."""
        device_list = tuple(d.strip() for d in devices.split(",") if d.strip()) if devices else ()
        if jobs == 1 and not device_list:
            return None
        return cls(storage=storage or DEFAULT_STORAGE, jobs=jobs, devices=device_list, **settings)

    def worker_options(self, study_name: str, index: int, timeout: float | None = None) -> WorkerOptions:
        """What worker ``index`` is told: this pool's storage and files, its share of the CPU threads, its device."""
        return WorkerOptions(
            study=study_name, storage=self.storage, heartbeat=self.heartbeat, max_retries=self.max_retries,
            durable=self.durable, checkpoint_dir=_text(self.files.checkpoint_dir),
            artifact_dir=_text(self.files.artifact_dir), curve_writer=self.files.curve_writer,
            device=self.devices[index % len(self.devices)] if self.devices else None,
            threads=max(1, (os.cpu_count() or 1) // self.jobs), index=index, timeout=timeout, trust=self.trust,
            batch=self.batch)

    def worker_command(self, study_name: str, index: int, timeout: float | None = None) -> list[str]:
        """The command line of worker ``index``: the search layer's worker process, hpsearch.search.worker_process."""
        return [sys.executable, "-m", "hpsearch.search.worker_process",
                self.worker_options(study_name, index, timeout).to_json()]

    def _start(self, study_name: str, index: int, timeout: float | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.worker_command(study_name, index, timeout), start_new_session=True)


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _follow(study: optuna.Study, seen: set[int], callbacks: Sequence[TrialCallback]) -> None:
    """Hand each newly finished trial to the callbacks, as ``study.optimize`` would in one process."""
    for trial in own_trials(study):
        if trial.state.is_finished() and trial.number not in seen:
            seen.add(trial.number)
            for callback in callbacks:
                callback(study, trial)


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=_STOP_GRACE)
        except subprocess.TimeoutExpired:
            worker.kill()


def _fail_orphans(study: optuna.Study, workers: list[subprocess.Popen[bytes]]) -> None:
    """After a stop, a trial of ours still RUNNING (a worker killed after the grace, or interrupted inside a
    storage write before it could tell) is failed as interrupted, so the next run retries it."""
    ours = {f"{socket.gethostname()}:{worker.pid}" for worker in workers}
    storage = storage_of(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        stored = read_trial(trial)
        if stored.worker in ours:
            storage.set_trial_user_attr(trial_id(trial), RECORD_ATTR, interrupted(stored.identity()).to_dict())
            storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)


def _check_exits(study: optuna.Study, workers: list[subprocess.Popen[bytes]]) -> None:
    """A worker that stopped on a user error stops the run; one killed by a signal was retried around. A worker
    that stopped because the first trials all failed alike left the reason to be said here, once."""
    codes = [worker.returncode for worker in workers]
    if REPEATED_FAILURE_EXIT in codes:
        check_repeated_failure(study, read_record(study).table("study").get("objective"))
    if 130 in codes:
        raise KeyboardInterrupt
    for index, code in enumerate(codes):
        if code > 0:
            raise HPSearchError(f"worker {index} of {len(workers)} stopped with exit code {code} (its error is above)")
    killed = [index for index, code in enumerate(codes) if code < 0]
    if killed:
        logger.warning("worker(s) %s were killed; their trials were retried by the others",
                       ", ".join(map(str, killed)))
