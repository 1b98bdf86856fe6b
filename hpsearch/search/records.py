"""The record hpsearch keeps with each study (its ``hpsearch`` user attr): one reader, one writer, a schema.

It holds the spec the study was created with (what workers run, what a re-run is checked against),
the package versions, the LR range test when one ran, and for a coarse-to-fine stage its family's name,
stage number and spec. Records written before the schema was numbered read as schema 1; a record of a
newer schema than this hpsearch knows is refused rather than misread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import optuna

from hpsearch.errors import HPSearchError

__all__ = ["RECORD_ATTR", "SCHEMA_VERSION", "StudyRecord", "read_record", "write_record"]

RECORD_ATTR = "hpsearch"
SCHEMA_VERSION = 1


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
