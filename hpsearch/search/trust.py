"""Who can make a worker run what: the entry points of a stored spec are imported only when trusted.

A study's spec lives in a storage that others may write to, and a worker imports the model, data,
loss, optimizer and metrics it names, or the user's Optuna objective: code execution on the worker's
machine. So a worker imports an entry point only when it is a file inside the worker's working directory
(a relative path without ``..``) or a module of a package its operator named with ``hpsearch worker
--trust PACKAGE`` (a file may be named too).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from hpsearch.engine.config import ENTRY_POINT_FIELDS, TrainConfig
from hpsearch.engine.entry_points import is_trusted, trust_for
from hpsearch.errors import EntryPointError

__all__ = ["check_trusted", "entry_point_trust", "entry_points_of"]


def entry_points_of(config: TrainConfig, objective: str | None = None) -> dict[str, str]:
    """The config's fields that name the user's code rather than a built-in, with their entry points; and the
    study's ``objective`` when it has one."""
    from hpsearch.choices import LOSSES, OPTIMIZERS
    from hpsearch.engine.datasets import BUILTIN_DATASETS
    from hpsearch.engine.models import MODELS

    builtin = {"model": set(MODELS), "dataset": set(BUILTIN_DATASETS), "loss": set(LOSSES),
               "optimizer": set(OPTIMIZERS), "metrics": set()}
    found = {}
    for field in ENTRY_POINT_FIELDS:
        value = getattr(config, field)
        if value is not None and value not in builtin[field] and not value.startswith(("npz:", "synthetic")):
            found[field] = value
    if objective is not None:
        found["objective"] = objective
    return found


def entry_point_trust(config: TrainConfig, objective: str | None = None) -> set[str]:
    """What ``--trust`` must name for a worker to run ``config``'s own entry points (and ``objective``)."""
    return {trust_for(entry_point) for entry_point in entry_points_of(config, objective).values()}


def check_trusted(config: TrainConfig, trusted: Iterable[str], study: str, objective: str | None = None) -> None:
    """Refuse, in one line, an entry point of a stored spec (``objective`` too) that this worker's operator does
    not trust."""
    trusted = tuple(trusted)
    for field, entry_point in entry_points_of(config, objective).items():
        if not is_trusted(entry_point, trusted):
            raise EntryPointError(
                f"{field} {entry_point!r} of study {study!r} is not trusted by this worker (working directory "
                f"{os.getcwd()}): it runs only files inside that directory and modules of packages named with "
                f"--trust; add --trust {trust_for(entry_point)} if you trust whoever writes to this storage")
