"""Pre-flight checks: a correct setup passes; each deliberately broken one fails the right check."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

import hpsearch.engine.step
from hpsearch.cli import app
from hpsearch.engine.checks import FAIL, PASS, SKIP, WARN, CheckResult, check_update_ratio, run_checks
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.engine.models import MLP, MODELS
from hpsearch.engine.task import load_task_data
from hpsearch.presentation.tables import print_checks

HEALTHY = TrainConfig(lr=1e-4, hidden=(64, 32))


class DetachedHead(MLP):
    """The last layer sees its input detached: no gradient reaches the layers before it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in list(self)[:-1]:
            x = layer(x)
        return self[-1](x.detach())


def softmaxed(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (64, 32)) -> nn.Module:
    """Probabilities, not logits, go into cross-entropy."""
    return nn.Sequential(MLP(input_shape, num_classes, hidden), nn.Softmax(dim=1))


def dead_units(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (64, 32)) -> nn.Module:
    """Every hidden unit's bias so negative that ReLU outputs zero for every input."""
    model = MLP(input_shape, num_classes, hidden)
    with torch.no_grad():
        for layer in list(model)[:-1]:
            if isinstance(layer, nn.Linear):
                layer.bias.fill_(-100.0)
    return model


def outcomes(config: TrainConfig, data: Data) -> dict[str, str]:
    return {result.name: result.outcome for result in run_checks(config, data)}


def test_a_correct_model_passes_every_check(digits: Data) -> None:
    assert set(outcomes(HEALTHY, digits).values()) == {PASS}


@pytest.mark.parametrize(("name", "factory", "failing"), [
    ("detached-head", DetachedHead, "gradients"),
    ("softmaxed", softmaxed, "overfit one batch"),
    ("dead-units", dead_units, "overfit one batch"),
])
def test_a_broken_model_fails_the_right_check(name: str, factory: object, failing: str, digits: Data,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, name, factory)
    found = outcomes(HEALTHY.replace(model=name), digits)
    assert found[failing] == FAIL, found
    assert found["data"] == PASS


def test_weight_decay_that_is_never_applied_fails(digits: Data, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hpsearch.engine.step, "build_optimizer",
                        lambda model, config, device: torch.optim.Adam(model.parameters(), lr=config.lr))
    found = outcomes(HEALTHY, digits)
    assert found["weight decay"] == FAIL and found["overfit one batch"] == PASS


@pytest.mark.parametrize("lr", [1e-8, 0.5])
def test_update_ratio_warns_far_from_its_healthy_size(lr: float, digits: Data) -> None:
    assert outcomes(HEALTHY.replace(lr=lr), digits)["update/weight ratio"] == WARN


CNN_DIGITS = TrainConfig(model="examples/cnn_digits.py:net", dataset="examples/cnn_digits.py:load", batch_size=64)


@pytest.mark.parametrize(("optimizer", "lr", "outcome"), [
    ("adamw", 3e-3, PASS), ("adamw", 3e-2, WARN), ("sgd", 0.1, PASS), ("sgd", 1.0, WARN)])
def test_update_ratio_is_quiet_at_the_readme_cnns_best_lr_and_warns_ten_times_above(
        optimizer: str, lr: float, outcome: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example: a search's best lrs on it are 2e-3 to 6e-3 with AdamW, 0.1 with SGD (momentum 0.9,
    scripts/diagnosis_accuracy.py); ten times that overshoots."""
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    sgd = {"momentum": 0.9, "weight_decay": 0.0} if optimizer == "sgd" else {}
    config = CNN_DIGITS.replace(lr=lr, optimizer=optimizer, **sgd)
    result = check_update_ratio(config, load_task_data(config))
    assert result.outcome == outcome, result.measured
    assert "conv weights" in result.measured and "linear weights" in result.measured


def test_unnormalized_or_unbalanced_data_warns(digits: Data) -> None:
    shifted = Data(digits.x_train * 10 + 5, digits.y_train, digits.x_val, digits.y_val, digits.num_classes, "shifted")
    assert outcomes(HEALTHY, shifted)["data"] == WARN
    bad_labels = Data(digits.x_train, digits.y_train + 3, digits.x_val, digits.y_val, digits.num_classes, "labels")
    assert outcomes(HEALTHY, bad_labels)["data"] == FAIL


def test_check_command_exit_codes_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["check", "--lr", "1e-4", "--hidden", "64,32", "--json"])
    assert done.exit_code == 0, done.output
    results = json.loads(done.stdout)
    assert [r["name"] for r in results] == ["data", "initial loss", "weight decay", "gradients", "overfit one batch",
                                           "update/weight ratio"]
    assert all(set(r) == {"name", "outcome", "measured", "expected", "meaning", "advice"} for r in results)
    monkeypatch.setitem(MODELS, "detached-head", DetachedHead)
    broken = runner.invoke(app, ["check", "--model", "detached-head", "--hidden", "64,32"])
    assert broken.exit_code == 1
    assert "FAIL gradients" in broken.stdout and "usually means" in broken.stdout


@pytest.mark.parametrize("outcome", [PASS, WARN, FAIL, SKIP])
def test_every_outcome_prints_as_one_line_with_its_advice_under_it(outcome: str) -> None:
    result = CheckResult("initial loss", outcome, "2.31", "~2.30", "the loss is not what it should be", "look at it")
    out = io.StringIO()
    print_checks(Console(file=out, width=200), [result])
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{outcome} initial loss: ")
    assert ("look at it" in out.getvalue()) == (outcome != PASS)


def test_check_with_a_custom_loss_file_prints_its_skipped_check(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myloss.py").write_text("import torch.nn.functional as F\n\n\n"
                                        "def ce(output, target):\n    return F.cross_entropy(output, target)\n")
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["check", "--loss", "myloss.py:ce", "--lr", "1e-4", "--hidden", "64,32"])
    assert done.exit_code == 0, done.output
    assert "SKIP initial loss" in done.stdout and "custom loss 'myloss.py:ce'" in done.stdout
    assert "PASS overfit one batch" in done.stdout
