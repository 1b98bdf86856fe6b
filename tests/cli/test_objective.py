"""``hpsearch run --objective``: the user's Optuna objective, unchanged, end to end through the command line: Optuna's
own PyTorch example with two workers and pruning, then show, report, export and its re-run; each objective that
cannot run; a raising one; the stop when the first trials all fail alike; a worker that does not trust it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from cli_invoke import invoke
from optuna.trial import TrialState
from storage_dump import logical_dump

from hpsearch.search.records import read_trial
from hpsearch.search.runner import _create_or_load
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage

EXAMPLE = Path(__file__).parents[2] / "examples" / "optuna_objective.py"
OBJECTIVES = '''
import optuna


def square(trial):
    x = trial.suggest_float("x", -1, 1)
    return x * x


def raises_below_zero(trial):
    x = trial.suggest_float("x", -1, 1)
    if x < 0:
        raise ValueError(f"x is negative: {x:.3f}")
    return x


def broken(trial):
    trial.suggest_float("x", 0, 1)
    raise RuntimeError("the GPU is gone")


def no_trial():
    return 1.0


NOT_CALLABLE = 3
'''


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working directory with the example and a file of small objectives."""
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "examples" / EXAMPLE.name)
    (tmp_path / "objectives.py").write_text(OBJECTIVES)
    return tmp_path


def hpsearch(*args: str, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")])}
                            if pythonpath else {})}
    return subprocess.run([sys.executable, "-m", "hpsearch", *args], cwd=cwd, env=env, capture_output=True,
                          check=False, text=True, timeout=600)


def trials_of(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(storage, heartbeat=None)).trials


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_optunas_example_runs_unchanged_with_two_workers_and_pruning_and_its_export_scores_its_value(
        work: Path) -> None:
    storage = f"sqlite:///{work / 'hp.db'}"
    done = hpsearch("run", "--objective", "examples/optuna_objective.py:objective", "--direction", "maximize",
                    "--n-trials", "8", "--strategy", "random", "--pruner", "asha", "--jobs", "2", "--storage", storage,
                    "--study", "mlp", "--quiet", cwd=work)
    assert done.returncode == 0, done.stderr
    assert "best value" in done.stdout
    trials = [t for t in trials_of(storage, "mlp") if t.state.is_finished()]  # a last ask may wait in the queue
    assert len(trials) == 8 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert len({read_trial(t).worker for t in trials}) == 2  # both workers took trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(sorted(t.intermediate_values) == list(range(10)) for t in complete)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(read_trial(t).reason == f"pruned at step {t.last_step}" for t in pruned)
    assert all(f"dropout_l{layer}" not in t.params for t in trials for layer in range(t.params["n_layers"], 3))

    shown = hpsearch("show", "mlp", "--storage", storage, "--trial", str(pruned[0].number), cwd=work)
    assert f"reason: pruned at step {pruned[0].last_step}" in shown.stdout, shown.stderr
    reported = hpsearch("report", "mlp", "--storage", storage, "--out", "report", cwd=work)
    assert reported.returncode == 0, reported.stderr
    assert {"history.png", "learning_curves.png"} <= {path.name for path in (work / "report").iterdir()}

    exported = hpsearch("export", "mlp", "--storage", storage, "--out", "best.json", cwd=work)
    assert exported.returncode == 0, exported.stderr
    best = json.loads((work / "best.json").read_text())
    assert best["objective"] == "examples/optuna_objective.py:objective" and "config" not in best
    assert best["value"] == max(t.value for t in complete)
    rerun = hpsearch("train", "--config", "best.json", "--json", cwd=work)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["value"] == best["value"]


@pytest.mark.parametrize(("objective", "extra", "message"), [
    ("nowhere.py:objective", [], "objective 'nowhere.py:objective': no file nowhere.py"),
    ("objectives.py:nothing", [], "objective 'objectives.py:nothing': objectives.py has no attribute 'nothing'"),
    ("objectives.py:NOT_CALLABLE", [], "objective 'objectives.py:NOT_CALLABLE': NOT_CALLABLE is a int, not a "
                                       "callable"),
    ("objectives.py:no_trial", [], "objective 'objectives.py:no_trial': no_trial() does not take a trial"),
    ("objectives.py:square", ["--strategy", "grid"], "strategy grid with objective 'objectives.py:square' needs the "
                                                     "objective's parameters declared"),
    ("objectives.py:square", ["--epochs", "3"], "--epochs sets hpsearch's training loop; objective "
                                                "'objectives.py:square' trains itself"),
], ids=["missing-file", "missing-attribute", "not-callable", "takes-no-trial", "grid-without-space",
        "train-flag"])
def test_an_objective_that_cannot_run_is_one_error_line_and_nothing_is_stored(
        objective: str, extra: list[str], message: str, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work)
    storage = f"sqlite:///{work / 'hp.db'}"
    code, _, err = invoke("run", "--objective", "objectives.py:square", "--n-trials", "2", "--study", "kept",
                          "--storage", storage, "--quiet")
    assert code == 0, err
    before = logical_dump(storage)
    code, out, err = invoke("run", "--objective", objective, *extra, "--n-trials", "2", "--study", "new",
                            "--storage", storage, "--quiet")
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert logical_dump(storage) == before


def test_a_raising_objective_fails_its_trial_with_the_exceptions_line_in_show_and_the_dashboard_note(
        work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work)
    storage = f"sqlite:///{work / 'hp.db'}"
    code, _, err = invoke("run", "--objective", "objectives.py:raises_below_zero", "--strategy", "random",
                          "--n-trials", "6", "--seed", "1", "--study", "half", "--storage", storage, "--quiet")
    assert code == 0, err
    trials = trials_of(storage, "half")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and len(failed) < len(trials) == 6
    line = f"ValueError: x is negative: {failed[0].params['x']:.3f}"
    code, out, _ = invoke("show", "half", "--storage", storage, "--trial", str(failed[0].number))
    assert f"reason: {line}" in out
    from optuna_dashboard import get_note

    study = optuna.load_study(study_name="half", storage=storage)
    note = get_note(optuna.trial.Trial(study, failed[0]._trial_id))  # as optuna-dashboard reads it
    assert note.startswith(f"**hpsearch** trial {failed[0].number}: **failed** ({line})")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_run_stops_with_one_error_line_when_its_first_trials_all_fail_alike(jobs: str, work: Path) -> None:
    storage = f"sqlite:///{work / 'hp.db'}"
    done = hpsearch("run", "--objective", "objectives.py:broken", "--n-trials", "20", "--jobs", jobs,
                    "--study", "broken", "--storage", storage, "--quiet", cwd=work)
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "all failed with 'RuntimeError: the GPU is gone'" in lines[0], done.stderr
    failed = [t for t in trials_of(storage, "broken") if read_trial(t).reason == "RuntimeError: the GPU is gone"]
    assert len(failed) == 3 if jobs == "1" else 3 <= len(failed) < 20


def test_a_worker_refuses_an_objective_it_does_not_trust_before_any_trial_and_runs_it_when_trusted(
        work: Path) -> None:
    """The study as ``hpsearch run`` stores it, with no trial yet: work for a worker whose operator did not name the
    objective's package."""
    storage = f"sqlite:///{work / 'hp.db'}"
    (work / "objmodule.py").write_text(OBJECTIVES)
    spec = StudySpec(name="shared", objective="objmodule:square", strategy="random", pruner="none", n_trials=3)
    _create_or_load(spec, open_storage(storage), None, None)
    more = ["--storage", storage, "--quiet"]
    refused = hpsearch("worker", "shared", *more, cwd=work, pythonpath=work)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: objective 'objmodule:square' of study 'shared' is not "
                                                   "trusted") and "--trust objmodule" in lines[0], refused.stderr
    assert trials_of(storage, "shared") == []
    trusted = hpsearch("worker", "shared", "--trust", "objmodule", *more, cwd=work, pythonpath=work)
    assert trusted.returncode == 0, trusted.stderr
    assert [t.state for t in trials_of(storage, "shared")] == [TrialState.COMPLETE] * 3


def test_a_stored_objective_study_goes_on_by_its_name_alone(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work)
    storage = f"sqlite:///{work / 'hp.db'}"
    code, _, err = invoke("run", "--objective", "objectives.py:square", "--direction", "maximize", "--n-trials", "2",
                          "--study", "again", "--storage", storage, "--quiet")
    assert code == 0, err
    code, out, err = invoke("run", "--study", "again", "--n-trials", "4", "--storage", storage, "--quiet")
    assert code == 0, err
    trials = trials_of(storage, "again")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert f"best value {max(t.value for t in trials):.4g}" in out  # still maximized, still its value
