"""Optuna's private names that hpsearch uses exist in the installed Optuna (hpsearch.search.storages.optuna_private)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import cut_a_read_short, fresh_postgres_database
from optuna.trial import FrozenTrial, TrialState

from hpsearch.search.storages import open_storage
from hpsearch.search.storages.optuna_private import (
    LocalTrialsCache,
    check_available,
    drop_idle_connections,
    in_optimize_loop,
    read_trials_locally,
    requeue,
    storage_of,
    take_stop_request,
)


def test_every_private_name_hpsearch_uses_exists_in_this_optuna() -> None:
    assert check_available() == [], (f"optuna {optuna.__version__} lacks these; "
                                     "update hpsearch/search/storages/optuna_private/")


def test_a_requeued_trial_is_asked_again_and_a_stop_inside_the_loop_is_seen_once() -> None:
    study = optuna.create_study()
    trial = study.ask()
    requeue(study, trial)
    assert study.trials[0].state == optuna.trial.TrialState.WAITING
    with in_optimize_loop(study):
        again = study.ask()
        study.stop()  # allowed only inside the optimize loop
    assert again.number == trial.number
    assert take_stop_request(study) and not take_stop_request(study)


@pytest.mark.parametrize("dropped", [True, False], ids=["dropped", "kept"])
def test_a_write_after_a_read_cut_short_succeeds_once_idle_connections_are_dropped(dropped: bool,
                                                                                  tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/hp.db", heartbeat=None))
    trials = [study.ask() for _ in range(3)]
    held: list[object] = []
    cut_a_read_short(storage_of(study)._backend.engine, tmp_path / "hp.db", held)
    if dropped:
        drop_idle_connections(study)
        study.tell(trials[0], state=TrialState.FAIL)
        assert study.trials[0].state == TrialState.FAIL
    else:  # the connection's stale snapshot refuses the write at once: what the drop is for
        with pytest.raises(optuna.exceptions.StorageInternalError):
            study.tell(trials[0], state=TrialState.FAIL)


class CachedStudy:
    """A database's study read through a LocalTrialsCache, another worker's view of it, and the reads that
    reached the database once ``count_reads`` was called."""

    def __init__(self, url: str) -> None:
        self.study = optuna.create_study(study_name="s", storage=open_storage(url, heartbeat=None))
        read_trials_locally(self.study)
        self.cache = storage_of(self.study)
        assert isinstance(self.cache, LocalTrialsCache)
        self.elsewhere = optuna.load_study(study_name="s", storage=open_storage(url, heartbeat=None))
        self.reads: list[int] = []

    def count_reads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        backend = self.cache._backend
        for name in ("_get_trials", "get_trial"):
            remote_read = getattr(backend, name)
            monkeypatch.setattr(backend, name,
                                lambda *a, _read=remote_read, **k: (self.reads.append(1), _read(*a, **k))[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def cached(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CachedStudy]:
    """A CachedStudy on SQLite, and on PostgreSQL (skipped locally when its server is down, never on CI)."""
    if request.param == "sqlite":
        yield CachedStudy(f"sqlite:///{tmp_path / 'hp.db'}")
        return
    with fresh_postgres_database() as url:
        yield CachedStudy(url)


def test_finished_trials_are_read_again_only_when_a_trial_has_finished(cached: CachedStudy,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    study, elsewhere, reads = cached.study, cached.elsewhere, cached.reads
    running = study.ask()
    running.report(0.5, 0)
    elsewhere.tell(elsewhere.ask(), 1.0)

    cached.count_reads(monkeypatch)
    assert [t.value for t in study.get_trials(states=(TrialState.COMPLETE,))] == [1.0]
    assert [t.value for t in study.get_trials(states=(TrialState.COMPLETE,))] == [1.0]
    assert len(reads) == 1  # the second read: nothing finished since, answered from the cache
    running.report(0.25, 1)
    assert len(study.get_trials(states=(TrialState.RUNNING,))[0].intermediate_values) == 2  # others read as before
    elsewhere.tell(elsewhere.ask(), 2.0)
    assert [t.value for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))] == [1.0, 2.0]
    study.tell(running, 0.1)
    assert [t.value for t in study.get_trials(states=(TrialState.COMPLETE,))] == [0.1, 1.0, 2.0]


def test_reads_of_unfinished_states_none_holds_need_no_remote_read(cached: CachedStudy,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    study, elsewhere, reads = cached.study, cached.elsewhere, cached.reads
    study.tell(study.ask(), 1.0)
    assert len(study.get_trials()) == 1  # fills the cache
    cached.count_reads(monkeypatch)
    assert study.get_trials(states=(TrialState.WAITING,)) == []  # what every ask reads first
    assert [t.value for t in study.get_trials()] == [1.0]  # the budget's read between trials
    assert reads == []
    elsewhere.enqueue_trial({"x": 0.5})
    assert [t.number for t in study.get_trials(states=(TrialState.WAITING,))] == [1]
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE, TrialState.WAITING]
    assert len(reads) == 2


def stored(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> dict[str, object]:
    """What a reader sees of a trial: its fields as one comparable dict."""
    frozen = study._storage.get_trial(trial._trial_id)
    return {name: getattr(frozen, name) for name in ("number", "state", "params", "distributions", "user_attrs",
                                                     "system_attrs", "intermediate_values", "datetime_start",
                                                     "datetime_complete", "values")}


def test_a_lone_worker_reads_the_study_once_and_its_own_trials_as_stored(
        cached: CachedStudy, monkeypatch: pytest.MonkeyPatch) -> None:
    study, elsewhere, reads = cached.study, cached.elsewhere, cached.reads
    cached.count_reads(monkeypatch)
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    for number in range(3):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1.0, log=True)
        trial.suggest_categorical("act", ["relu", "tanh"])
        trial.set_user_attr("record", {"seed": number})
        trial.set_user_attr("record", {"seed": number, "history": (1, 2)})  # written again: replaced
        trial.storage.set_trial_system_attr(trial._trial_id, "retry", [number])
        for step in range(3):
            trial.report(1.0 / (step + 1) + number, step)
            trial.should_prune()
        assert len(study.get_trials()) == number + 1  # the budget's read, the running trial in it
        assert stored(study, trial) == stored(elsewhere, trial)  # this process's copy is what the database holds
        study.tell(trial, 0.1 * number)
        assert stored(study, trial) == stored(elsewhere, trial)  # finished, as stored, completion time included
    assert len(reads) == 1  # the first read of the study; none while a trial runs, none to fetch one it finished
    assert [t.value for t in study.get_trials(states=(TrialState.COMPLETE,))] == [0.0, 0.1, 0.2]


def test_a_trial_taken_from_the_queue_is_copied_as_stored(cached: CachedStudy) -> None:
    study, elsewhere = cached.study, cached.elsewhere
    elsewhere.enqueue_trial({"lr": 0.01}, user_attrs={"from": "queue"})
    trial = study.ask()
    assert trial.suggest_float("lr", 1e-4, 1.0, log=True) == 0.01
    trial.report(0.5, 0)
    trial.report(float("inf"), 1)
    storage_of(study).set_trial_intermediate_value(trial._trial_id, 0, 0.25)  # a step written again replaces it
    assert stored(study, trial) == stored(elsewhere, trial)
    assert stored(elsewhere, trial)["intermediate_values"] == {0: 0.25, 1: float("inf")}
    assert study.get_trials(states=(TrialState.RUNNING,))[0].user_attrs == {"from": "queue"}


def test_a_running_trial_of_another_worker_or_ours_failed_by_another_is_read_from_the_database(
        cached: CachedStudy) -> None:
    study, elsewhere = cached.study, cached.elsewhere
    ours = study.ask()
    assert [t.number for t in study.get_trials(states=(TrialState.RUNNING,))] == [0]
    theirs = elsewhere.ask()
    assert [t.number for t in study.get_trials(states=(TrialState.RUNNING,))] == [0, 1]
    elsewhere.tell(theirs, 1.0)
    # Another worker found ours stale and failed it, then started a trial: as many trials run as before.
    storage_of(elsewhere).set_trial_state_values(ours._trial_id, TrialState.FAIL)
    elsewhere.ask()
    assert [(t.number, t.state) for t in study.get_trials()] == [
        (0, TrialState.FAIL), (1, TrialState.COMPLETE), (2, TrialState.RUNNING)]
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        ours.report(0.5, 0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        ours.set_user_attr("record", {"status": "completed"})
