"""Every use of Optuna's private API, in one place, checked against the installed Optuna.

hpsearch runs Optuna's trial loop by hand (ask, train, tell) so that a trial two workers start at once
for the last place in the budget can go back to the queue, and so that K trials can train at once.
That needs a few things Optuna keeps private: its heartbeat API and a study's storage, the flag that tells a
sampler it is inside the optimize loop, the stop flag a grid sampler sets, a trial's storage id, and
the Redis client of the journal backend. The trial loop also reads an RDB study through a subclass of
Optuna's private cache (``FinishedTrialsCache``), which needs the cache's fields and Optuna's table
models. ``check_available`` names any that an Optuna version lacks (tests/test_optuna_private.py runs
it), and pyproject.toml bounds Optuna below its next major version.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Container, Iterator
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

__all__ = ["BaseHeartbeat", "FinishedTrialsCache", "check_available", "heartbeat_interval",
           "in_optimize_loop", "read_finished_trials_cheaply", "record_heartbeat", "redis_client", "requeue",
           "storage_of", "take_stop_request", "trial_id"]

_FINISHED = tuple(state for state in TrialState if state.is_finished())
_UNFINISHED = tuple(state for state in TrialState if not state.is_finished())


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage object a study writes to."""
    return study._storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's id in its storage (not its number in the study)."""
    return trial._trial_id


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats when the study's storage has them on, else None."""
    storage = storage_of(study)
    return storage.get_heartbeat_interval() if is_heartbeat_enabled(storage) else None  # type: ignore[attr-defined]


def record_heartbeat(study: optuna.Study, trial: optuna.Trial) -> None:
    """One beat for ``trial`` now (the process's beat thread, hpsearch.search.beats, calls it)."""
    storage = storage_of(study)
    if is_heartbeat_enabled(storage):
        storage.record_heartbeat(trial_id(trial))  # type: ignore[attr-defined]


def requeue(study: optuna.Study, trial: optuna.Trial) -> None:
    """Put an asked trial back in the queue (WAITING), unrun, for a later ask to take."""
    storage_of(study).set_trial_state_values(trial_id(trial), TrialState.WAITING)


@contextlib.contextmanager
def in_optimize_loop(study: optuna.Study) -> Iterator[None]:
    """Tell Optuna a hand-written loop is its optimize loop: samplers and callbacks may then call
    ``study.stop()`` (a grid does when it is done), and ``ask()`` does not warn about heartbeats."""
    study._thread_local.in_optimize_loop = True
    try:
        yield
    finally:
        study._thread_local.in_optimize_loop = False


def take_stop_request(study: optuna.Study) -> bool:
    """Whether ``study.stop()`` was called in the loop; the request is consumed."""
    if study._stop_flag:
        study._stop_flag = False
        return True
    return False


def redis_client(backend: Any) -> Any:
    """The Redis client of Optuna's ``JournalRedisBackend``."""
    return backend._redis


class FinishedTrialsCache(_CachedStorage):
    """Optuna's cache of an RDB study, except that a read is answered from the cache while a one-statement
    count by state says that no trial has finished since the last read and that none of the unfinished
    states it asks for has a trial: the median pruner's read of finished trials every epoch, the read of
    waiting trials that every ``ask`` makes, and the budget's read of all trials between trials.

    Optuna's cache re-reads every unfinished trial on every read, the running one with all its values and
    attrs: about 3 ms a read on SQLite against 0.1 ms for the count (scripts/bench_overhead.py). A finished
    trial never changes again, so an unchanged count means the same finished trials. Written by hand because
    Optuna's cache has no such read; every other read and every write is Optuna's own.
    """

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._finished_cached: dict[int, int] = {}  # study id → finished trials in the cache after its last read

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        finished = [state for state in _FINISHED if states is None or state in states]
        unfinished = [state for state in _UNFINISHED if states is None or state in states]
        counts = self._count_by_state(study_id)
        if not any(counts.get(state, 0) for state in unfinished):
            if not finished:
                return []
            if self._finished_cached.get(study_id) == sum(counts.get(state, 0) for state in _FINISHED):
                with self._lock:
                    trials = sorted((t for t in self._studies[study_id].trials.values() if t.state in finished),
                                    key=lambda t: t.number)
                return copy.deepcopy(trials) if deepcopy else trials
        trials = super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
        with self._lock:
            cached = self._studies[study_id].trials.values()
            self._finished_cached[study_id] = sum(t.state.is_finished() for t in cached)
        return trials

    def _count_by_state(self, study_id: int) -> dict[TrialState, int]:
        import sqlalchemy
        from optuna.storages._rdb.models import TrialModel

        query = sqlalchemy.select(TrialModel.state, sqlalchemy.func.count(TrialModel.trial_id)).where(
            TrialModel.study_id == study_id).group_by(TrialModel.state)
        with self._backend.engine.connect() as connection:
            return {TrialState(state): int(count) for state, count in connection.execute(query)}


def read_finished_trials_cheaply(study: optuna.Study) -> None:
    """Have ``study`` read through a FinishedTrialsCache when it reads an RDB storage through Optuna's cache."""
    storage = storage_of(study)
    if type(storage) is _CachedStorage:
        study._storage = FinishedTrialsCache(storage._backend)


def check_available() -> list[str]:
    """The private names above that the installed Optuna lacks (empty when every one is there)."""
    from optuna.storages.journal import JournalRedisBackend

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    trial = study.ask()
    missing = [f"Study.{name}" for name in ("_storage", "_thread_local", "_stop_flag") if not hasattr(study, name)]
    missing += [f"Trial.{name}" for name in ("_trial_id",) if not hasattr(trial, name)]
    missing += [f"FrozenTrial.{name}" for name in ("_trial_id",) if not hasattr(study.trials[0], name)]
    if hasattr(study, "_thread_local") and not hasattr(study._thread_local, "in_optimize_loop"):
        missing.append("Study._thread_local.in_optimize_loop")
    if "self._redis =" not in inspect.getsource(JournalRedisBackend):  # set in __init__, needs no server to read
        missing.append("JournalRedisBackend._redis")
    cache = _CachedStorage(RDBStorage.__new__(RDBStorage))  # no database: only the fields the subclass reads
    missing += [f"_CachedStorage.{name}" for name in ("_backend", "_studies", "_lock") if not hasattr(cache, name)]
    try:
        from optuna.storages._cached_storage import _StudyInfo
        from optuna.storages._rdb.models import TrialModel

        missing += [f"_StudyInfo.{name}" for name in ("trials",) if not hasattr(_StudyInfo(), name)]
        missing += [f"TrialModel.{name}" for name in ("trial_id", "study_id", "state") if not hasattr(TrialModel, name)]
    except ImportError as exc:
        missing.append(f"{exc.name}: {exc}")
    return missing
