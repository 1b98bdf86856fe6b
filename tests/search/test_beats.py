"""One heartbeat thread per process beats for every running trial, whichever loop runs it, and stops with it."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

from hpsearch.search.storages import beats, open_storage
from hpsearch.search.storages.beats import beating, start_beating
from hpsearch.search.storages.optuna_private.heartbeat import BEAT_ATTR

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() outside study.optimize, on purpose


@pytest.fixture(autouse=True)
def beater(monkeypatch: pytest.MonkeyPatch) -> beats._Beater:
    """A heartbeat thread of this test's own in place of the process's, so that trials another test left beating
    (or beats it registers later) are not counted here."""
    fresh = beats._Beater()
    monkeypatch.setattr(beats, "_BEATER", fresh)
    return fresh


def wait_for_beat(study: optuna.Study, number: int, after: float = 0.0, timeout: float = 15.0) -> float:
    deadline = time.monotonic() + timeout
    while (beat := study.trials[number].system_attrs.get(BEAT_ATTR, 0.0)) <= after:
        assert time.monotonic() < deadline, "no heartbeat came"
        time.sleep(0.05)
    return beat


def test_a_running_trial_beats_every_interval_until_it_ends(tmp_path: Path, beater: beats._Beater) -> None:
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 'hp.journal'}", heartbeat=1))
    trial = study.ask()
    with beating(study, trial):
        first = wait_for_beat(study, 0)  # a journal's first beat is its start time: this one is the thread's
        wait_for_beat(study, 0, after=first)
    assert not beater._trials


def test_several_trials_beat_at_once_and_each_stops_alone(tmp_path: Path, beater: beats._Beater) -> None:
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 'hp.journal'}", heartbeat=1))
    first, second = study.ask(), study.ask()
    stop_first, stop_second = start_beating(study, first), start_beating(study, second)
    wait_for_beat(study, 0)
    wait_for_beat(study, 1)
    stop_first()
    assert [b.trial.number for b in beater._trials.values()] == [1]
    stop_second()
    assert not beater._trials


def test_a_storage_without_heartbeats_registers_nothing(beater: beats._Beater) -> None:
    study = optuna.create_study()
    with beating(study, study.ask()):
        assert not beater._trials
