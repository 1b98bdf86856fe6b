"""Every use of Optuna's private API, in one place, checked against the installed Optuna.

hpsearch runs Optuna's trial loop by hand (ask, train, tell) so that a trial two workers start at once
for the last place in the budget can go back to the queue, and so that K trials can train at once.
That needs a few things Optuna keeps private: its heartbeat thread and storage, the flag that tells a
sampler it is inside the optimize loop, the stop flag a grid sampler sets, a trial's storage id, and
the Redis client of the journal backend. ``check_available`` names any that an Optuna version lacks
(tests/test_optuna_private.py runs it), and pyproject.toml bounds Optuna below its next major version.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat, get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

__all__ = ["BaseHeartbeat", "check_available", "heartbeat_interval", "heartbeat_thread", "in_optimize_loop",
           "record_heartbeat", "redis_client", "requeue", "storage_of", "take_stop_request", "trial_id"]


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


def heartbeat_thread(study: optuna.Study, trial: optuna.Trial) -> contextlib.AbstractContextManager[Any]:
    """Optuna's own thread that beats for ``trial`` while the block runs (a no-op without heartbeats)."""
    return get_heartbeat_thread(trial_id(trial), storage_of(study))


def record_heartbeat(study: optuna.Study, trial: optuna.Trial) -> None:
    """One beat for ``trial`` now, where a loop beats by hand (the batched engine, once an epoch)."""
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
    return missing
