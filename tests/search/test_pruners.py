"""The pruners by name: what each builds, asha's rungs, that each stops trials in a study, and asha from the CLI, a
spec and --batch."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from cli_invoke import invoke
from optuna.pruners import HyperbandPruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpsearch.choices import PRUNERS
from hpsearch.cli import app
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.search.pruners import make_pruner
from hpsearch.search.records import read_trial
from hpsearch.search.runner import run_study
from hpsearch.search.space import SearchSpace
from hpsearch.search.spec import StudySpec, load_spec_file

runner = CliRunner()
# On digits no lr up to 1e-2 diverges, and those near 1e-5 learn slowly: every stopped trial is the pruner's doing.
SLOW_TO_FAST = SearchSpace.from_mapping({"lr": {"low": 1e-5, "high": 1e-2, "log": True}})
BUDGET = 6
ASHA_RUN = ["run", "--pruner", "asha", "--epochs", "3", "--storage", "memory", "--hidden", "32"]


def outcome_counts(out: str) -> tuple[int, int]:
    """(complete, pruned) from the progress line the run ends with."""
    found = re.findall(r"(\d+) complete, (\d+) pruned, 0 failed", out)
    assert found, out
    complete, pruned = found[-1]
    return int(complete), int(pruned)


@pytest.mark.parametrize(("name", "kind"), [("median", MedianPruner), ("hyperband", HyperbandPruner),
                                            ("asha", SuccessiveHalvingPruner), ("none", NopPruner)])
def test_every_pruner_name_builds_its_optuna_pruner(name: str, kind: type) -> None:
    assert name in PRUNERS
    assert isinstance(make_pruner(name, epochs=3), kind)


def test_asha_judges_a_trial_at_its_first_epoch_against_those_there_before_it() -> None:
    study = optuna.create_study(pruner=make_pruner("asha", epochs=9))
    first = study.ask()
    first.report(1.0, 1)
    assert not first.should_prune()  # alone at the rung: nothing to lose to, nothing waited for
    second = study.ask()
    second.report(2.0, 1)
    assert second.should_prune()  # epoch 1 is a rung (min_resource=1, no "auto" wait for a finished trial)
    third = study.ask()
    third.report(0.5, 1)
    assert not third.should_prune()
    third.report(0.4, 2)
    assert not third.should_prune()  # the next rung is epoch 3 (reduction_factor=3)


@pytest.mark.parametrize(("name", "batch"), [
    pytest.param("median", None, id="median-one-at-a-time", marks=pytest.mark.slow),  # 15 s: most trials complete
    pytest.param("median", 4, id="median-batched"),
    pytest.param("hyperband", None, id="hyperband-one-at-a-time"),
    pytest.param("hyperband", 4, id="hyperband-batched"),
    pytest.param("asha", None, id="asha-one-at-a-time"),
    pytest.param("asha", 4, id="asha-batched"),
])
def test_each_pruner_stops_slow_learners_before_the_budget_where_nothing_diverges(name: str, batch: int | None,
                                                                                  digits: Data) -> None:
    spec = StudySpec(strategy="random", n_trials=12, pruner=name, space=SLOW_TO_FAST,
                     train=TrainConfig(epochs=BUDGET, hidden=(32,)))
    study = run_study(spec, "memory", data=digits, batch=batch)
    assert {read_trial(trial).status for trial in study.trials} == {"completed", "pruned"}  # none diverged
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, f"{name} stopped no trial"
    for trial in pruned:
        record = read_trial(trial)
        epochs = len(record.history)
        assert epochs < BUDGET and record.reason == f"pruned at epoch {epochs}"
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))


def test_run_with_asha_from_the_cli_prunes_and_completes() -> None:
    code, out, err = invoke(*ASHA_RUN, "--n-trials", "6")
    assert code == 0, err
    complete, pruned = outcome_counts(out)
    assert complete + pruned == 6 and complete >= 1 and pruned >= 1
    assert "best val_loss" in out


def test_run_help_lists_asha() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})  # wide: the choices on one line
    assert result.exit_code == 0 and "<median|hyperband|asha|none>" in result.stdout


def test_batched_run_with_asha_tells_every_trial() -> None:
    code, out, err = invoke(*ASHA_RUN, "--n-trials", "4", "--batch", "2", "--epochs", "2")
    assert code == 0, err
    complete, pruned = outcome_counts(out)
    assert complete + pruned == 4 and complete >= 1


def test_a_spec_with_asha_loads(tmp_path: Path) -> None:
    path = tmp_path / "asha.toml"
    path.write_text('[study]\nname = "a"\nstrategy = "random"\npruner = "asha"\nn_trials = 4\n')
    spec = StudySpec.from_mapping(load_spec_file(path), source=str(path))
    assert spec.pruner == "asha"
    assert isinstance(make_pruner(spec.pruner, epochs=spec.train.epochs), SuccessiveHalvingPruner)


@pytest.mark.parametrize(("source", "expected"), [
    ("flag", "'sha' is not one of 'median', 'hyperband', 'asha', 'none'"),
    ("spec", "pruner must be one of median, hyperband, asha, none, got 'sha'"),
], ids=["flag", "spec"])
def test_an_unknown_pruner_from_a_flag_or_a_spec_is_one_error_line_naming_it(source: str, expected: str,
                                                                             tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[study]\npruner = "sha"\n')
    args = ["--pruner", "sha"] if source == "flag" else ["--spec", str(path)]
    code, out, err = invoke("run", "--n-trials", "2", "--storage", "memory", *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err


@pytest.mark.parametrize("name", ["median", "hyperband", "asha"])
def test_no_trial_is_stopped_before_the_pruner_warmup(name: str) -> None:
    """Trials far behind the others are let through the epochs before ``warmup``, and stopped at it (under
    hyperband, those of the bracket whose first rung is the warmup; the study's name fixes the brackets)."""
    study = optuna.create_study(study_name="warmup", pruner=make_pruner(name, epochs=9, warmup=3))
    for _ in range(6):
        good = study.ask()
        for epoch in range(1, 10):
            good.report(1.0 / epoch, epoch)
            good.should_prune()
        study.tell(good, 1.0 / 9)
    stopped_at = []
    for _ in range(4):
        bad = study.ask()
        decisions = []
        for epoch in (1, 2, 3):
            bad.report(100.0, epoch)
            decisions.append(bad.should_prune())
        stopped_at.append(decisions.index(True) + 1 if True in decisions else None)
        study.tell(bad, state=optuna.trial.TrialState.PRUNED)
    assert set(stopped_at) <= {3, None} and 3 in stopped_at


def test_a_pruner_warmup_from_a_spec_is_checked_and_stored_only_when_given(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('[study]\nname = "w"\npruner_warmup = 4\n')
    assert StudySpec.from_mapping(load_spec_file(path)).to_dict()["study"]["pruner_warmup"] == 4
    assert "pruner_warmup" not in StudySpec().to_dict()["study"]  # a study stored before it existed still matches
    path.write_text('[study]\npruner_warmup = 0\n')
    code, out, err = invoke("run", "--n-trials", "2", "--storage", "memory", "--spec", str(path))
    assert code == 2 and err.strip() == "error: pruner_warmup must be >= 1 epoch, got 0", (out, err)
