"""Heartbeats of the trials running in this process, from one thread that lives as long as the process.

Optuna's ``study.optimize`` starts a heartbeat thread for each trial and joins it at the trial's end: about
2 ms a trial here, a few percent of a short trial (scripts/bench_overhead.py). One thread for the whole
process beats for every trial registered with ``beating``, each every ``interval`` seconds of its storage,
whichever loop runs it (one trial at a time, or K in a batch). Written by hand because Optuna's thread is
per trial and private.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import optuna

from hpsearch.search.storages.optuna_private import heartbeat_interval, record_heartbeat

__all__ = ["beating", "start_beating"]

logger = logging.getLogger(__name__)

IDLE_WAKE = 1.0  # seconds between the thread's looks when no beat is due sooner; intervals are whole seconds


@dataclass
class _Beating:
    study: optuna.Study
    trial: optuna.Trial
    interval: float
    due: float


class _Beater:
    """The process's heartbeat thread and the trials it beats for, started with the first trial."""

    def __init__(self) -> None:
        self._trials: dict[int, _Beating] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, study: optuna.Study, trial: optuna.Trial, interval: float) -> int:
        key = id(trial)
        with self._lock:
            self._trials[key] = _Beating(study, trial, interval, time.monotonic() + interval)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hpsearch-heartbeats", daemon=True)
                self._thread.start()
        return key

    def remove(self, key: int) -> None:
        with self._lock:
            self._trials.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                wake = min((beating.due for beating in self._trials.values()), default=None)
            now = time.monotonic()
            time.sleep(max(0.0, min(IDLE_WAKE, wake - now)) if wake is not None else IDLE_WAKE)
            now = time.monotonic()
            with self._lock:
                due = [beating for beating in self._trials.values() if beating.due <= now]
                for beating in due:
                    beating.due = now + beating.interval
            for beating in due:
                try:
                    record_heartbeat(beating.study, beating.trial)
                except Exception as exc:  # a storage error here must not end the thread: the next beat may pass
                    logger.warning("heartbeat of trial %d failed: %s", beating.trial.number, exc)


_BEATER = _Beater()


def start_beating(study: optuna.Study, trial: optuna.Trial) -> Callable[[], None]:
    """Beat for ``trial`` once now, as Optuna's thread does, then every interval of the study's storage (nothing
    when it has no heartbeats), until the returned function is called."""
    interval = heartbeat_interval(study)
    if interval is None:
        return lambda: None
    record_heartbeat(study, trial)
    key = _BEATER.add(study, trial, interval)
    return lambda: _BEATER.remove(key)


@contextlib.contextmanager
def beating(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Beat for ``trial`` while the block runs (start_beating)."""
    stop = start_beating(study, trial)
    try:
        yield
    finally:
        stop()
