"""Every use of Optuna's private API, in one place (this package), checked against the installed Optuna.

hpsearch runs Optuna's trial loop by hand (ask, train, tell) so that a trial two workers start at once
for the last place in the budget can go back to the queue, and so that K trials can train at once.
That needs a few things Optuna keeps private: its heartbeat API and a study's storage, the flag that tells a
sampler it is inside the optimize loop, the stop flag a grid sampler sets, a trial's storage id, and
the Redis client of the journal backend. The trial loop also reads an RDB study through a subclass of
Optuna's private cache (``LocalTrialsCache``, in rdb_cache.py), which needs the cache's fields and Optuna's table
models. ``check_available`` names any that an Optuna version lacks (tests/test_optuna_private.py runs
it), and pyproject.toml bounds Optuna below its next major version.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from hpsearch.search.storages.optuna_private.rdb_cache import LocalTrialsCache

__all__ = ["BaseHeartbeat", "LocalTrialsCache", "check_available", "drop_idle_connections", "heartbeat_interval",
           "in_optimize_loop", "read_trials_locally", "record_heartbeat", "redis_client", "requeue",
           "storage_of", "take_stop_request", "trial_id"]


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
    """One beat for ``trial`` now (the process's beat thread, hpsearch.search.storages.beats, calls it)."""
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


def drop_idle_connections(study: optuna.Study) -> None:
    """Close the idle pooled connections of an RDB study, so the writes that record an interrupt start on fresh ones.

    Ctrl-C between a read's execute and its last fetch leaves the statement open on the connection that goes
    back to the pool (the interrupt's traceback holds its cursor), and on SQLite that statement keeps an old
    snapshot: once another process has written, the connection's next write fails at once ("database is
    locked"). Optuna's session rolls back only on an ``Exception``, and a rollback would not end that read anyway.
    """
    storage = storage_of(study)
    backend = storage._backend if isinstance(storage, _CachedStorage) else storage
    if isinstance(backend, RDBStorage):
        backend.engine.dispose()


def redis_client(backend: Any) -> Any:
    """The Redis client of Optuna's ``JournalRedisBackend``."""
    return backend._redis


def read_trials_locally(study: optuna.Study) -> None:
    """Have ``study`` read through a LocalTrialsCache when it reads an RDB storage through Optuna's cache."""
    storage = storage_of(study)
    if type(storage) is _CachedStorage:
        study._storage = LocalTrialsCache(storage._backend)


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
    cache_fields = ("_backend", "_studies", "_lock", "_trial_id_to_study_id_and_number")
    missing += [f"_CachedStorage.{name}" for name in cache_fields if not hasattr(cache, name)]
    try:
        from optuna.storages._cached_storage import _StudyInfo
        from optuna.storages._rdb.models import (
            TrialIntermediateValueModel,
            TrialModel,
            TrialSystemAttributeModel,
            TrialUserAttributeModel,
        )

        missing += [f"_StudyInfo.{name}" for name in ("trials", "unfinished_trial_ids")
                    if not hasattr(_StudyInfo(), name)]
        missing += [f"TrialModel.{name}" for name in ("trial_id", "study_id", "state", "datetime_complete")
                    if not hasattr(TrialModel, name)]
        missing += [f"TrialIntermediateValueModel.{name}" for name in (
            "__table__", "intermediate_value_to_stored_repr") if not hasattr(TrialIntermediateValueModel, name)]
        missing += [f"{model.__name__}.__table__ (trial_id, key, value_json)" for model in (
            TrialUserAttributeModel, TrialSystemAttributeModel)
            if not {"trial_id", "key", "value_json"} <= set(model.__table__.c.keys())]
    except ImportError as exc:
        missing.append(f"{exc.name}: {exc}")
    return missing
