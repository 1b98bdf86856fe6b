from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hpsearch.cli import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


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


def test_same_command_with_a_checkpoint_resumes(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.ckpt"
    args = ["train", "--epochs", "2", "--hidden", "16", "--checkpoint", str(checkpoint), "--json"]
    first = json.loads(invoke(*args)[1])
    assert checkpoint.exists()
    again = json.loads(invoke(*args)[1])
    assert again["history"] == first["history"]


def write_npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    """Each bad input and a part of the one line it must produce."""
    config_with_unknown_key = tmp / "unknown.json"
    config_with_unknown_key.write_text('{"learning_rate": 0.1}')
    unreadable = tmp / "broken.json"
    unreadable.write_text("{not json")
    missing_keys = write_npz(tmp / "keys.npz", features=np.zeros((4, 2)))
    mismatched = write_npz(tmp / "lengths.npz", x=np.zeros((4, 2)), y=np.zeros(3))
    with_nan = write_npz(tmp / "nan.npz", x=np.full((10, 2), np.nan), y=np.arange(10) % 2)
    return [
        (["--lr", "0"], "lr must be > 0, got 0.0"),
        (["--lr", "-1e-3"], "lr must be > 0, got -0.001"),
        (["--weight-decay", "-0.1"], "weight_decay must be >= 0, got -0.1"),
        (["--epochs", "0"], "epochs must be >= 1, got 0"),
        (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
        (["--batch-size", "100000"], "batch_size must be at most the 1438 training samples of digits, got 100000"),
        (["--dataset", "cifar"], "dataset must be one of"),
        (["--schedule", "linear"], "schedule must be one of constant, step, cosine, warmup-cosine, wsd, got 'linear'"),
        (["--device", "tpu"], "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
        (["--device", "cuda:7"], "device 'cuda:7' is not available"),
        (["--dataset", "mnist", "--data-dir", str(tmp / "nothing")], f"--data-dir {tmp / 'nothing'}"),
        (["--dataset", "mnist"], "needs --data-dir"),
        (["--dataset", missing_keys], "needs keys x and y"),
        (["--dataset", mismatched], "x has 4 rows but y has 3"),
        (["--dataset", with_nan], "contains NaN or infinite values"),
        (["--config", str(tmp / "absent.toml")], "cannot read config file (--config"),
        (["--config", str(unreadable)], "cannot parse config file (--config"),
        (["--config", str(config_with_unknown_key)], "unknown config key 'learning_rate'"),
        (["--lr", "abc"], "Invalid value for '--lr'"),
        (["--bogus"], "No such option: --bogus"),
    ]


def test_every_bad_input_gives_one_error_line_and_exit_2(tmp_path: Path) -> None:
    for args, expected in bad_inputs(tmp_path):
        code, out, err = invoke("train", "--epochs", "1", *args)
        assert code == 2, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert expected in lines[0], (args, lines[0])
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
