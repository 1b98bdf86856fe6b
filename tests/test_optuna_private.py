"""Optuna's private names that hpsearch uses exist in the installed Optuna (hpsearch.search.optuna_private)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.search.optuna_private import (
    FinishedTrialsCache,
    check_available,
    in_optimize_loop,
    read_finished_trials_cheaply,
    requeue,
    storage_of,
    take_stop_request,
)
from hpsearch.storage import open_storage


def test_every_private_name_hpsearch_uses_exists_in_this_optuna() -> None:
    assert check_available() == [], f"optuna {optuna.__version__} lacks these; update hpsearch/search/optuna_private.py"


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


class CachedStudy:
    """An SQLite study read through a FinishedTrialsCache, another worker's view of it, and the reads that
    reached the database once ``count_reads`` was called."""

    def __init__(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'hp.db'}"
        self.study = optuna.create_study(study_name="s", storage=open_storage(url, heartbeat=None))
        read_finished_trials_cheaply(self.study)
        self.cache = storage_of(self.study)
        assert isinstance(self.cache, FinishedTrialsCache)
        self.elsewhere = optuna.load_study(study_name="s", storage=open_storage(url, heartbeat=None))
        self.reads: list[int] = []

    def count_reads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        backend = self.cache._backend
        remote_read = backend._get_trials
        monkeypatch.setattr(backend, "_get_trials", lambda *a, **k: (self.reads.append(1), remote_read(*a, **k))[1])


def test_finished_trials_are_read_again_only_when_a_trial_has_finished(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cached = CachedStudy(tmp_path)
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


def test_reads_of_unfinished_states_none_holds_need_no_remote_read(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cached = CachedStudy(tmp_path)
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
