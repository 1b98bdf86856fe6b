"""The round trip of a study's settings over generated spec files: TOML → StudySpec → the study's stored record →
a trial's record → export JSON → ``hpsearch train --config`` gives the very config the trial trained."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from input_strategies import spec_tables, toml_text
from typer.testing import CliRunner

from hpsearch.cli import app
from hpsearch.engine import task, training
from hpsearch.engine.config import TrainConfig
from hpsearch.presentation.export import export_best, write_export
from hpsearch.search.objective import start_trial
from hpsearch.search.records import StudyRecord, write_record
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage
from hpsearch.search.worker import stored_spec


class _Trained:
    """What ``train`` returns, as far as ``train --json`` reads it."""

    def to_dict(self) -> dict[str, Any]:
        return {}


def config_train_runs(path: Path) -> TrainConfig:
    """The config ``hpsearch train --config PATH`` would train (training and data loading left out)."""
    seen: list[TrainConfig] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(task, "load_checked", lambda config: None)
        patch.setattr(training, "train", lambda config, data, **_: seen.append(config) or _Trained())
        result = CliRunner().invoke(app, ["train", "--config", str(path), "--json"])
    assert result.exit_code == 0, result.output
    return seen[0]


@settings(max_examples=max(10, settings.default.max_examples // 4))  # a journal file and the CLI each example
@given(spec_tables(), st.floats(-1e6, 1e6))
def test_a_spec_file_comes_back_through_the_stored_study_and_the_export_to_train(tables: dict[str, Any],
                                                                                  value: float) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "spec.toml").write_text(toml_text(tables))
        spec = StudySpec.from_sources(folder / "spec.toml")
        url = f"journal:{folder / 'hp.journal'}"
        study = optuna.create_study(study_name=spec.study_name, storage=open_storage(url, heartbeat=None),
                                    direction=spec.direction, sampler=optuna.samplers.RandomSampler(seed=0))
        write_record(study, StudyRecord(spec=spec.to_dict()))
        trial = study.ask()
        config, _ = start_trial(trial, spec)
        study.tell(trial, value)

        fresh = open_storage(url, heartbeat=None)  # as another process reads the storage
        stored = stored_spec(optuna.load_study(study_name=spec.study_name, storage=fresh), fresh)
        assert stored == spec.replace(name=spec.study_name, coarse_to_fine=stored.coarse_to_fine)
        write_export(export_best(spec.study_name, fresh), folder / "best.json")
        assert config_train_runs(folder / "best.json") == config
