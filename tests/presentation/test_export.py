from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpsearch.engine.config import TrainConfig, load_config_file
from hpsearch.engine.data import Data
from hpsearch.engine.training import train
from hpsearch.errors import HPSearchError
from hpsearch.presentation.export import SCHEMA_VERSION, export_best, write_export
from hpsearch.search.runner import run_study
from hpsearch.search.space import SearchSpace
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage


@pytest.fixture(scope="module")
def storage_url(tmp_path_factory: pytest.TempPathFactory, digits: Data) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('export') / 'studies.db'}"
    spec = StudySpec(name="small", strategy="random", metric="val_acc", n_trials=4, pruner="none",
                     train=TrainConfig(epochs=3, hidden=(64,)))
    run_study(spec, url, data=digits)
    return url


def test_export_holds_everything_to_reproduce_the_best_trial(storage_url: str) -> None:
    record = export_best("small", open_storage(storage_url))
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["study"] == "small" and record["metric"] == "val_acc" and record["direction"] == "maximize"
    assert record["config"]["lr"] == record["params"]["lr"]
    assert record["dataset"] == "digits" and record["seed"] == 0
    assert set(record["versions"]) >= {"hpsearch", "torch", "optuna", "python"}
    assert "exported_at" in record and "top" not in record


def test_training_the_exported_config_reproduces_the_value_exactly(storage_url: str, tmp_path: Path) -> None:
    path = tmp_path / "best.json"
    write_export(export_best("small", open_storage(storage_url)), path)
    record = json.loads(path.read_text())
    result = train(TrainConfig.from_mapping(load_config_file(path)))
    assert result.val_acc == record["value"]


def test_top_k_lists_the_best_trials_best_first(storage_url: str) -> None:
    record = export_best("small", open_storage(storage_url), top=3)
    values = [entry["value"] for entry in record["top"]]
    assert len(values) == 3 and values == sorted(values, reverse=True)
    assert record["top"][0]["trial"] == record["trial"]


def test_a_study_without_a_completed_trial_cannot_be_exported(tmp_path: Path, digits: Data) -> None:
    url = f"sqlite:///{tmp_path / 'diverged.db'}"
    poisoned = Data(digits.x_train * 1e38, digits.y_train, digits.x_val, digits.y_val, 10, "digits")
    run_study(StudySpec(name="bad", strategy="random", n_trials=1, train=TrainConfig(epochs=2, hidden=(8,))), url,
              data=poisoned)
    with pytest.raises(HPSearchError, match="study 'bad' has no completed trial to export yet"):
        export_best("bad", open_storage(url))
    with pytest.raises(HPSearchError, match=r"no study named 'nope' in this storage \(studies: bad\)"):
        export_best("nope", open_storage(url))


def test_writing_into_a_missing_folder_is_an_error_and_writes_nothing(storage_url: str, tmp_path: Path) -> None:
    with pytest.raises(HPSearchError, match="folder does not exist"):
        write_export(export_best("small", open_storage(storage_url)), tmp_path / "no" / "best.json")


def test_a_searched_space_other_than_lr_exports_its_params(digits: Data, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sched.db'}"
    space = SearchSpace.from_mapping({"schedule": {"choices": ["cosine"]}, "lr": {"low": 1e-3, "high": 1e-2}})
    run_study(StudySpec(name="s", strategy="random", n_trials=1, space=space, pruner="none",
                        train=TrainConfig(epochs=2, hidden=(8,))), url, data=digits)
    record = export_best("s", open_storage(url))
    assert record["config"]["schedule"] == "cosine" and set(record["params"]) == {"schedule", "lr"}
