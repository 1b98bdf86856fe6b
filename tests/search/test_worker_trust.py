"""Workers on a user's entry points, in real processes: ``--jobs`` runs them, and a worker started by hand
imports only what its operator trusts (files inside its folder, packages named with ``--trust``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.entry_points import is_trusted
from hpsearch.search.records import read_trial
from hpsearch.search.runner import _create_or_load
from hpsearch.search.space import SearchSpace
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

USERTASK = Path(__file__).parent.with_name("usertask.py")
SPACE = SearchSpace.from_mapping({"lr": {"low": 1e-3, "high": 1e-2, "log": True}})


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    shutil.copy(USERTASK, folder / "usertask.py")
    return folder


def hpsearch(*args: str, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    return subprocess.run([sys.executable, "-m", "hpsearch", *args], cwd=cwd, env=env, capture_output=True, check=False,
                          text=True, timeout=300)


def stored_study(storage: str, name: str, model: str, n_trials: int = 2) -> None:
    """A study as `hpsearch run` stores it (spec and versions), with no trial yet: work for a worker."""
    spec = StudySpec(name=name, strategy="random", n_trials=n_trials, pruner="none", space=SPACE,
                     train=TrainConfig(model=model, dataset="usertask.py:load", epochs=1, model_args={"width": 4}))
    _create_or_load(spec, open_storage(storage), None, None)


def completed(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=open_storage(storage, heartbeat=None))
    return [t for t in study.trials if t.state == TrialState.COMPLETE]


def test_two_workers_run_trials_of_an_entry_point_model(task_dir: Path) -> None:
    storage = f"sqlite:///{task_dir / 'hp.db'}"
    done = hpsearch("run", "--strategy", "random", "--n-trials", "8", "--epochs", "6", "--pruner", "none",
                    "--model", "usertask.py:cnn", "--dataset", "usertask.py:load", "--model-arg", "width=4",
                    "--jobs", "2", "--storage", storage, "--study", "jobs", "--quiet", cwd=task_dir)
    assert done.returncode == 0, done.stderr
    trials = completed(storage, "jobs")
    assert len(trials) == 8
    assert len({read_trial(t).worker for t in trials}) == 2  # both workers took trials
    assert {read_trial(t).config["model"] for t in trials} == {"usertask.py:cnn"}


def test_a_worker_refuses_an_untrusted_module_before_any_trial_and_runs_it_when_trusted(task_dir: Path) -> None:
    storage = f"sqlite:///{task_dir / 'hp.db'}"
    stored_study(storage, "modular", "usertask:cnn")
    refused = hpsearch("worker", "modular", "--storage", storage, "--quiet", cwd=task_dir, pythonpath=task_dir)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model 'usertask:cnn' of study 'modular' is not trusted")
    assert "--trust usertask" in lines[0] and str(task_dir) in lines[0]
    assert optuna.load_study(study_name="modular", storage=open_storage(storage, heartbeat=None)).trials == []
    trusted = hpsearch("worker", "modular", "--storage", storage, "--trust", "usertask", "--quiet", cwd=task_dir,
                       pythonpath=task_dir)
    assert trusted.returncode == 0, trusted.stderr
    assert len(completed(storage, "modular")) == 2


def test_a_worker_refuses_a_file_outside_its_folder(task_dir: Path) -> None:
    storage = f"sqlite:///{task_dir / 'hp.db'}"
    outside = task_dir.parent / "elsewhere"
    outside.mkdir()
    shutil.copy(USERTASK, outside / "usertask.py")
    stored_study(storage, "outside", "../elsewhere/usertask.py:cnn")
    refused = hpsearch("worker", "outside", "--storage", storage, "--quiet", cwd=task_dir)
    assert refused.returncode == 2
    assert "model '../elsewhere/usertask.py:cnn' of study 'outside' is not trusted" in refused.stderr
    assert "--trust ../elsewhere/usertask.py" in refused.stderr
    assert optuna.load_study(study_name="outside", storage=open_storage(storage, heartbeat=None)).trials == []


def test_a_worker_that_cannot_import_its_entry_point_stops_before_any_trial(task_dir: Path) -> None:
    storage = f"sqlite:///{task_dir / 'hp.db'}"
    stored_study(storage, "gone", "usertask.py:cnn")
    elsewhere = task_dir.parent / "empty"
    elsewhere.mkdir()
    failed = hpsearch("worker", "gone", "--storage", storage, "--quiet", cwd=elsewhere)
    assert failed.returncode == 2
    assert failed.stderr.strip() == f"error: dataset 'usertask.py:load': no file usertask.py (looked in {elsewhere})"
    assert optuna.load_study(study_name="gone", storage=open_storage(storage, heartbeat=None)).trials == []


def test_a_worker_imports_a_trusted_files_neighbours(task_dir: Path) -> None:
    # extra.py: from shapes import load
    shutil.copytree(Path(__file__).parent.with_name("userproject"), task_dir / "sub")
    storage = f"sqlite:///{task_dir / 'hp.db'}"
    spec = StudySpec(name="neighbours", strategy="random", n_trials=1, pruner="none", space=SPACE,
                     train=TrainConfig(dataset="sub/extra.py:load", epochs=1, hidden=(8,)))
    _create_or_load(spec, open_storage(storage), None, None)
    done = hpsearch("worker", "neighbours", "--storage", storage, "--quiet", cwd=task_dir)
    assert done.returncode == 0, done.stderr
    assert len(completed(storage, "neighbours")) == 1


@pytest.mark.parametrize(("entry_point", "trusted", "allowed"), [
    ("mytask.py:net", (), True),
    ("models/mytask.py:net", (), True),
    ("../mytask.py:net", (), False),
    ("/srv/mytask.py:net", (), False),
    ("/srv/mytask.py:net", ("/srv/mytask.py",), True),
    ("mypkg.models:net", (), False),
    ("mypkg.models:net", ("mypkg",), True),
    ("mypkgx.models:net", ("mypkg",), False),
])
def test_the_trust_rule(entry_point: str, trusted: tuple[str, ...], allowed: bool) -> None:
    assert is_trusted(entry_point, trusted) is allowed
