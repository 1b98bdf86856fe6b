"""LocalTrialsCache: Optuna's cache of an RDB study, with reads answered from what this process knows.

Part of hpsearch.search.storages.optuna_private: it subclasses Optuna's private cache and writes to Optuna's tables.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Container, Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

__all__ = ["LocalTrialsCache"]

_FINISHED = tuple(state for state in TrialState if state.is_finished())


class LocalTrialsCache(_CachedStorage):
    """Optuna's cache of an RDB study, except that a read is answered here, with no remote read, when one
    count by state shows the database holds what this process already knows: the finished trials it last
    read or finished itself, and as the running ones exactly those it started itself, which it copies as it
    writes them. That covers, in a lone worker, every read after the study's first: the median pruner's read
    of finished trials every epoch, the read of waiting trials that every ``ask`` makes, the budget's and
    TPE's reads of all trials, and ``ask``'s and ``tell``'s reads of the trial itself.

    Optuna's cache re-reads every unfinished trial on every read, the running one with all its values and
    attrs: 3 to 10 ms a read on SQLite against about 0.2 ms for the count (scripts/bench_overhead.py). A
    finished trial never changes again, so an unchanged count means the same finished trials; a running
    trial changes only by its own worker's writes, or by another worker that finds it stale and fails it
    (which changes the count and the sum of the running trials' ids). Written by hand because Optuna's
    cache has no such read. A running trial's reported values and attrs are written here (``_write_own``),
    every other write is Optuna's own, and each is copied here only once the database has taken it.
    """

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._finished_cached: dict[int, int] = {}  # study id → finished trials in the cache after its last read
        # trial id → (study id, this process's copy of a RUNNING trial it started, kept by its own writes)
        self._own_running: dict[int, tuple[int, FrozenTrial]] = {}
        # MySQL's DATETIME, as Optuna's tables declare it, keeps whole seconds (rounded or cut, by server), not the
        # start time Optuna made: there a trial's copy takes it as stored, one small read a trial more.
        self._start_read_back = backend.engine.dialect.name in ("mysql", "mariadb")

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        created = super().create_new_trial(study_id, template_trial)
        with self._lock:
            _, number = self._trial_id_to_study_id_and_number[created]
            trial = self._studies[study_id].trials[number]
            if trial.state != TrialState.RUNNING:
                return created
            own = copy.deepcopy(trial)
        if self._start_read_back:
            own.datetime_start = self._stored_times(created)[0]
        with self._lock:
            self._own_running[created] = (study_id, own)
        return created

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
                               ) -> bool:
        with self._lock:  # before the write: a failed write leaves the trial to remote reads
            owned = self._own_running.pop(trial_id, None)
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and owned is not None and state.is_finished():
            self._cache_finished(trial_id, *owned, state, values)
        elif changed and state == TrialState.RUNNING:  # taken from the queue: the copy starts from what is stored
            known = self._trial_id_to_study_id_and_number.get(trial_id)
            if known is not None:
                trial = self._backend.get_trial(trial_id)
                with self._lock:
                    self._own_running[trial_id] = (known[0], trial)
        return changed

    def _cache_finished(self, trial_id: int, study_id: int, trial: FrozenTrial, state: TrialState,
                        values: Sequence[float] | None) -> None:
        """This process's copy of a trial it has just finished becomes the cache's finished trial, with the
        times the database stored (one small read): no read of the study to fetch it back."""
        trial.datetime_start, trial.datetime_complete = self._stored_times(trial_id)
        trial.state = state
        trial.values = None if values is None else [float(value) for value in values]
        with self._lock:
            cached = self._studies[study_id]
            cached.trials[trial.number] = trial
            cached.unfinished_trial_ids.discard(trial_id)
            if study_id in self._finished_cached:  # the finished trials of the last read, and this one
                self._finished_cached[study_id] = sum(t.state.is_finished() for t in cached.trials.values())

    def _stored_times(self, trial_id: int) -> tuple[datetime | None, datetime | None]:
        """A trial's start and completion times as the database holds them (one small read)."""
        import sqlalchemy.orm
        from optuna.storages._rdb.models import TrialModel

        with sqlalchemy.orm.Session(self._backend.engine) as session:  # Optuna's model: it converts the stored times
            stored = session.get(TrialModel, trial_id)
            return stored.datetime_start, stored.datetime_complete

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        self._copy_write(trial_id, lambda trial: (
            setattr(trial, "params", {**trial.params, param_name: distribution.to_external_repr(param_value_internal)}),
            setattr(trial, "distributions", {**trial.distributions, param_name: distribution})))

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        from optuna.storages._rdb.models import TrialIntermediateValueModel

        stored, kind = TrialIntermediateValueModel.intermediate_value_to_stored_repr(intermediate_value)
        if not self._set_own("intermediate_values", trial_id, step, float(intermediate_value),
                             {"intermediate_value": stored, "intermediate_value_type": kind}):
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if not self._set_own("user_attrs", trial_id, key, _as_stored(value), {"value_json": json.dumps(value)}):
            super().set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if not self._set_own("system_attrs", trial_id, key, _as_stored(value), {"value_json": json.dumps(value)}):
            super().set_trial_system_attr(trial_id, key, value)

    def _set_own(self, field: str, trial_id: int, key: Any, value: Any, row: dict[str, Any]) -> bool:
        """Write ``row`` for a trial this process runs (``_write_own``) and set ``key`` of its copy's ``field``
        (intermediate_values, user_attrs or system_attrs) to ``value``; False for any other trial."""
        with self._lock:
            owned = self._own_running.get(trial_id)
        if owned is None:
            return False
        self._write_own(field[:-1], trial_id, key, key in getattr(owned[1], field), row)
        self._copy_write(trial_id, lambda trial: setattr(trial, field, {**getattr(trial, field), key: value}))
        return True

    def _write_own(self, table: str, trial_id: int, key: Any, replace: bool, row: dict[str, Any]) -> None:
        """Optuna's write of a running trial's reported value (``table`` intermediate_value, keyed by step) or attr
        (user_attr, system_attr, keyed by name) as two statements of SQLAlchemy Core in one transaction: the
        trial's state, which must still let it be updated, then the insert, or the update where this process's
        copy holds the key already. Optuna's ORM session costs about 3 ms a write on SQLite against about 0.5 ms;
        a trial writes a value every epoch and its record twice."""
        import sqlalchemy

        sql = _statements()
        try:
            with self._backend.engine.begin() as connection:
                state = connection.execute(sql.state, {"trial": trial_id}).scalar_one_or_none()
                if state is None:
                    raise KeyError(f"No trial with trial_id {trial_id} exists.")
                self._backend.check_trial_is_updatable(trial_id, TrialState(state))
                if replace:
                    connection.execute(sql.update[table], {"trial": trial_id, "at_key": key, **row})
                else:
                    connection.execute(sql.insert[table], {"trial_id": trial_id, sql.key[table]: key, **row})
        except sqlalchemy.exc.SQLAlchemyError as exc:  # as Optuna's own writes report a failed commit
            raise optuna.exceptions.StorageInternalError(f"cannot store trial {trial_id}'s {table} {key!r}: "
                                                         f"{exc}") from exc

    def _copy_write(self, trial_id: int, write: Callable[[FrozenTrial], Any]) -> None:
        """Apply a write that the database took to this process's copy of the trial, if it has one."""
        with self._lock:
            owned = self._own_running.get(trial_id)
            if owned is not None:
                write(owned[1])

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            owned = self._own_running.get(trial_id)
            if owned is not None:
                return copy.deepcopy(owned[1])  # Optuna's Trial changes the one it is given
        return super().get_trial(trial_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        known = self._known_trials(study_id, states)
        if known is not None:
            return copy.deepcopy(known) if deepcopy else known
        return self._read_remote(study_id, deepcopy, states)

    def _read_remote(self, study_id: int, deepcopy: bool = False, states: Container[TrialState] | None = ()
                     ) -> list[FrozenTrial]:
        """Optuna's read: every unfinished trial and every newly finished one, into the cache."""
        trials = super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
        with self._lock:
            cached = self._studies[study_id].trials
            self._finished_cached[study_id] = sum(t.state.is_finished() for t in cached.values())
        return trials

    def _known_trials(self, study_id: int, states: Container[TrialState] | None) -> list[FrozenTrial] | None:
        """The trials in ``states`` as this process knows them, or None when the database may hold others."""
        wanted = [state for state in TrialState if states is None or state in states]
        if not wanted:
            return []
        counts = self._count_by_state(study_id)
        with self._lock:
            own = [trial for owner, trial in self._own_running.values() if owner == study_id]
            if TrialState.RUNNING in wanted and counts.get(TrialState.RUNNING, (0, 0)) != (
                    len(own), sum(trial._trial_id for trial in own)):
                return None
            if any(counts.get(state, (0, 0))[0] for state in wanted if state not in (TrialState.RUNNING, *_FINISHED)):
                return None  # a waiting trial: only the database has it
            finished = [state for state in wanted if state.is_finished()]
            trials = [copy.copy(trial) for trial in own] if TrialState.RUNNING in wanted else []
            if finished:
                if self._finished_cached.get(study_id) != sum(counts.get(state, (0, 0))[0] for state in _FINISHED):
                    return None
                trials += [t for t in self._studies[study_id].trials.values() if t.state in finished]
        return sorted(trials, key=lambda t: t.number)

    def _count_by_state(self, study_id: int) -> dict[TrialState, tuple[int, int]]:
        """State → (trials in it, the sum of their ids), in one statement."""
        with self._backend.engine.connect() as connection:
            rows = connection.execute(_statements().count_by_state, {"study": study_id})
            return {TrialState(state): (int(count), int(ids or 0)) for state, count, ids in rows}


def _as_stored(value: Any) -> Any:
    """A JSON attr as the database gives it back (tuples become lists)."""
    return json.loads(json.dumps(value))


@functools.cache
def _statements() -> SimpleNamespace:
    """LocalTrialsCache's own statements on Optuna's tables, built once: on SQLite, building a statement
    costs more than running it."""
    import sqlalchemy
    from optuna.storages._rdb.models import (
        TrialIntermediateValueModel,
        TrialModel,
        TrialSystemAttributeModel,
        TrialUserAttributeModel,
    )

    tables = {"intermediate_value": TrialIntermediateValueModel.__table__,
              "user_attr": TrialUserAttributeModel.__table__, "system_attr": TrialSystemAttributeModel.__table__}
    key = {"intermediate_value": "step", "user_attr": "key", "system_attr": "key"}
    return SimpleNamespace(
        count_by_state=sqlalchemy.select(TrialModel.state, sqlalchemy.func.count(TrialModel.trial_id),
                                         sqlalchemy.func.sum(TrialModel.trial_id)).where(
            TrialModel.study_id == sqlalchemy.bindparam("study")).group_by(TrialModel.state),
        state=sqlalchemy.select(TrialModel.state).where(TrialModel.trial_id == sqlalchemy.bindparam("trial")),
        key=key,
        insert={name: table.insert() for name, table in tables.items()},
        update={name: table.update().where(table.c.trial_id == sqlalchemy.bindparam("trial"),
                                           table.c[key[name]] == sqlalchemy.bindparam("at_key"))
                for name, table in tables.items()},
    )
