"""The statuses of a run and of a trial, one vocabulary for the engine, the trial loops and the readers.

A ``StrEnum``, so a status is stored (a trial's ``status`` user attr, JSON) and compared as its plain
string: records written before this enum read back the same.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Status"]


class Status(StrEnum):
    """What became of a training run (the first four) or of a trial (all but RUNNING and STOPPED)."""

    RUNNING = "running"  # a batched member still training
    COMPLETED = "completed"  # every epoch ran
    DIVERGED = "diverged"  # the loss blew up or stopped being finite
    STOPPED = "stopped"  # the reporter (a pruner) ended the run; its trial is PRUNED
    PRUNED = "pruned"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: does not count, and is run again
    FAILED = "failed"  # an error in training
