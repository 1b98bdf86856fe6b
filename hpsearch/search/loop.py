"""One worker's trial loop, whether it trains one trial at a time or a batch of them.

Around what one step trains, every worker does the same: it fails the trials of dead workers (heartbeats)
as it goes, counts what is finished and running, stops when the finished trials reach the budget, and
waits while the rest of the budget runs in other workers, so that a killed worker's trial is retried
rather than lost. It stops asking at its deadline or when a sampler calls ``study.stop()`` (a grid does
when it is done), and ends once its trials in flight are told. Written once, so the sequential loop
(hpsearch.search.worker) and the batched one (hpsearch.search.batched_study) cannot drift apart.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from typing import Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from hpsearch.search.budget import budget
from hpsearch.search.setup import fail_stale_trials_quietly
from hpsearch.search.storages import GRACE_BEATS
from hpsearch.search.storages.optuna_private import heartbeat_interval, in_optimize_loop, take_stop_request

__all__ = ["WAIT_POLL", "TrialSteps", "run_trials"]

logger = logging.getLogger(__name__)

# Seconds between looks at the storage while other workers run the last trials of the budget.
WAIT_POLL = 1.0


class TrialSteps(Protocol):
    """What one step of a worker trains: one whole trial, or one epoch of a batch."""

    def in_flight(self) -> int:
        """Trials started and not yet told (a step that runs a whole trial leaves none)."""
        ...

    def step(self, ask: bool) -> int:
        """Train one step, asking for trials first while ``ask``. Returns the places the budget has left beyond
        the trials it asked for, as far as it knows (0 when it does not)."""
        ...

    def abandon(self, exc: BaseException) -> None:
        """Give up the trials in flight: Ctrl-C or SIGTERM stops the worker."""
        ...

    def close(self) -> None:
        """Stop what the steps left running (heartbeats)."""
        ...


def run_trials(study: optuna.Study, total: int, steps: TrialSteps, deadline: float | None = None) -> None:
    """Step ``steps`` until ``study`` holds ``total`` finished trials, or until ``deadline`` (time.monotonic())
    or a stop request, after which the trials in flight still end. Ask/tell with heartbeats is Optuna's
    optimize loop done by hand: each step runs inside it, so samplers may stop it and ``ask`` does not warn."""
    with _heap_frozen():
        _run(study, total, steps, deadline)


@contextlib.contextmanager
def _heap_frozen() -> Iterator[None]:
    """Keep the objects that exist before the trials out of the garbage collector's full passes while they run.

    After torch's import (and its first optimizer's) that is about 340,000 objects, which every full pass walks
    again: about 0.12 s each here, paid in the middle of a trial (scripts/bench_startup.py). A process that
    froze nothing before gets them back at the end, so nothing stays out of a later collection's reach; one
    that froze objects itself (the ``hpsearch`` command does, at its start) keeps these frozen too.
    """
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()


def _run(study: optuna.Study, total: int, steps: TrialSteps, deadline: float | None) -> None:
    heartbeats = heartbeat_interval(study)  # without them a RUNNING trial may be a dead one: never wait for it
    waiting_since: float | None = None
    warned = stopping = False
    stale_checked = time.monotonic()  # prepare_study has just failed the stale trials
    room = 0  # places left in the budget beyond this worker's last trials, as last counted
    try:
        while True:
            asking = not stopping and (deadline is None or time.monotonic() < deadline)
            if not asking and not steps.in_flight():
                return
            if heartbeats and time.monotonic() - stale_checked >= heartbeats:
                fail_stale_trials_quietly(study)  # retries of dead workers' trials join the queue
                stale_checked = time.monotonic()
            if asking and not steps.in_flight():
                if room >= 1:  # known free without a look: one read per trial fewer (the ask still checks)
                    room = 0
                else:
                    state = budget(study)
                    if state.finished >= total or (not heartbeats and state.finished + state.running >= total):
                        return
                    if state.finished + state.running >= total:
                        waited = time.monotonic() - (waiting_since := waiting_since or time.monotonic())
                        if not warned and waited > heartbeats:
                            warned = True
                            logger.warning("waiting for %d running trial(s) of %s in other workers; one whose worker "
                                           "was killed is retried after %d s without a heartbeat", state.running,
                                           study.study_name, GRACE_BEATS * heartbeats)
                        time.sleep(WAIT_POLL)
                        continue
            waiting_since, warned = None, False
            with in_optimize_loop(study):
                try:
                    room = steps.step(asking)
                except UpdateFinishedTrialError:
                    logger.warning("a trial of %s outlived its heartbeat and was failed by another worker; its "
                                   "retry runs it again", study.study_name)
            stopping = stopping or take_stop_request(study)
    except KeyboardInterrupt as exc:
        steps.abandon(exc)
        raise
    finally:
        steps.close()
