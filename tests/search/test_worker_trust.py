"""Workers on a user's entry points, in real processes: ``--jobs`` runs them, and a worker started by hand
imports only what its operator trusts (files inside its folder, packages named with ``--trust``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from storage_dump import logical_dump
from typer.testing import CliRunner

from hpsearch.cli import app
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.entry_points import is_trusted
from hpsearch.search import worker_process
from hpsearch.search.records import read_trial
from hpsearch.search.runner import _create_or_load
from hpsearch.search.space import SearchSpace
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage
from hpsearch.search.worker import WorkerOptions

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
    """``hpsearch ARGS`` in a process of its own in ``cwd``, with ``pythonpath`` first on its import path (the rest of
    PYTHONPATH kept, so it imports the hpsearch under test)."""
    paths = [str(pythonpath)] if pythonpath else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])])}
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


# A model, a dataset and a loss of the user's, each in a module of its own (copies of usertask.py on the import path,
# not files inside the working directory), so each needs a ``--trust`` of its own.
OWN_ENTRY_POINTS = {"model": "usermodel:regressor", "dataset": "userdata:load_regression", "loss": "userloss:l1"}
OWN_MODULES = {field: entry_point.partition(":")[0] for field, entry_point in OWN_ENTRY_POINTS.items()}
OWN_TRAIN = TrainConfig(epochs=1, model_args={"width": 4}, **OWN_ENTRY_POINTS)


@pytest.fixture
def own_modules(task_dir: Path) -> Path:
    """The folder of the modules OWN_ENTRY_POINTS name, inside ``task_dir``."""
    folder = task_dir / "lib"
    folder.mkdir()
    for module in OWN_MODULES.values():
        shutil.copy(USERTASK, folder / f"{module}.py")
    return folder


def store_own_study(storage: str, name: str) -> None:
    """A study of OWN_TRAIN as `hpsearch run` stores it, with no trial yet."""
    spec = StudySpec(name=name, strategy="random", n_trials=1, pruner="none", metric="val_loss", space=SPACE,
                     train=OWN_TRAIN)
    _create_or_load(spec, open_storage(storage), None, None)


def test_run_jobs_trusts_its_own_model_dataset_and_loss_in_its_workers(task_dir: Path, own_modules: Path) -> None:
    """Each is a module that a worker refuses without its ``--trust`` (the test below); the run hands its workers
    that trust, so they train."""
    storage = f"sqlite:///{task_dir / 'hp.db'}"
    done = hpsearch("run", "--strategy", "random", "--n-trials", "2", "--epochs", "1", "--pruner", "none",
                    "--metric", "val_loss", *(f"--{field}={value}" for field, value in OWN_ENTRY_POINTS.items()),
                    "--model-arg", "width=4", "--no-check", "--jobs", "2", "--storage", storage, "--study", "own",
                    "--quiet", cwd=task_dir, pythonpath=own_modules)
    assert done.returncode == 0, done.stderr
    assert len(completed(storage, "own")) == 2


def cli_worker(options: WorkerOptions, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``hpsearch worker`` on these options' study and storage, trusting what they trust: exit code and stderr."""
    result = CliRunner().invoke(app, ["worker", options.study, "--storage", str(options.storage),
                                      *(arg for module in options.trust for arg in ("--trust", module)), "--quiet"])
    return result.exit_code, result.stderr


def pool_worker(options: WorkerOptions, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The worker process ``run --jobs`` starts (hpsearch.search.worker_process), told these options."""
    code = worker_process.main([options.to_json()])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("worker", [cli_worker, pool_worker], ids=["hpsearch-worker", "worker-process"])
@pytest.mark.parametrize("field", list(OWN_ENTRY_POINTS))
def test_a_worker_refuses_an_untrusted_model_dataset_or_loss_in_one_line_and_writes_nothing(
    task_dir: Path, own_modules: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    field: str, worker: Callable[[WorkerOptions, pytest.CaptureFixture[str]], tuple[int, str]],
) -> None:
    """The other two trusted, so the one left out is refused whichever field it is."""
    storage = f"sqlite:///{task_dir / 'hp.db'}"
    store_own_study(storage, "own")
    before = logical_dump(storage)
    monkeypatch.chdir(task_dir)
    monkeypatch.setattr(worker_process, "prepare_process", lambda: None)  # no SIGTERM handler or gc freeze in pytest
    others = tuple(module for other, module in OWN_MODULES.items() if other != field)
    code, err = worker(WorkerOptions("own", storage, trust=others), capsys)
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: {field} {OWN_ENTRY_POINTS[field]!r} of study 'own' is not trusted"), line
    assert line.endswith(f"add --trust {OWN_MODULES[field]} if you trust whoever writes to this storage")
    assert OWN_MODULES[field] not in sys.modules  # refused before it was imported
    assert logical_dump(storage) == before

