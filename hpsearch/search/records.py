"""The records hpsearch keeps with each study and each trial (their ``hpsearch`` user attr): one reader,
one writer and a schema for each.

A study's record holds the spec the study was created with (what workers run, what a re-run is checked against),
the package versions, the LR range test when one ran, and for a coarse-to-fine stage its family's name,
stage number and spec. Records written before the schema was numbered read as schema 1; a record of a
newer schema than this hpsearch knows is refused rather than misread.

A trial's record holds what the trial is (config, seed, worker, checkpoint), written once when it
starts, and what became of it (history, diagnosis, seconds, status, reason), written once more when it
ends: two storage writes a trial, where one user attr per fact cost seven (each a journal line and its
fsync, or an SQLite commit). Trials stored before, with one user attr per fact, read the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.trial import BaseTrial, FrozenTrial, TrialState

from hpsearch.errors import HPSearchError

__all__ = ["RECORD_ATTR", "SCHEMA_VERSION", "TRIAL_SCHEMA_VERSION", "StudyRecord", "TrialRecord", "is_carried",
           "own_trials", "read_record", "read_trial", "write_record", "write_trial"]

RECORD_ATTR = "hpsearch"
SCHEMA_VERSION = 1
TRIAL_SCHEMA_VERSION = 2  # 1: one user attr per field, before the trial record


@dataclass(frozen=True)
class StudyRecord:
    """What hpsearch stored with a study; a study it did not create reads as an empty record."""

    spec: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    lr_range_test: dict[str, Any] | None = None
    coarse_to_fine: dict[str, Any] | None = None  # {"name", "stage", "spec"} of a stage's family
    schema: int = SCHEMA_VERSION

    @property
    def created_by_hpsearch(self) -> bool:
        return self.spec is not None

    def table(self, name: str) -> dict[str, Any]:
        """One table of the stored spec (``study``, ``space``, ``train``…), empty when absent."""
        return dict((self.spec or {}).get(name, {}))

    def family_table(self) -> dict[str, Any]:
        """The ``[study]`` table of the search as asked: a coarse-to-fine family's own, else this study's."""
        return dict(self.coarse_to_fine["spec"]["study"]) if self.coarse_to_fine else self.table("study")

    def with_spec(self, spec: dict[str, Any]) -> StudyRecord:
        return replace(self, spec=spec)

    def to_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = {"schema": self.schema, "spec": self.spec, "versions": self.versions}
        for key in ("lr_range_test", "coarse_to_fine"):
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        return values


def read_record(source: optuna.Study | Mapping[str, Any]) -> StudyRecord:
    """The record of a study (or of its user attrs, as a study summary has them)."""
    user_attrs = source.user_attrs if isinstance(source, optuna.Study) else source
    stored = user_attrs.get(RECORD_ATTR)
    if not isinstance(stored, Mapping):
        return StudyRecord(schema=0)
    schema = int(stored.get("schema", 1))
    if schema > SCHEMA_VERSION:
        name = f" of study {source.study_name!r}" if isinstance(source, optuna.Study) else ""
        raise HPSearchError(f"the hpsearch record{name} has schema {schema}, newer than this hpsearch reads "
                            f"({SCHEMA_VERSION}): upgrade hpsearch")
    return StudyRecord(spec=stored.get("spec"), versions=dict(stored.get("versions", {})),
                       lr_range_test=stored.get("lr_range_test"), coarse_to_fine=stored.get("coarse_to_fine"),
                       schema=schema)


def write_record(study: optuna.Study, record: StudyRecord) -> None:
    """Store ``record`` with ``study``: one user-attr write, so a reader sees the old record or the new one."""
    study.set_user_attr(RECORD_ATTR, {**record.to_dict(), "schema": SCHEMA_VERSION})


@dataclass(frozen=True)
class TrialRecord:
    """What hpsearch stored with a trial: what it is, and once it ended, what became of it."""

    config: dict[str, Any] | None = None  # the full TrainConfig
    seed: int | None = None
    worker: str | None = None  # host:pid that ran it, where to look when one fails
    checkpoint: str | None = None  # the file saved each epoch; a retry continues from it
    history: list[dict[str, Any]] | None = None  # per-epoch metrics, None where a value was not finite
    diagnosis: dict[str, Any] | None = None  # label and rule from hpsearch.engine.diagnosis
    seconds: float | None = None
    status: str | None = None  # a hpsearch.status.Status
    reason: str | None = None
    resumed_from_epoch: int | None = None
    # "STUDY trial N": a coarse-to-fine stage holds the earlier stages' trials in its ranges as finished
    # trials of its own, for its sampler to start from; they are not counted, shown or exported again.
    carried_from: str | None = None
    schema: int = TRIAL_SCHEMA_VERSION

    def identity(self) -> TrialRecord:
        """Only what the trial is, not what became of it: what a retry starts from."""
        return TrialRecord(config=self.config, seed=self.seed, worker=self.worker, checkpoint=self.checkpoint)

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, with the schema: what is stored."""
        values = {name: getattr(self, name) for name in _TRIAL_FIELDS if getattr(self, name) is not None}
        return {"schema": TRIAL_SCHEMA_VERSION, **values}


_TRIAL_FIELDS = tuple(name for name in TrialRecord.__dataclass_fields__ if name != "schema")


def is_carried(trial: FrozenTrial) -> bool:
    """Whether ``trial`` is a copy of an earlier stage's trial (TrialRecord.carried_from)."""
    stored = trial.user_attrs.get(RECORD_ATTR)
    return isinstance(stored, Mapping) and stored.get("carried_from") is not None


def own_trials(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
    """The trials ``study`` ran itself: without those carried over from earlier stages, which the
    stages before it count, show and export already."""
    return [t for t in study.get_trials(deepcopy=False, states=states) if not is_carried(t)]


def read_trial(trial: FrozenTrial | BaseTrial) -> TrialRecord:
    """The record of a trial: its ``hpsearch`` user attr, or the flat user attrs of schema 1."""
    user_attrs = trial.user_attrs
    stored = user_attrs.get(RECORD_ATTR)
    if not isinstance(stored, Mapping):
        return TrialRecord(**{name: user_attrs[name] for name in _TRIAL_FIELDS if name in user_attrs}, schema=1)
    schema = int(stored.get("schema", TRIAL_SCHEMA_VERSION))
    if schema > TRIAL_SCHEMA_VERSION:
        raise HPSearchError(f"the hpsearch record of trial {trial.number} has schema {schema}, newer than this "
                            f"hpsearch reads ({TRIAL_SCHEMA_VERSION}): upgrade hpsearch")
    return TrialRecord(**{name: stored[name] for name in _TRIAL_FIELDS if name in stored}, schema=schema)


def write_trial(trial: optuna.Trial, record: TrialRecord) -> None:
    """Store ``record`` with a running trial: one user-attr write, the whole record."""
    trial.set_user_attr(RECORD_ATTR, record.to_dict())
