"""The user's own model, data, loss and optimizer, through the library and the CLI (tests/usertask.py)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from cli_invoke import invoke

from hpsearch import StudySpec, TrainConfig, run_study, train
from hpsearch.engine.checks import FAIL, PASS, run_checks
from hpsearch.engine.data import Data, StreamData
from hpsearch.engine.entry_points import resolve
from hpsearch.engine.training import config_data
from hpsearch.errors import ConfigError, EntryPointError
from hpsearch.search.records import read_trial
from hpsearch.search.space import SearchSpace

USERTASK = Path(__file__).parent.with_name("usertask.py")
CPU = torch.device("cpu")


@pytest.fixture
def task_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A practitioner's folder holding usertask.py, as the working directory."""
    shutil.copy(USERTASK, tmp_path / "usertask.py")
    monkeypatch.chdir(tmp_path)
    return tmp_path


CNN_TASK = TrainConfig(model="usertask.py:cnn", dataset="usertask.py:load", epochs=8, lr=3e-3, batch_size=64)


def test_a_users_cnn_in_a_file_reaches_97_percent_on_digits(task_dir: Path) -> None:
    result = train(CNN_TASK)
    assert result.status == "completed"
    assert result.val_acc >= 0.97, [m.val_acc for m in result.history]


def test_a_tpe_study_of_a_users_cnn_exports_a_config_that_trains_to_the_same_value(task_dir: Path) -> None:
    storage = f"sqlite:///{task_dir / 'hp.db'}"
    common = ["--model", "usertask.py:cnn", "--dataset", "usertask.py:load", "--storage", storage, "--quiet"]
    code, out, err = invoke("run", "--strategy", "tpe", "--n-trials", "3", "--epochs", "2", "--pruner", "none",
                            "--model-arg", "width=8", *common)
    assert code == 0, out + err
    assert invoke("export", "usertask-tpe", "--storage", storage, "--out", "best.json")[0] == 0
    exported = json.loads(Path("best.json").read_text())
    assert exported["config"]["model"] == "usertask.py:cnn" and exported["config"]["model_args"] == {"width": 8}
    code, out, err = invoke("train", "--config", "best.json", "--json")
    assert code == 0, err
    assert json.loads(out)["val_loss"] == pytest.approx(exported["value"], rel=1e-6)


def test_model_args_are_searched_and_each_trial_builds_its_own(task_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = task_dir / "widths.log"
    monkeypatch.setenv("USERTASK_LOG", str(log))
    space = SearchSpace.from_mapping({"lr": {"low": 1e-3, "high": 1e-2, "log": True},
                                      "model_args": {"width": {"low": 4, "high": 12}}})
    spec = StudySpec(name="widths", strategy="random", n_trials=4, pruner="none", space=space,
                     train=CNN_TASK.replace(epochs=1))
    study = run_study(spec, "memory")
    widths = [trial.params["model_args.width"] for trial in study.trials]
    assert all(isinstance(w, int) and 4 <= w <= 12 for w in widths)
    assert [read_trial(t).config["model_args"]["width"] for t in study.trials] == widths
    built = [int(line) for line in log.read_text().split()]
    assert set(widths) <= set(built)  # every trial's model (and the pre-flight build) came from its factory call


def test_callables_from_python_train_in_process_and_are_refused_for_workers(task_dir: Path) -> None:
    def tiny(input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))

    config = TrainConfig(model=tiny, dataset="digits", epochs=2, lr=1e-2)
    assert config.model.endswith("tiny") and train(config).val_acc > 0.8
    from hpsearch.search.pool import WorkerPool

    pool = WorkerPool(storage=f"sqlite:///{task_dir / 'hp.db'}", jobs=2)
    with pytest.raises(ConfigError, match="worker processes cannot import: give it as an entry point"):
        run_study(StudySpec(name="notebook", n_trials=1, train=config), pool.storage, pool=pool)


@pytest.mark.parametrize(("optimizer", "extra", "floor"), [
    ("sgd", {"momentum": 0.9, "lr": 0.05}, 0.95),
    ("sgd", {"momentum": 0.9, "nesterov": True, "lr": 0.05}, 0.95),
    ("adam", {"beta1": 0.8, "lr": 3e-3}, 0.95),
])
def test_each_optimizer_trains_digits(optimizer: str, extra: dict[str, object], floor: float, digits: Data) -> None:
    result = train(TrainConfig(optimizer=optimizer, epochs=8, hidden=(64,), **extra), digits)  # type: ignore[arg-type]
    assert result.val_acc >= floor


def test_an_optimizer_choice_is_searched_in_one_study(digits: Data) -> None:
    space = SearchSpace.from_mapping({"lr": {"low": 1e-3, "high": 3e-2, "log": True},
                                      "optimizer": {"choices": ["adamw", "sgd"]},
                                      "momentum": {"low": 0.5, "high": 0.95}})
    spec = StudySpec(name="optimizers", strategy="random", n_trials=8, pruner="none", space=space, seed=1,
                     train=TrainConfig(epochs=1, hidden=(32,)))
    study = run_study(spec, "memory", data=digits)
    chosen = {t.params["optimizer"] for t in study.trials}
    assert chosen == {"adamw", "sgd"}
    for trial in study.trials:  # momentum only where the optimizer has one
        assert ("momentum" in trial.params) == (trial.params["optimizer"] == "sgd")
        assert read_trial(trial).config["momentum"] == trial.params.get("momentum")


def test_mse_regression_learns_far_below_the_target_variance(task_dir: Path) -> None:
    config = TrainConfig(model="usertask.py:regressor", dataset="usertask.py:load_regression", loss="mse", epochs=20,
                         lr=3e-3, batch_size=64)
    data = config_data(config, CPU)
    assert isinstance(data, Data) and not data.classification and data.num_classes == 1
    variance = float(data.y_val.var())
    result = train(config, data)
    assert result.val_loss < 0.05 * variance
    assert math.isnan(result.val_acc) and result.to_dict()["val_acc"] is None
    checks = {r.name: r.outcome for r in run_checks(config, data)}
    assert checks["initial loss"] == PASS and checks["gradients"] == PASS


def test_a_custom_loss_trains_and_skips_the_initial_loss_check(task_dir: Path) -> None:
    config = TrainConfig(model="usertask.py:regressor", dataset="usertask.py:load_regression", loss="usertask.py:l1",
                         epochs=5, lr=3e-3)
    assert train(config).val_loss < 0.5
    checks = {r.name: r.outcome for r in run_checks(config, config_data(config, CPU))}
    assert checks["initial loss"] == "SKIP"


def test_the_dataset_path_and_the_tensor_path_train_the_same_model(task_dir: Path) -> None:
    tensors = train(CNN_TASK.replace(epochs=2))
    streamed_data = config_data(CNN_TASK.replace(dataset="usertask.py:load_datasets"), CPU)
    assert isinstance(streamed_data, StreamData) and streamed_data.num_classes == 10
    streamed = train(CNN_TASK.replace(epochs=2, dataset="usertask.py:load_datasets"), streamed_data)
    for a, b in zip(tensors.history, streamed.history, strict=True):
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-4) and a.val_acc == pytest.approx(b.val_acc, abs=1e-3)


def test_tensors_stream_through_a_dataloader_when_asked(digits: Data) -> None:
    config = TrainConfig(epochs=2, hidden=(32,))
    on_device = train(config, digits)
    streamed = train(config.replace(feed="stream"), digits)
    assert streamed.val_loss == pytest.approx(on_device.val_loss, rel=1e-4)


def test_a_streamed_run_resumes_from_its_checkpoint(task_dir: Path) -> None:
    config = CNN_TASK.replace(epochs=3, dataset="usertask.py:load_datasets", model_args={"width": 4})
    whole = train(config)
    path = task_dir / "run.ckpt"
    train(config.replace(epochs=3), checkpoint=path, reporter=lambda epoch, metrics: epoch == 2)
    resumed = train(config, checkpoint=path)
    assert resumed.resumed_from == 2
    assert resumed.val_loss == pytest.approx(whole.val_loss, rel=1e-5)


def test_bf16_autocast_on_a_cpu_trains_digits_within_a_point_of_fp32(digits: Data) -> None:
    config = TrainConfig(epochs=6, hidden=(64,), lr=3e-3)
    fp32, bf16 = train(config, digits), train(config.replace(precision="bf16"), digits)
    assert abs(fp32.val_acc - bf16.val_acc) <= 0.01 + 1e-9, (fp32.val_acc, bf16.val_acc)


def test_fp16_is_refused_on_a_cpu(digits: Data) -> None:
    with pytest.raises(ConfigError, match="precision 'fp16' needs a GPU"):
        train(TrainConfig(epochs=1, precision="fp16", device="cpu"), digits)


def test_checks_fail_a_detached_user_model_and_pass_a_healthy_user_cnn(task_dir: Path) -> None:
    healthy = CNN_TASK.replace(lr=1e-3)
    data = config_data(healthy, CPU)
    assert {r.name: r.outcome for r in run_checks(healthy, data)}["gradients"] == PASS
    broken = {r.name: r.outcome for r in run_checks(healthy.replace(model="usertask.py:Detached"), data)}
    assert broken["gradients"] == FAIL


def test_a_module_entry_point_resolves_like_a_file(task_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(task_dir))
    result = train(CNN_TASK.replace(model="usertask:cnn", dataset="usertask:load", epochs=1))
    assert result.status == "completed"


USERPROJECT = Path(__file__).parent.with_name("userproject")  # extra.py does `from shapes import load`


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A copy of tests/userproject as <tmp>/project/sub; ``shapes`` is forgotten again after the test."""
    shutil.copytree(USERPROJECT, tmp_path / "project" / "sub")
    yield tmp_path / "project"
    sys.modules.pop("shapes", None)


def test_an_entry_point_file_imports_its_neighbours_and_leaves_sys_path_as_it_was(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    path_before = list(sys.path)
    x_train, *_ = resolve("sub/extra.py:load", "dataset")()
    assert x_train.shape == (240, 8)
    assert sys.path == path_before


def test_the_cli_imports_an_entry_point_files_neighbours_from_another_folder(project: Path) -> None:
    elsewhere = project.parent / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "hpsearch", "train", "--dataset",
                           f"{project / 'sub' / 'extra.py'}:load", "--epochs", "1", "--hidden", "8", "--json"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"


def test_check_and_lr_find_run_on_a_users_task(task_dir: Path) -> None:
    common = ["--model", "usertask.py:cnn", "--dataset", "usertask.py:load"]
    code, out, err = invoke("check", *common, "--json")
    assert code == 0, out + err
    assert {r["name"]: r["outcome"] for r in json.loads(out)}["gradients"] == PASS
    code, out, err = invoke("lr-find", *common, "--json", "--steps", "30")
    assert code == 0, err
    assert json.loads(out)["suggestion"] is not None


BAD_INPUTS = [
    (["--model", "nowhere.py:net"], "model 'nowhere.py:net': no file nowhere.py (looked in"),
    (["--model", "no_such_package.models:net"], "no module named 'no_such_package'"),
    (["--model", "usertask.py:missing"], "usertask.py has no attribute 'missing'"),
    (["--model", "usertask.py:NOT_CALLABLE"], "NOT_CALLABLE is a int, not a callable"),
    (["--model", "usertask.py:raises"], "the factory raised ValueError: needs a GPU"),
    (["--model", "usertask.py:not_a_module"], "the factory must return an nn.Module, got int"),
    (["--model", "usertask.py:wrong_output"], "must output (batch, 10) for the 10 classes of dataset"),
    (["--dataset", "usertask.py:load_text"], "load() must return (x_train, y_train, x_val, y_val)"),
    (["--dataset", "usertask.py:load_mismatched"], "x_train has 1400 rows but y_train has 1399"),
    (["--dataset", "usertask.py:load_nan"], "x_train contains NaN or infinite values"),
    (["--dataset", "usertask.py:load_raises"], "load() raised FileNotFoundError: /data/mine.csv"),
    (["--num-classes", "5"], "label 9 is out of range for num_classes 5"),
    (["--model-arg", "width"], "model-arg must be NAME=VALUE"),
    (["--model-arg", "depth=3"], "model_args.depth: model 'usertask.py:cnn' takes no argument 'depth'"),
    (["--optimizer", "lion"], "optimizer must be one of adamw, adam, sgd or an entry point"),
    (["--loss", "hinge"], "loss must be one of cross-entropy, mse or an entry point"),
    (["--precision", "fp8"], "'--precision': Value error, 'fp8' is not one of 'fp32', 'bf16', 'fp16'"),
    (["--momentum", "0.9"], "momentum must be unset with optimizer 'adamw'"),
    (["--batch", "4"], "--batch stacks the built-in mlp only, got model 'usertask.py:cnn'"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INPUTS, ids=[" ".join(f) for f, _ in BAD_INPUTS])
def test_bad_user_input_is_one_error_line_and_writes_nothing(flags: list[str], message: str, task_dir: Path) -> None:
    storage = f"sqlite:///{task_dir / 'hp.db'}"
    defaults = {"--model": "usertask.py:cnn", "--dataset": "usertask.py:load"}
    for flag in ("--model", "--dataset"):
        if flag not in flags:
            flags = [*flags, flag, defaults[flag]]
    code, out, err = invoke("run", "--n-trials", "1", "--epochs", "1", "--storage", storage, "--quiet", *flags)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in out + err
    assert optuna.get_all_study_names(storage) == []


def test_an_entry_point_error_names_the_working_directory(task_dir: Path) -> None:
    with pytest.raises(EntryPointError, match=f"working directory {task_dir}"):
        train(TrainConfig(model="not_installed_anywhere:net", epochs=1))


def test_show_report_and_artifacts_work_on_a_users_regression(task_dir: Path) -> None:
    storage = f"sqlite:///{task_dir / 'hp.db'}"
    common = ["--storage", storage]
    code, out, err = invoke("run", "--strategy", "random", "--n-trials", "3", "--epochs", "2", "--pruner", "none",
                            "--model", "usertask.py:regressor", "--dataset", "usertask.py:load_regression",
                            "--loss", "mse", "--artifacts", "--quiet", *common)
    assert code == 0, out + err
    assert "trials diagnosed" in out
    code, out, err = invoke("show", "usertask-random", "--trial", "0", *common)
    assert code == 0 and "usertask.py:regressor" in out, err
    [config_line] = [line for line in out.splitlines() if line.startswith("config: ")]
    # The built-in mlp's hidden, the split of built-in data and cross-entropy's smoothing do not apply.
    assert all(f"{name}=" not in config_line for name in ("hidden", "val_fraction", "label_smoothing")), config_line
    code, out, err = invoke("report", "usertask-random", "--out", "report", *common)
    assert code == 0, err
    assert '"hidden"' not in (task_dir / "report" / "index.md").read_text()
    assert invoke("export", "usertask-random", "--out", "best.json", *common)[0] == 0
    assert "hidden" in json.loads((task_dir / "best.json").read_text())["config"]  # complete: it reproduces alone
    assert (task_dir / "report" / "learning_curves.png").is_file() and (task_dir / "report" / "index.md").is_file()
    assert list((task_dir / "hp-artifacts").iterdir())  # each trial's learning curve, with no accuracy axis


def test_metric_val_acc_is_refused_for_a_regression(task_dir: Path) -> None:
    code, _, err = invoke("run", "--metric", "val_acc", "--loss", "mse", "--model", "usertask.py:regressor",
                          "--dataset", "usertask.py:load_regression", "--n-trials", "1", "--storage", "memory",
                          "--quiet")
    assert code == 2 and "metric val_acc needs a classification task" in err


def test_momentum_in_a_space_is_left_out_for_a_fixed_optimizer_that_has_none(digits: Data) -> None:
    space = SearchSpace.from_mapping({"lr": {"low": 1e-3, "high": 1e-2, "log": True},
                                      "momentum": {"low": 0.5, "high": 0.95}})
    adamw = run_study(StudySpec(name="adamw", strategy="random", n_trials=2, pruner="none", space=space,
                                train=TrainConfig(epochs=1, hidden=(16,))), "memory", data=digits)
    assert [set(t.params) for t in adamw.trials] == [{"lr"}, {"lr"}]
    assert all(t.state.name == "COMPLETE" for t in adamw.trials)
    sgd = run_study(StudySpec(name="sgd", strategy="random", n_trials=2, pruner="none", space=space,
                              train=TrainConfig(epochs=1, hidden=(16,), optimizer="sgd")), "memory", data=digits)
    assert [set(t.params) for t in sgd.trials] == [{"lr", "momentum"}, {"lr", "momentum"}]
