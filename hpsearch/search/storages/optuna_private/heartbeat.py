"""Heartbeats for Optuna's journal storage (file or Redis), which Optuna gives only its RDB storages.

Written by hand because Optuna 5 has no journal heartbeat (optuna/optuna#6615): each running trial
writes the time to a system attr every interval; a RUNNING trial whose last beat (or start) is
older than the grace period belongs to a dead worker. The rest is as for RDB: the process's beat thread
(hpsearch.search.storages.beats) beats, Optuna's ``fail_stale_trials`` fails stale trials, and the stale-trial
callback queues the retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend
from optuna.trial import FrozenTrial, TrialState

from hpsearch.search.storages.optuna_private import BaseHeartbeat, trial_id

__all__ = ["BEAT_ATTR", "HeartbeatJournalStorage"]

BEAT_ATTR = "hpsearch:heartbeat"

StaleTrialCallback = Callable[[optuna.Study, FrozenTrial], None]


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A JournalStorage whose running trials beat, with RDBStorage's heartbeat arguments."""

    def __init__(self, backend: BaseJournalBackend, *, heartbeat_interval: int, grace_period: int | None = None,
                 heartbeat_stale_trial_callback: StaleTrialCallback | None = None) -> None:
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period if grace_period is not None else 2 * heartbeat_interval
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback
        self._started: set[int] = set()  # trials of this process that have had their first beat

    def record_heartbeat(self, trial_id: int) -> None:
        """A beat: the time in a system attr. The first beat of a trial, which the beat thread gives as the
        trial starts (hpsearch.search.storages.beats), is not written: the trial's start time, just stored, says the
        same (_last_beat reads it), and one journal write a trial fewer is a few percent of a short trial."""
        if trial_id not in self._started:
            self._started.add(trial_id)
            return
        try:
            self.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            pass  # another worker failed it as stale meanwhile; its retry is queued already

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [trial_id(trial) for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                if now - _last_beat(trial) > self.grace_period]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleTrialCallback | None:
        return self.heartbeat_stale_trial_callback


def _last_beat(trial: FrozenTrial) -> float:
    """The later of the trial's last beat and its start. A retry carries the system attrs of the dead trial it runs
    again, that trial's last beat among them, which must not make the retry stale as it starts."""
    started = trial.datetime_start.timestamp() if trial.datetime_start is not None else time.time()
    beat = trial.system_attrs.get(BEAT_ATTR)
    return started if beat is None else max(float(beat), started)
