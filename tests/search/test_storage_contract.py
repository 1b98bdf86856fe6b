"""One contract, run on every storage hpsearch opens, for what hpsearch adds to a storage: the cache that answers
Optuna's reads of a database, the heartbeats (the process's beat thread, the journal's own), the study and trial
records, and the retries of dead workers' trials. Modelled on Optuna's optuna/testing/storages.py: one fixture
parametrized over the storage modes.

PostgreSQL, MySQL (MariaDB) and Redis run on a database of the test's own on 127.0.0.1; each is skipped when its
server is down, except on CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import fresh_mysql_database, fresh_postgres_database, fresh_redis_database
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from storage_reader import as_json, study_view, trial_view

from hpsearch.search.records import StudyRecord, TrialRecord, write_record, write_trial
from hpsearch.search.setup import fail_stale_trials_quietly
from hpsearch.search.storages import open_storage
from hpsearch.search.storages.beats import beating
from hpsearch.search.storages.optuna_private import (
    LocalTrialsCache,
    read_trials_locally,
    record_heartbeat,
    storage_of,
    trial_id,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),  # ask() outside study.optimize, on purpose
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]  # heartbeats and retries

STORAGE_MODES = ["memory", "journal", "sqlite", "postgresql", "mysql", "redis"]
# Memory lives in one process: no other process can read it or work on it, and open_storage gives it no heartbeats
# (no other worker could find its trials stale). So only the cases that apply to it are generated for it, rather
# than cases skipped for ever.
SHARED_MODES = [mode for mode in STORAGE_MODES if mode != "memory"]
# The storages whose studies a worker reads through hpsearch's cache (LocalTrialsCache).
DATABASE_MODES = {"sqlite", "postgresql", "mysql"}
HEARTBEAT = 1  # seconds, the shortest interval: a silent trial is stale after a few seconds
STALE_WAIT = 30  # seconds to wait for a silent trial to be found stale before giving up
READ_WAIT = 60  # seconds to wait for the reader process's answer
TESTS = Path(__file__).resolve().parents[1]

STUDY_RECORD = StudyRecord(
    spec={"study": {"name": "contract", "strategy": "tpe"}, "space": {"lr": {"low": 1e-4, "high": 1.0, "log": True}}},
    versions={"hpsearch": "0.0.test", "optuna": "5.test"},
    lr_range_test={"suggested_lr": 0.003, "lrs": [1e-4, 1e-3, 1e-2], "losses": [2.3, 1.9, None]},
    coarse_to_fine={"name": "family", "stage": 2, "spec": {"study": {"strategy": "coarse-to-fine"}}})
TRIAL_RECORD = TrialRecord(
    config={"lr": 0.01, "epochs": 3, "model_args": {"hidden": [64, 32]}}, seed=7, worker="host:4321",
    checkpoint="checkpoints/contract/trial-0.pt",
    history=[{"epoch": 1, "val_loss": 0.9, "train_loss": None}, {"epoch": 2, "val_loss": 0.25, "train_loss": 0.3}],
    diagnosis={"label": "ok", "rule": "none matched"}, seconds=1.5, status="completed", reason="ran its epochs",
    resumed_from_epoch=1, carried_from="earlier trial 3")


class Reader:
    """Another process that reads a study back through open_storage (tests/storage_reader.py), started at the first
    read: one for the session, a storage opened anew for each read."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None

    def read(self, url: str, study: str) -> dict[str, Any]:
        """storage_reader.study_view of ``study`` at ``url``, as the other process reads it."""
        process = self._process = self._process or self._start()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps({"url": url, "study": study}) + "\n")
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], READ_WAIT)
        assert ready, f"the reader process gave no answer in {READ_WAIT} s"
        line = process.stdout.readline()
        assert line, f"the reader process ended (exit status {process.wait()})"
        answer = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer

    def close(self) -> None:
        if self._process is not None:
            self._process.communicate(timeout=READ_WAIT)

    @staticmethod
    def _start() -> subprocess.Popen[str]:
        path = os.pathsep.join(filter(None, [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH")]))
        return subprocess.Popen([sys.executable, str(TESTS / "storage_reader.py")], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": path})


@pytest.fixture(scope="session")
def reader() -> Iterator[Reader]:
    reader = Reader()
    yield reader
    reader.close()


@pytest.fixture
def url(mode: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty storage of ``mode`` (Optuna's StorageSupplier), a database of its own on a server."""
    servers = {"postgresql": fresh_postgres_database, "mysql": fresh_mysql_database, "redis": fresh_redis_database}
    if mode in servers:
        with servers[mode]() as database:
            yield database
        return
    yield {"memory": "memory", "journal": f"journal:{tmp_path / 'hp.journal'}",
           "sqlite": f"sqlite:///{tmp_path / 'hp.db'}"}[mode]


def worker(url: str, name: str = "contract", max_retries: int = 1) -> optuna.Study:
    """A worker's study on ``url``, opened as hpsearch's workers open it: heartbeats on, on a database its reads
    answered by hpsearch's cache, and its trials read once before it starts one (as setup.prepare_study does)."""
    storage = open_storage(url, heartbeat=HEARTBEAT, max_retries=max_retries)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    read_trials_locally(study)
    study.get_trials(deepcopy=False)  # the budget's read
    return study


def start_trial(study: optuna.Study, record: TrialRecord) -> optuna.Trial:
    """A trial started as hpsearch starts one: asked, its params suggested, the record of what it is written."""
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    trial.suggest_int("width", 16, 128, log=True)
    trial.suggest_categorical("activation", ["relu", "tanh"])
    write_trial(trial, record)
    return trial


def states(trials: Sequence[FrozenTrial] | dict[str, Any]) -> list[str]:
    """The state of each trial by number, from trials or from a study_view."""
    if isinstance(trials, dict):
        return [trial["state"] for trial in trials["trials"]]
    return [trial.state.name for trial in trials]


@pytest.mark.parametrize("mode", STORAGE_MODES)
def test_what_a_worker_writes_reads_back_equal_in_another_process(mode: str, url: str, reader: Reader) -> None:
    """Records, params, values and reports of a pruned (taken from the queue), a finished and a running trial read
    back the same in another process as the worker reads them itself, through its cache on a database. Memory, which
    no other process can read, is read through another study object on the same storage."""
    assert None not in asdict(TRIAL_RECORD).values()  # every field set: one lost on the way shows
    study = worker(url)
    assert isinstance(storage_of(study), LocalTrialsCache) == (mode in DATABASE_MODES)  # the cache is what is read
    write_record(study, STUDY_RECORD)
    study.enqueue_trial({"lr": 0.01, "width": 64}, user_attrs={"queued_by": "contract"})
    pruned_record = replace(TRIAL_RECORD, seed=8, status="pruned", reason="pruned at epoch 1")
    pruned = start_trial(study, pruned_record.identity())
    pruned.report(2.0, 0)
    write_trial(pruned, pruned_record)
    study.tell(pruned, state=TrialState.PRUNED)
    completed = start_trial(study, TRIAL_RECORD.identity())
    for step, value in enumerate([0.9, float("inf"), float("nan"), 0.25]):
        completed.report(value, step)
    write_trial(completed, TRIAL_RECORD)
    study.tell(completed, 0.25)
    running_record = replace(TRIAL_RECORD, seed=9).identity()
    running = start_trial(study, running_record)
    running.report(0.5, 0)
    record_heartbeat(study, running)  # two beats: a journal writes the second (the first is the trial's start)
    record_heartbeat(study, running)

    if mode == "memory":
        read = study_view(optuna.load_study(study_name="contract", storage=storage_of(study)))
    else:
        read = reader.read(url, "contract")
    assert read == study_view(study)
    assert [trial_view(storage_of(study).get_trial(trial_id(trial))) for trial in study.get_trials()] == read["trials"]
    assert states(read) == ["PRUNED", "COMPLETE", "RUNNING"]
    assert read["record"] == as_json(asdict(STUDY_RECORD))
    assert [trial["record"] for trial in read["trials"]] == as_json(
        [asdict(pruned_record), asdict(TRIAL_RECORD), asdict(running_record)])


@pytest.mark.parametrize("mode", SHARED_MODES)
def test_two_workers_see_each_others_trials_as_they_start_and_end(mode: str, url: str) -> None:
    first, second = worker(url), worker(url)
    ours = start_trial(first, TRIAL_RECORD.identity())
    theirs = start_trial(second, replace(TRIAL_RECORD, seed=8).identity())
    assert (ours.number, theirs.number) == (0, 1)
    assert study_view(first) == study_view(second)
    assert states(study_view(first)) == ["RUNNING", "RUNNING"]

    theirs.report(0.5, 0)
    write_trial(theirs, replace(TRIAL_RECORD, seed=8))
    second.tell(theirs, 0.5)
    assert study_view(first) == study_view(second)
    assert states(study_view(first)) == ["RUNNING", "COMPLETE"]

    first.tell(ours, state=TrialState.FAIL)
    assert study_view(first) == study_view(second)
    assert states(study_view(second)) == ["FAIL", "COMPLETE"]


class Workers:
    """Two workers of one study, each with a storage of its own on the same URL, and what that study holds as a
    plain reader (no heartbeats, no hpsearch cache) reads it."""

    def __init__(self, url: str, name: str, max_retries: int) -> None:
        self.first, self.second = (worker(url, name, max_retries) for _ in range(2))
        self._reader = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=None))

    def stored(self) -> list[FrozenTrial]:
        return self._reader.get_trials()

    def look_for_stale_trials_at_once(self) -> None:
        """Both workers look for stale trials at the same moment, at its worst: the second has listed the stale
        trials when the first fails them (and queues their retries), and only then writes its own failures."""
        storage = storage_of(self.second)
        fail = storage.set_trial_state_values

        def first_fails_them_meanwhile(trial: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
            del storage.set_trial_state_values  # the first worker looks once
            fail_stale_trials_quietly(self.first)
            return fail(trial, state, values)

        storage.set_trial_state_values = first_fails_them_meanwhile  # type: ignore[method-assign]
        try:
            fail_stale_trials_quietly(self.second)
        finally:
            vars(storage).pop("set_trial_state_values", None)


def killed_after_two_beats(study: optuna.Study) -> optuna.Trial:
    """A trial whose worker beat for it twice and was then killed: it stays RUNNING, and beats no more."""
    trial = start_trial(study, TRIAL_RECORD.identity())
    record_heartbeat(study, trial)
    record_heartbeat(study, trial)
    return trial


@pytest.mark.parametrize("mode", SHARED_MODES)
def test_a_dead_workers_trial_is_failed_once_and_queued_again_up_to_max_retries(mode: str, url: str) -> None:
    """Two studies wait together (a trial is stale only after a few seconds): one whose workers retry a trial once,
    one whose workers never do."""
    retried, not_retried = Workers(url, "retried", max_retries=1), Workers(url, "not-retried", max_retries=0)
    dead = killed_after_two_beats(retried.first)
    killed_after_two_beats(not_retried.first)
    alive = start_trial(retried.second, TRIAL_RECORD.identity())
    with beating(retried.second, alive):  # the process's beat thread beats for it
        deadline = time.monotonic() + STALE_WAIT
        while "RUNNING" in (states(retried.stored())[0], states(not_retried.stored())[0]):
            assert time.monotonic() < deadline, f"a silent trial was not failed in {STALE_WAIT} s"
            time.sleep(0.2)
            retried.look_for_stale_trials_at_once()
            not_retried.look_for_stale_trials_at_once()
        assert states(retried.stored()) == ["FAIL", "RUNNING", "WAITING"]  # one retry: failed once, alive kept
        assert states(not_retried.stored()) == ["FAIL"]
        retry = retried.stored()[2]
        assert (retry.params, RetryHeartbeatStaleTrialCallback.retry_history(retry)) == (dead.params, [dead.number])

        # A worker takes the retry: it starts as alive as a new trial, whatever the dead trial's last beat.
        taken = retried.first.ask()
        with beating(retried.first, taken):
            retried.look_for_stale_trials_at_once()
            assert (taken.number, states(retried.stored())) == (2, ["FAIL", "RUNNING", "RUNNING"])
