"""A logical dump of an Optuna storage (a journal file, SQLite or a server database), for tests that promise
a command left the storage unchanged.

Comparing a file's bytes proves little: SQLite may still hold recent writes in its write-ahead log, and a
server database has no file to compare. The dump reads everything Optuna keeps through a new storage object
(a new connection, a journal replayed from its first line), so it sees what another process would see.
"""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import distribution_to_json
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial


def logical_dump(url: str) -> dict[str, Any]:
    """Every study in the storage at ``url`` by name: its id, directions, user and system attrs, and every
    trial with its number, state, params and distributions, values, intermediate values, attrs and times.

    Plain values only (NaN as the string "nan"), so two dumps compare with ``==``.
    """
    storage = _open(url)
    try:
        return {study.study_name: {
            "id": storage.get_study_id_from_name(study.study_name),
            "directions": [_direction(d) for d in study.directions],
            "user_attrs": _plain(study.user_attrs),
            "system_attrs": _plain(study.system_attrs),
            "trials": [dump_trial(trial) for trial in _trials(storage, study.study_name)],
        } for study in storage.get_all_studies()}
    finally:
        engine = getattr(storage, "engine", None)
        if engine is not None:  # an RDB storage: close its connections now, not at a later garbage collection
            engine.dispose()


def _open(url: str) -> BaseStorage:
    """Optuna's own storage for ``url`` (a journal file, or a database URL), without hpsearch's settings, and
    without creating tables or checking the schema's version: it only reads."""
    if "://" in url:
        return RDBStorage(url, skip_table_creation=True, skip_compatibility_check=True)
    return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))


def _direction(direction: StudyDirection) -> str:
    return direction.name


def _trials(storage: BaseStorage, name: str) -> list[FrozenTrial]:
    return storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)


def dump_trial(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as plain values: what logical_dump holds of it."""
    return _plain({
        "number": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        "distributions": {name: distribution_to_json(d) for name, d in trial.distributions.items()},
        "values": trial.values,
        "intermediate_values": trial.intermediate_values,
        "user_attrs": trial.user_attrs,
        "system_attrs": trial.system_attrs,
        "datetime_start": trial.datetime_start and trial.datetime_start.isoformat(),
        "datetime_complete": trial.datetime_complete and trial.datetime_complete.isoformat(),
    })


def _plain(value: Any) -> Any:
    """``value`` with NaN written as "nan" (NaN != NaN would make equal dumps differ) and tuples as lists."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
