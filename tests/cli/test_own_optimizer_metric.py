"""``--optimizer file.py:fn``, ``--metrics file.py:fn`` and ``--metric NAME --direction`` through the CLI: the
examples run, show / report / export say the metric, and each bad input is one error line with nothing stored."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import optuna
import pytest
from cli_invoke import invoke
from optuna.trial import TrialState

from hpsearch.search.records import read_trial
from hpsearch.search.storages import open_storage

ROOT = Path(__file__).resolve().parents[2]
USEROPTIM = ROOT / "tests" / "useroptim.py"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the examples, the studies and useroptim.py, as a reader has them."""
    for name in ("examples", "studies"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(USEROPTIM, tmp_path / "useroptim.py")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_rmsprop_example_trains_digits_past_95_percent(folder: Path) -> None:
    code, out, err = invoke("train", "--optimizer", "examples/rmsprop_optimizer.py:rmsprop", "--optimizer-arg",
                            "alpha=0.98", "--lr", "2e-3", "--epochs", "6", "--batch-size", "64", "--hidden", "64",
                            "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["config"]["optimizer_args"] == {"alpha": 0.98}
    assert result["val_acc"] >= 0.95


def test_the_no_decay_on_biases_example_passes_the_checks(folder: Path) -> None:
    code, out, err = invoke("check", "--optimizer", "examples/rmsprop_optimizer.py:adamw_no_decay_on_biases",
                            "--optimizer-arg", "beta2=0.99", "--lr", "1e-3", "--json")
    assert code == 0, out + err
    assert {r["name"]: r["outcome"] for r in json.loads(out)}["weight decay"] == "PASS"


def test_the_spec_of_both_examples_runs_shows_reports_and_exports_its_macro_f1(folder: Path) -> None:
    storage = f"sqlite:///{folder / 'hp.db'}"
    code, out, err = invoke("run", "--spec", "studies/rmsprop.toml", "--n-trials", "3", "--storage", storage)
    assert code == 0, out + err
    assert "best macro_f1 " in out
    study = optuna.load_study(study_name="rmsprop", storage=open_storage(storage))
    assert study.direction.name == "MAXIMIZE"
    for trial in study.trials:
        history = read_trial(trial).history or []
        assert trial.value == history[-1]["user_metrics"]["macro_f1"]
        assert read_trial(trial).config["optimizer_args"] == {"momentum": 0.5,
                                                              "alpha": trial.params["optimizer_args.alpha"]}
    code, out, err = invoke("show", "rmsprop", "--trial", "0", "--storage", storage)
    assert code == 0, err
    header = next(line for line in out.splitlines() if "train_loss" in line)
    assert header.split()[-2:] == ["macro_f1", "top3_acc"]
    assert invoke("report", "rmsprop", "--out", "report", "--storage", storage)[0] == 0
    assert "metric: macro_f1 (maximize)" in (folder / "report" / "index.md").read_text()
    assert invoke("export", "rmsprop", "--out", "best.json", "--storage", storage)[0] == 0
    exported = json.loads((folder / "best.json").read_text())
    assert (exported["metric"], exported["direction"]) == ("macro_f1", "maximize")
    assert exported["value"] == study.best_value
    code, out, err = invoke("train", "--config", "best.json")
    assert code == 0, err
    header = next(line for line in out.splitlines() if "train_loss" in line)
    assert header.split()[-2:] == ["macro_f1", "top3_acc"]
    assert f"macro_f1 {exported['value']:.4g}, top3_acc " in out.splitlines()[-1]


@pytest.mark.parametrize("direction", [[], ["--direction", "maximize"]], ids=["its own direction", "said again"])
def test_a_built_in_metric_keeps_its_direction_and_is_each_trials_value(direction: list[str], folder: Path) -> None:
    storage = f"sqlite:///{folder / 'hp.db'}"
    code, out, err = invoke("run", "--metric", "val_acc", *direction, "--n-trials", "2", "--epochs", "1",
                            "--hidden", "16", "--pruner", "none", "--storage", storage, "--quiet")
    assert code == 0, out + err
    study = optuna.load_study(study_name="digits-tpe", storage=open_storage(storage))
    assert study.direction.name == "MAXIMIZE"
    assert [t.value for t in study.trials] == [read_trial(t).history[-1]["val_acc"] for t in study.trials]


BAD_INPUTS = [
    (["--optimizer", "useroptim.py:raises"],
     "optimizer 'useroptim.py:raises': the factory raised ValueError: lion needs a GPU"),
    (["--optimizer", "useroptim.py:returns_none"],
     "optimizer 'useroptim.py:returns_none': the factory must return a torch.optim.Optimizer, got NoneType"),
    (["--optimizer", "useroptim.py:rmsprop", "--optimizer-arg", "beta=0.9"],
     "optimizer_args.beta: optimizer 'useroptim.py:rmsprop' takes no argument 'beta'"),
    (["--optimizer", "useroptim.py:rmsprop", "--optimizer-arg", "alpha"], "optimizer-arg must be NAME=VALUE"),
    (["--optimizer-arg", "alpha=0.9"], "optimizer_args must be empty with the built-in optimizer 'adamw'"),
    (["--optimizer", "nowhere.py:opt"], "optimizer 'nowhere.py:opt': no file nowhere.py"),
    (["--metrics", "useroptim.py:metrics_list"],
     "metrics 'useroptim.py:metrics_list' must return a dict of name to number, got list"),
    (["--metrics", "useroptim.py:metrics_raises"], "metrics 'useroptim.py:metrics_raises' raised RuntimeError"),
    (["--metric", "macro_f1"], "direction must be given for metric 'macro_f1', which is not built in"),
    (["--metric", "macro_f1", "--direction", "maximize"],
     "metric 'macro_f1' is not reported: without --metrics file.py:fn, each epoch reports val_loss, val_acc"),
    (["--metrics", "useroptim.py:macro_f1", "--metric", "f1", "--direction", "maximize"],
     "metric 'f1' is not reported: metrics 'useroptim.py:macro_f1' returns val_loss, val_acc, macro_f1, samples"),
    (["--metric", "val_loss", "--direction", "maximize"], "direction must be minimize for metric val_loss"),
    (["--optimizer", "useroptim.py:rmsprop", "--batch", "2"],
     "--batch steps its stacked members with its own AdamW and reports val_loss and val_acc only, got optimizer"),
    (["--metrics", "useroptim.py:macro_f1", "--batch", "2"],
     "--batch steps its stacked members with its own AdamW and reports val_loss and val_acc only, got metrics"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INPUTS, ids=[" ".join(f) for f, _ in BAD_INPUTS])
def test_bad_input_is_one_error_line_and_stores_nothing(flags: list[str], message: str, folder: Path) -> None:
    storage = f"sqlite:///{folder / 'hp.db'}"
    code, out, err = invoke("run", "--n-trials", "1", "--epochs", "1", "--storage", storage, "--quiet", *flags)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in out + err
    assert optuna.get_all_study_names(storage) == []


@pytest.mark.slow  # two worker processes start: about 15 s
def test_worker_processes_build_the_users_optimizer_and_report_the_users_metric(folder: Path) -> None:
    storage = f"sqlite:///{folder / 'hp.db'}"
    code, out, err = invoke("run", "--strategy", "random", "--n-trials", "4", "--epochs", "2", "--hidden", "16",
                            "--pruner", "none", "--optimizer", "useroptim.py:rmsprop", "--metrics",
                            "useroptim.py:macro_f1", "--metric", "macro_f1", "--direction", "maximize", "--jobs", "2",
                            "--study", "jobs", "--storage", storage, "--quiet")
    assert code == 0, out + err
    study = optuna.load_study(study_name="jobs", storage=open_storage(storage))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4
    assert all(not (read_trial(t).worker or "").endswith(f":{os.getpid()}") for t in trials)  # another process's
    assert [t.value for t in trials] == [read_trial(t).history[-1]["user_metrics"]["macro_f1"] for t in trials]
