"""The study and trial records: one reader and one writer each, versioned, and older records still read."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import optuna
import pytest

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.errors import HPSearchError
from hpsearch.search.records import (
    SCHEMA_VERSION,
    TRIAL_SCHEMA_VERSION,
    StudyRecord,
    TrialRecord,
    read_record,
    read_trial,
    write_record,
    write_trial,
)
from hpsearch.search.runner import run_study
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage
from hpsearch.search.storages.optuna_private.heartbeat import BEAT_ATTR
from hpsearch.status import Status

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


def test_a_trial_record_reads_back_and_a_retry_starts_from_its_identity() -> None:
    study = optuna.create_study()
    trial = study.ask()
    record = TrialRecord(config={"lr": 0.1}, seed=3, worker="host:1", checkpoint="c.pt", history=[{"epoch": 1}],
                         diagnosis={"label": "OK", "rule": "r"}, seconds=1.5, status=Status.COMPLETED)
    write_trial(trial, record)
    assert read_trial(trial) == record and read_trial(study.trials[0]) == record
    assert trial.user_attrs["hpsearch"]["schema"] == TRIAL_SCHEMA_VERSION
    assert read_trial(trial).identity() == TrialRecord(config={"lr": 0.1}, seed=3, worker="host:1", checkpoint="c.pt")


def test_a_trial_stored_with_one_attr_per_field_reads_as_schema_1() -> None:
    study = optuna.create_study()
    trial = study.ask()
    for key, value in {"config": {"lr": 0.1}, "seed": 0, "status": "pruned", "reason": "pruned at epoch 2"}.items():
        trial.set_user_attr(key, value)
    old = read_trial(trial)
    assert old.schema == 1 and old.status == Status.PRUNED and old.config == {"lr": 0.1} and old.history is None


def test_a_trial_record_of_a_newer_schema_is_refused() -> None:
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("hpsearch", {"schema": TRIAL_SCHEMA_VERSION + 1})
    with pytest.raises(HPSearchError, match=f"record of trial 0 has schema {TRIAL_SCHEMA_VERSION + 1}, newer"):
        read_trial(trial)


@pytest.mark.parametrize("batch", [None, 2])
def test_each_trial_writes_its_record_twice_and_no_first_heartbeat(batch: int | None, tmp_path: Path,
                                                                    digits: Data) -> None:
    """Per trial the journal holds one record write as it starts and one as it ends, whichever loop ran it;
    the beat Optuna's thread gives at a trial's start is not written (the start time says it)."""
    journal = tmp_path / "hp.journal"
    spec = StudySpec(strategy="random", n_trials=4, pruner="none", train=TrainConfig(epochs=2, hidden=(16,)))
    run_study(spec, open_storage(f"journal:{journal}"), data=digits, batch=batch)
    user_attrs: Counter[str] = Counter()
    system_attrs: Counter[str] = Counter()
    for line in journal.read_text().splitlines():  # a journal line names the attr it sets
        log = json.loads(line)
        user_attrs.update(log.get("user_attr", {}).keys() if "trial_id" in log else ())
        system_attrs.update(log.get("system_attr", {}).keys() if "trial_id" in log else ())
    assert user_attrs == {"hpsearch": 2 * 4}
    if batch is None:  # the batched loop beats by hand once an epoch, and from the second beat on they are written
        assert system_attrs[BEAT_ATTR] == 0
