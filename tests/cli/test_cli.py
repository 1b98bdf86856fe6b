from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from cli_invoke import invoke
from conftest import TrainedEpochs
from storage_dump import logical_dump
from typer.testing import CliRunner

from hpsearch.cli import app
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.task import ADAM_BETAS
from hpsearch.search.space import DEFAULT_SPACE
from hpsearch.search.spec import DEFAULT_METRIC, DEFAULT_TRIALS, CoarseToFine, StudySpec
from hpsearch.search.storages import DEFAULT_STORAGE

runner = CliRunner()


def test_train_prints_a_table_and_a_final_line() -> None:
    code, out, err = invoke("train", "--epochs", "2", "--hidden", "32")
    assert code == 0, err
    assert "train_loss" in out and "val_acc" in out
    assert "completed: 2/2 epochs" in out


def test_train_json_reports_the_result_and_the_resolved_config() -> None:
    code, out, _ = invoke("train", "--epochs", "2", "--lr", "0.003", "--schedule", "cosine", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "completed" and result["epochs"] == 2
    assert result["config"]["lr"] == 0.003 and result["config"]["schedule"] == "cosine"
    assert len(result["history"]) == 2


def test_config_file_is_read_and_flags_override_it(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('epochs = 1\nlr = 0.01\nhidden = [16]\n')
    code, out, _ = invoke("train", "--config", str(path), "--lr", "0.002", "--json")
    assert code == 0
    config = json.loads(out)["config"]
    assert config["epochs"] == 1 and config["hidden"] == [16] and config["lr"] == 0.002


def test_same_command_with_a_checkpoint_resumes(tmp_path: Path, trained_epochs: TrainedEpochs) -> None:
    checkpoint = tmp_path / "run.ckpt"
    args = ["train", "--epochs", "2", "--hidden", "16", "--checkpoint", str(checkpoint), "--json"]
    first = json.loads(invoke(*args)[1])
    assert checkpoint.exists()
    again = json.loads(invoke(*args)[1])
    assert again["history"] == first["history"]
    assert first["resumed_from"] == 0 and again["resumed_from"] == 2 and trained_epochs.count == 2


def test_the_same_command_after_an_interrupted_run_trains_only_its_remaining_epochs(
    tmp_path: Path, trained_epochs: TrainedEpochs
) -> None:
    checkpoint = tmp_path / "run.ckpt"
    args = ["train", "--epochs", "4", "--hidden", "16", "--checkpoint", str(checkpoint), "--json"]
    trained_epochs.interrupt_at = 3  # Ctrl-C during epoch 3, with epoch 2 checkpointed
    code, out, _ = invoke(*args)
    assert code != 0 and out == "" and checkpoint.exists() and trained_epochs.count == 2
    trained_epochs.interrupt_at = None

    code, out, err = invoke(*args)
    assert code == 0, err
    resumed = json.loads(out)
    assert trained_epochs.count == 4  # epochs 3 and 4 only
    uninterrupted = json.loads(invoke(*args[:-3], "--json")[1])
    assert resumed["resumed_from"] == 2 and uninterrupted["resumed_from"] == 0
    assert resumed["status"] == "completed" and resumed["epochs"] == 4
    assert [m["epoch"] for m in resumed["history"]] == [1, 2, 3, 4]
    assert [m["val_loss"] for m in resumed["history"]] == [m["val_loss"] for m in uninterrupted["history"]]
    assert [m["train_loss"] for m in resumed["history"]] == [m["train_loss"] for m in uninterrupted["history"]]


def write_npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def write_bad_files(tmp: Path) -> None:
    """The files the bad inputs name: configs that cannot be read as one, datasets that cannot be used."""
    (tmp / "unknown.json").write_text('{"learning_rate": 0.1}')
    (tmp / "broken.json").write_text("{not json")
    write_npz(tmp / "keys.npz", features=np.zeros((4, 2)))
    write_npz(tmp / "lengths.npz", x=np.zeros((4, 2)), y=np.zeros(3))
    write_npz(tmp / "nan.npz", x=np.full((10, 2), np.nan), y=np.arange(10) % 2)


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Each bad input by its test id, and a part of the one line it must produce (files from write_bad_files)."""
    absent_gpu = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU this machine has, whatever it has
    return {
        "lr-zero": (["--lr", "0"], "lr must be > 0, got 0.0"),
        "lr-negative": (["--lr", "-1e-3"], "lr must be > 0, got -0.001"),
        "weight-decay-negative": (["--weight-decay", "-0.1"], "weight_decay must be >= 0, got -0.1"),
        "epochs-zero": (["--epochs", "0"], "epochs must be >= 1, got 0"),
        "batch-size-zero": (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
        "batch-size-too-large": (["--batch-size", "100000"],
                                 "batch_size must be at most the 1438 training samples of digits, got 100000"),
        "dataset-unknown": (["--dataset", "cifar"], "dataset must be one of"),
        "schedule-unknown": (["--schedule", "linear"], "'--schedule': Value error, 'linear' is not one of 'constant', "
                                                       "'step', 'cosine', 'warmup-cosine', 'wsd'"),
        "device-unknown": (["--device", "tpu"], "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
        "device-absent": (["--device", absent_gpu], f"device '{absent_gpu}' is not available"),
        "data-dir-missing": (["--dataset", "mnist", "--data-dir", str(tmp / "nothing")],
                             f"--data-dir {tmp / 'nothing'}"),
        "dataset-needs-data-dir": (["--dataset", "mnist"], "needs --data-dir"),
        "npz-keys-missing": (["--dataset", f"npz:{tmp / 'keys.npz'}"], "needs keys x and y"),
        "npz-lengths-differ": (["--dataset", f"npz:{tmp / 'lengths.npz'}"], "x has 4 rows but y has 3"),
        "npz-nan": (["--dataset", f"npz:{tmp / 'nan.npz'}"], "contains NaN or infinite values"),
        "config-missing": (["--config", str(tmp / "absent.toml")], "cannot read config file (--config"),
        "config-unparsable": (["--config", str(tmp / "broken.json")], "cannot parse config file (--config"),
        "config-key-unknown": (["--config", str(tmp / "unknown.json")], "unknown config key 'learning_rate'"),
        "lr-not-a-number": (["--lr", "abc"], "Invalid value for '--lr'"),
        "option-unknown": (["--bogus"], "No such option: --bogus"),
    }


@pytest.mark.parametrize("case", sorted(bad_inputs(Path("unused"))))  # the ids; each test builds its cases anew
def test_every_bad_input_gives_one_error_line_and_exit_2(case: str, tmp_path: Path) -> None:
    write_bad_files(tmp_path)
    args, expected = bad_inputs(tmp_path)[case]
    code, out, err = invoke("train", "--epochs", "1", *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in out + err


@pytest.mark.parametrize("entry", ["console-script", "module"])
def test_installed_entry_points_exit_2_on_bad_input(entry: str) -> None:
    # The console script sits beside the interpreter in the environment pytest runs from.
    command = [str(Path(sys.executable).with_name("hpsearch"))] if entry == "console-script" else [
        sys.executable, "-m", "hpsearch"]
    done = subprocess.run([*command, "train", "--lr", "-1"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: lr must be > 0, got -1.0"


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"]])
def test_help_exits_0(args: list[str]) -> None:
    code, out, _ = invoke(*args)
    assert code == 0 and "Usage" in out


LR, WD = (next(p for p in DEFAULT_SPACE.params if p.name == name) for name in ("lr", "weight_decay"))
# A flag left out is "not given" (a spec or a stored spec wins); --help shows what it then stands for.
HELP_DEFAULTS = [
    ("run", "--strategy", StudySpec.strategy),
    ("run", "--n-trials", f"{DEFAULT_TRIALS}"),
    ("run", "--epochs", f"{TrainConfig.epochs}"),
    ("run", "--lr-range", f"{LR.low:g} {LR.high:g}"),
    ("run", "--wd-range", f"{WD.low:g} {WD.high:g}"),
    ("run", "--pruner", f"{StudySpec.pruner}; coarse-to-fine: {CoarseToFine.fine_pruner}"),
    ("run", "--batch-size", f"{TrainConfig.batch_size}"),
    ("run", "--lr", f"{TrainConfig.lr:g}"),
    ("run", "--metric", DEFAULT_METRIC),
    ("run", "--seed", f"{StudySpec.seed}"),
    ("run", "--grid-points", f"{StudySpec.grid_points}"),
    ("run", "--storage", DEFAULT_STORAGE),
    ("train", "--hidden", ",".join(map(str, TrainConfig.hidden))),
    ("train", "--weight-decay", f"{TrainConfig.weight_decay:g}"),
    ("train", "--schedule", TrainConfig.schedule),
    ("train", "--seed", f"{TrainConfig.seed}"),
    ("train", "--beta2", f"{ADAM_BETAS[1]:g}"),
    ("lr-find", "--optimizer", TrainConfig.optimizer),
    ("check", "--dataset", TrainConfig.dataset),
]


@functools.cache
def help_rows(command: str) -> dict[str, str]:
    """``command --help`` wide enough for one line an option, by flag."""
    done = runner.invoke(app, [command, "--help"], env={"COLUMNS": "400"})
    assert done.exit_code == 0, done.output
    return {match.group(1): line for line in done.stdout.splitlines() if (match := re.match(r"│ (--[a-z0-9-]+)", line))}


COMMANDS = ["train", "lr-find", "check", "run", "worker", "studies", "show", "export", "report", "dashboard"]


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_show_no_type_in_help_and_values_do(command: str) -> None:
    """As Typer's examples read: --json, --quiet and --help take no value, so they show no <bool>."""
    rows = help_rows(command)
    flags = [flag for flag in ("--help", "--json", "--quiet", "--durable") if flag in rows]
    assert flags and all("<bool>" not in rows[flag] for flag in flags), {flag: rows[flag] for flag in flags}
    assert any(re.search(r"<(str|int|float|path)>", row) for row in rows.values()), rows


@pytest.mark.parametrize(("command", "flag", "default"), HELP_DEFAULTS, ids=[f"{c} {f}" for c, f, _ in HELP_DEFAULTS])
def test_help_shows_the_default_a_left_out_flag_stands_for(command: str, flag: str, default: str) -> None:
    assert re.search(rf"\[default: {re.escape(default)}[];]", help_rows(command)[flag]), help_rows(command)[flag]


@pytest.mark.parametrize("name", sorted(f.name for f in dataclasses.fields(TrainConfig)
                                        if f.name not in ("data_dir", "model_args", "optimizer_args", "seed")))
def test_every_training_flag_shows_a_default(name: str) -> None:
    assert "[default: " in help_rows("train")["--" + name.replace("_", "-")]


@pytest.mark.parametrize(("command", "flag", "default"), [row for row in HELP_DEFAULTS if row[:2] in (
    ("run", "--strategy"), ("run", "--n-trials"), ("run", "--epochs"), ("run", "--lr-range"), ("run", "--wd-range"),
    ("run", "--batch-size"), ("run", "--lr"))])
def test_the_readme_states_the_defaults_of_run(command: str, flag: str, default: str) -> None:
    assert f"`{flag} {default}`" in (Path(__file__).parents[2] / "README.md").read_text()


# --- studies ------------------------------------------------------------------------------------

STUDY_ARGS = ["--epochs", "2", "--hidden", "32", "--quiet"]


def test_run_studies_show_export_and_train_again(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    code, out, err = invoke("run", "--strategy", "random", "--n-trials", "3", "--storage", storage, *STUDY_ARGS)
    assert code == 0, err
    assert "best val_loss" in out
    code, out, _ = invoke("studies", "--storage", storage)
    assert code == 0 and "digits-random" in out and "random" in out
    code, out, _ = invoke("show", "digits-random", "--storage", storage)
    assert code == 0 and "lr=" in out
    code, out, _ = invoke("studies", "--storage", storage, "--json")
    [row] = json.loads(out)
    assert code == 0 and row["name"] == "digits-random" and row["counts"]["complete"] == 3
    assert optuna.load_study(study_name="digits-random", storage=storage).metric_names == ["val_loss"]
    code, out, _ = invoke("show", "digits-random", "--storage", storage, "--json", "--top", "2")
    top = json.loads(out)
    assert code == 0 and len(top) == 2 and top[0]["value"] == row["best_value"] and "lr" in top[0]["params"]
    code, out, _ = invoke("show", "digits-random", "--storage", storage, "--json", "--trial", "0")
    assert code == 0 and json.loads(out)["record"]["config"]["epochs"] == 2
    best = tmp_path / "best.json"
    code, out, _ = invoke("export", "digits-random", "--out", str(best), "--storage", storage)
    assert code == 0 and f"wrote {best}" in out
    record = json.loads(best.read_text())
    code, out, _ = invoke("train", "--config", str(best), "--json")
    assert code == 0
    assert json.loads(out)["val_loss"] == record["value"]


def test_export_after_a_jobs_study_trains_its_best_trial_again_to_the_same_value(tmp_path: Path) -> None:
    """Two worker processes ran the trials (one CPU thread each); train --config here gives the stored value."""
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    code, _, err = invoke("run", "--strategy", "random", "--n-trials", "3", "--jobs", "2", "--no-check", "--study",
                          "jobs", "--storage", storage, *STUDY_ARGS)
    assert code == 0, err
    best = optuna.load_study(study_name="jobs", storage=storage).best_trial
    exported = tmp_path / "best.json"
    assert invoke("export", "jobs", "--out", str(exported), "--storage", storage)[0] == 0
    record = json.loads(exported.read_text())
    assert (record["trial"], record["value"], record["params"]) == (best.number, best.value, best.params)
    code, out, err = invoke("train", "--config", str(exported), "--json")
    assert code == 0, err
    trained = json.loads(out)
    assert trained["val_loss"] == best.value
    assert {name: trained["config"][name] for name in best.params} == best.params
    assert trained["config"] == record["config"]

WIDE_SPEC = """
[space]
lr = {low = 1e-4, high = 1e-2, log = true}
weight_decay = {low = 1e-5, high = 1e-2, log = true}
schedule = {choices = ["constant", "cosine", "warmup-cosine"]}
warmup = {low = 0.0, high = 0.2}
"""


def test_piped_output_keeps_every_column_and_each_row_on_one_line(tmp_path: Path) -> None:
    storage, spec = f"sqlite:///{tmp_path / 'hp.db'}", tmp_path / "wide.toml"
    spec.write_text(WIDE_SPEC)
    code, _, err = invoke("run", "--spec", str(spec), "--strategy", "random", "--n-trials", "2", "--study", "wide",
                          "--storage", storage, "--epochs", "1", "--hidden", "8", "--no-check", "--quiet")
    assert code == 0, err
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    done = subprocess.run([sys.executable, "-m", "hpsearch", "show", "wide", "--storage", storage], env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # stdout a pipe, not a terminal
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split() == ["trial", "val_loss", "params", "epochs", "seconds"] for line in lines), done.stdout
    rows = [line for line in lines if "lr=" in line]
    assert len(rows) == 2 and all(re.search(r"warmup=\S+\s+1\s+\d+\.\d$", row.rstrip()) for row in rows), done.stdout


def test_run_with_a_spec_file_and_flags_winning(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    spec = Path(__file__).resolve().parents[2] / "studies" / "textbook.toml"
    code, _, err = invoke("run", "--spec", str(spec), "--n-trials", "2", "--storage", storage, *STUDY_ARGS)
    assert code == 0, err
    import optuna

    study = optuna.load_study(study_name="textbook", storage=storage)
    assert len(study.trials) == 2
    assert study.user_attrs["hpsearch"]["spec"]["train"]["epochs"] == 2
    assert study.user_attrs["hpsearch"]["spec"]["study"]["metric"] == "val_acc"


def test_pruner_warmup_is_the_studys_until_a_run_leaves_it_out(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    args = ["run", "--strategy", "random", "--storage", storage, *STUDY_ARGS]
    assert invoke(*args, "--n-trials", "2", "--pruner-warmup", "2")[0] == 0
    import optuna

    def stored_study_table() -> dict[str, object]:
        return optuna.load_study(study_name="digits-random", storage=storage).user_attrs["hpsearch"]["spec"]["study"]

    assert stored_study_table()["pruner_warmup"] == 2
    # A run without it resumes the same study with the median pruner learning its warm-up again, as workers read it.
    assert invoke(*args, "--n-trials", "3")[0] == 0
    assert "pruner_warmup" not in stored_study_table()


def test_rerunning_the_same_command_resumes_instead_of_adding(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    args = ["run", "--strategy", "tpe", "--n-trials", "3", "--storage", storage, *STUDY_ARGS]
    assert invoke(*args)[0] == 0
    assert invoke(*args)[0] == 0
    import optuna

    assert len(optuna.load_study(study_name="digits-tpe", storage=storage).trials) == 3


def test_rerunning_a_finished_study_says_it_holds_its_trials_and_how_to_run_more(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    args = ["run", "--strategy", "tpe", "--n-trials", "2", "--storage", storage, *STUDY_ARGS]
    assert invoke(*args)[0] == 0
    best = optuna.load_study(study_name="digits-tpe", storage=storage).best_value
    code, out, err = invoke(*args)
    assert code == 0, err
    assert (f"study digits-tpe already holds its 2 trials (best val_loss {best:.4g}); run more with: hpsearch run "
            f"--study digits-tpe --n-trials 12 --storage {storage}") in out
    assert len(optuna.load_study(study_name="digits-tpe", storage=storage).trials) == 2


def test_the_progress_bar_of_a_resumed_study_starts_from_its_finished_trials(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from hpsearch.presentation.progress import StudyProgress
    from hpsearch.search.spec import StudySpec

    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    assert invoke("run", "--strategy", "random", "--n-trials", "2", "--storage", storage, *STUDY_ARGS)[0] == 0
    out = io.StringIO()
    with StudyProgress(Console(file=out, width=120), StudySpec(strategy="random", n_trials=5),
                       stored=[optuna.load_study(study_name="digits-random", storage=storage)]):
        pass  # what the bar shows before the first trial of this run
    assert "trial 2/5" in out.getvalue() and "2 complete" in out.getvalue(), out.getvalue()


def test_run_study_alone_goes_on_with_the_stored_spec_and_a_differing_flag_is_refused(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    assert invoke("run", "--study", "mine", "--strategy", "random", "--n-trials", "2", "--pruner", "none",
                  "--storage", storage, *STUDY_ARGS)[0] == 0
    code, out, err = invoke("run", "--study", "mine", "--storage", storage, "--quiet")
    assert code == 0 and "study mine already holds its 2 trials" in out, (out, err)
    code, _, err = invoke("run", "--study", "mine", "--n-trials", "3", "--storage", storage, "--quiet")
    assert code == 0, err
    study = optuna.load_study(study_name="mine", storage=storage)
    assert len(study.trials) == 3
    stored = study.user_attrs["hpsearch"]["spec"]["study"]
    assert (stored["strategy"], stored["pruner"], stored["n_trials"]) == ("random", "none", 3)
    config = study.trials[2].user_attrs["hpsearch"]["config"]
    assert (config["epochs"], config["hidden"]) == (2, [32])
    code, _, err = invoke("run", "--study", "mine", "--epochs", "3", "--n-trials", "4", "--storage", storage)
    assert code == 2 and "was created with train.epochs=2, not 3" in err, err
    assert len(optuna.load_study(study_name="mine", storage=storage).trials) == 3


def test_bad_study_inputs_give_one_error_line_and_leave_the_storage_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "hp.db"
    storage = f"sqlite:///{db}"
    assert invoke("run", "--strategy", "random", "--study", "kept", "--n-trials", "2", "--storage", storage,
                  *STUDY_ARGS)[0] == 0
    assert not (tmp_path / "hp.db-wal").exists()  # its storage closed with the run: the log is in the file
    before, dump = db.read_bytes(), logical_dump(storage)
    cases = [
        (["--lr-range", "0.1", "0.01"], "space.lr: low must be < high, got low=0.1 high=0.01"),
        (["--wd-range", "0", "0.1"], "space.weight_decay: a log-scale range needs low > 0, got low=0"),
        (["--strategy", "bayes"], "'--strategy': Value error, 'bayes' is not one of 'grid', 'random', 'tpe', "
                                  "'coarse-to-fine'"),
        (["--pruner", "sha"], "'--pruner': Value error, 'sha' is not one of 'median', 'hyperband', 'asha', 'none'"),
        (["--metric", "f1"], "direction must be given for metric 'f1', which is not built in (val_loss, val_acc)"),
        (["--n-trials", "0"], "n_trials must be >= 1, got 0"),
        (["--pruner-warmup", "0"], "pruner_warmup must be >= 1 epoch, got 0"),
        (["--strategy", "coarse-to-fine", "--n-trials", "2"],
         "n_trials must be >= coarse_to_fine.stages (3) for coarse-to-fine, a trial or more a stage, got 2"),
        (["--storage", "foo://bar"], "storage must be sqlite:///FILE"),
        (["--storage", f"sqlite:///{tmp_path / 'missing' / 'x.db'}"], "storage folder does not exist"),
        (["--study", "kept", "--strategy", "random", "--lr-range", "1e-3", "1e-2"],
         "was created with space.lr={'low': 1e-05, 'high': 0.1, 'log': True}, not {'low': 0.001, 'high': 0.01"),
        (["--spec", str(tmp_path / "absent.toml")], "cannot read spec file (--spec"),
    ]
    for args, expected in cases:
        full = ["run", "--n-trials", "4", "--storage", storage, *STUDY_ARGS, *args]
        code, out, err = invoke(*full)
        assert code == 2, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (args, err)
        assert logical_dump(storage) == dump, args  # read anew, so a write still in SQLite's log shows here
        assert db.read_bytes() == before, args
    code, _, err = invoke("export", "nope", "--storage", storage)
    assert code == 2 and err.strip() == "error: no study named 'nope' in this storage (studies: kept)"
    # Refused inside the run, with the progress bar on: no empty bar is left above the error.
    shown = [arg for arg in STUDY_ARGS if arg != "--quiet"]
    code, out, err = invoke("run", "--study", "kept", "--strategy", "random", "--lr-range", "1e-3", "1e-2",
                            "--storage", storage, *shown)
    assert code == 2 and err.startswith("error: ") and out.strip() == "", out
    assert logical_dump(storage) == dump


def test_run_coarse_to_fine_and_export_across_its_stages(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    spec = tmp_path / "c2f.toml"
    spec.write_text('[coarse_to_fine]\nstages = 2\ncoarse_trials = 3\nfine_trials = 2\nkeep = 2\n')
    code, out, err = invoke("run", "--strategy", "coarse-to-fine", "--spec", str(spec), "--study", "c2f",
                            "--storage", storage, *STUDY_ARGS)
    assert code == 0, err
    # Each stage numbers its trials from 0: the best is named with its stage.
    named = re.search(r"^best val_loss (\S+) \(trial (\d+) of (c2f/1-coarse|c2f/2-fine)\): ", out, re.MULTILINE)
    assert named, out
    code, out, _ = invoke("studies", "--storage", storage)
    assert "c2f/1-coarse" in out and "c2f/2-fine" in out
    code, out, _ = invoke("show", "c2f", "--json", "--top", "1", "--storage", storage)
    [top] = json.loads(out)
    assert (top["study"], top["number"]) == (named[3], int(named[2]))
    code, out, _ = invoke("show", "c2f", "--storage", storage)
    assert re.search(rf"^\s*stage\s+trial\b.*\n.*\n\s*{named[3].split('/')[1]}\s+{named[2]}\s", out, re.MULTILINE), out
    assert f"one in full: hpsearch show {named[3]} --trial {named[2]}" in out
    best = tmp_path / "best.json"
    assert invoke("export", "c2f", "--out", str(best), "--storage", storage)[0] == 0
    exported = json.loads(best.read_text())
    assert exported["stages"] == ["c2f/1-coarse", "c2f/2-fine"]
    assert (exported["study"], exported["trial"]) == (top["study"], top["number"])
    # The family's name alone goes on with its stored spec: a larger total adds a trial to its last stage.
    code, out, err = invoke("run", "--study", "c2f", "--storage", storage, "--quiet")
    assert code == 0 and "study c2f already holds its 5 trials" in out, (out, err)
    code, out, err = invoke("run", "--study", "c2f", "--n-trials", "6", "--storage", storage, "--quiet")
    assert code == 0, err
    from hpsearch.search.records import own_trials

    assert [len(own_trials(optuna.load_study(study_name=f"c2f/{stage}", storage=storage)))
            for stage in ("1-coarse", "2-fine")] == [3, 3]
    code, out, err = invoke("run", "--study", "c2f", "--storage", storage, "--quiet")
    assert code == 0 and "study c2f already holds its 6 trials" in out, (out, err)


def test_show_trial_prints_its_config_epochs_and_status(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    assert invoke("run", "--strategy", "random", "--n-trials", "2", "--pruner", "none", "--storage", storage,
                  *STUDY_ARGS)[0] == 0
    code, out, _ = invoke("show", "digits-random", "--trial", "1", "--storage", storage)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("trial 1 of digits-random: complete (completed); val_loss ")
    assert "epochs=2" in out and "hidden=[32]" in out and "worker " in out
    epoch_rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [row[0] for row in epoch_rows] == ["1", "2"]
    code, _, err = invoke("show", "digits-random", "--trial", "5", "--storage", storage)
    assert code == 2 and "has 2 trials (0 to 1), got 5" in err


def test_a_range_flag_narrows_one_parameter_and_the_others_are_still_searched(tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    assert invoke("run", "--strategy", "random", "--n-trials", "1", "--lr-range", "1e-3", "1e-2", "--storage", storage,
                  *STUDY_ARGS)[0] == 0
    trial = optuna.load_study(study_name="digits-random", storage=storage).trials[0]
    assert set(trial.params) == {"lr", "weight_decay"} and 1e-3 <= trial.params["lr"] <= 1e-2


def test_dashboard_port_out_of_range_or_in_use_is_one_error_line() -> None:
    code, _, err = invoke("dashboard", "--port", "99999")
    assert code == 2 and err.strip() == "error: port must be between 1 and 65535, got 99999 (--port)"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = invoke("dashboard", "--port", str(port))
    assert code == 2 and err.strip() == f"error: port {port} on 127.0.0.1 is already in use (--port, --host)"
