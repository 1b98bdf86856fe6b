"""The study record: one reader and one writer, versioned, and older records still read."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.errors import HPSearchError
from hpsearch.search.records import SCHEMA_VERSION, StudyRecord, read_record, write_record
from hpsearch.spec import StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_written_record_reads_back_whole() -> None:
    study = optuna.create_study()
    record = StudyRecord(spec=StudySpec(name="x").to_dict(), versions={"hpsearch": "0.1.0"},
                         coarse_to_fine={"name": "x", "stage": 1, "spec": {"study": {"strategy": "coarse-to-fine"}}})
    write_record(study, record)
    assert read_record(study) == record
    assert study.user_attrs["hpsearch"]["schema"] == SCHEMA_VERSION
    assert read_record(study).family_table() == {"strategy": "coarse-to-fine"}
    assert read_record(study).table("study")["name"] == "x"


def test_a_record_from_before_the_schema_reads_as_schema_1_and_a_foreign_study_as_empty() -> None:
    old = {"hpsearch": {"spec": {"study": {"strategy": "tpe"}}, "versions": {}}}
    assert read_record(old).schema == 1 and read_record(old).table("study") == {"strategy": "tpe"}
    foreign = read_record(optuna.create_study())
    assert not foreign.created_by_hpsearch and foreign.table("space") == {}


def test_a_record_of_a_newer_schema_is_refused() -> None:
    study = optuna.create_study(study_name="future")
    study.set_user_attr("hpsearch", {"schema": SCHEMA_VERSION + 1, "spec": {}})
    with pytest.raises(HPSearchError, match="record of study 'future' has schema 2, newer than this hpsearch reads"):
        read_record(study)
