"""The user's optimizer factory (tests/useroptim.py): trained with, scheduled, swept by the LR range test, checked."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from hpsearch.engine.checks import FAIL, PASS, run_checks
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.engine.lr_finder import lr_range_test
from hpsearch.engine.schedules import build_scheduler
from hpsearch.engine.task import build_model, build_optimizer, load_checked
from hpsearch.engine.training import train
from hpsearch.errors import ConfigError, TaskError

USEROPTIM = Path(__file__).parent.with_name("useroptim.py")
CPU = torch.device("cpu")
RMSPROP = TrainConfig(optimizer="useroptim.py:rmsprop", optimizer_args={"alpha": 0.98}, lr=2e-3, weight_decay=1e-4,
                      epochs=6, batch_size=64, hidden=(64,))


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding useroptim.py as the working directory; the file its factory logs each alpha to."""
    shutil.copy(USEROPTIM, tmp_path / "useroptim.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USEROPTIM_LOG", str(tmp_path / "alphas.log"))
    return tmp_path / "alphas.log"


def test_rmsprop_from_a_factory_reaches_95_percent_on_digits(log: Path, digits: Data) -> None:
    result = train(RMSPROP, digits)
    assert result.status == "completed"
    assert result.val_acc >= 0.95, [m.val_acc for m in result.history]
    assert log.read_text().split() == ["0.98"]  # built by the factory, with its optimizer_args


def test_a_factory_splits_its_params_into_groups_and_every_schedule_scales_both(log: Path, digits: Data) -> None:
    config = RMSPROP.replace(optimizer="useroptim.py:no_decay_on_biases", optimizer_args={}, weight_decay=0.1)
    model = build_model(config, digits)
    optimizer = build_optimizer(model, config, CPU)
    decayed, kept = optimizer.param_groups
    assert {p.ndim for p in decayed["params"]} == {2} and {p.ndim for p in kept["params"]} == {1}
    assert (decayed["weight_decay"], kept["weight_decay"]) == (0.1, 0.0)
    assert len(decayed["params"]) + len(kept["params"]) == len(list(model.parameters()))
    scheduler = build_scheduler(optimizer, "cosine", total_steps=10, steps_per_epoch=5, min_lr_ratio=0.1)
    for _ in range(9):
        optimizer.step()
        scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.1 * config.lr] * 2)


def test_the_lr_range_test_sweeps_the_factorys_optimizer(log: Path, digits: Data) -> None:
    result = lr_range_test(RMSPROP.replace(batch_size=64), digits, start_lr=1e-6, end_lr=1.0, steps=40)
    assert result.lrs[0] == pytest.approx(1e-6) and result.lrs[-1] > 1e-3
    assert result.suggestion is not None and math.isfinite(result.suggestion)
    assert log.read_text().split() == ["0.98"]


def test_the_checks_step_the_factorys_optimizer_and_fail_one_that_drops_weight_decay(log: Path, digits: Data) -> None:
    healthy = {r.name: r.outcome for r in run_checks(RMSPROP, digits)}
    assert healthy["weight decay"] == PASS and healthy["overfit one batch"] == PASS
    assert len(log.read_text().split()) >= 2  # the weight decay and update checks built it
    dropped = {r.name: r.outcome for r in run_checks(RMSPROP.replace(optimizer="useroptim.py:ignores_weight_decay",
                                                                     optimizer_args={}), digits)}
    assert dropped["weight decay"] == FAIL


@pytest.mark.parametrize(("change", "message"), [
    ({"optimizer": "useroptim.py:raises", "optimizer_args": {}},
     "optimizer 'useroptim.py:raises': the factory raised ValueError: lion needs a GPU"),
    ({"optimizer": "useroptim.py:returns_none", "optimizer_args": {}},
     "optimizer 'useroptim.py:returns_none': the factory must return a torch.optim.Optimizer, got NoneType"),
    ({"optimizer_args": {"beta": 0.9}},
     "optimizer_args.beta: optimizer 'useroptim.py:rmsprop' takes no argument 'beta' (it takes: alpha, momentum)"),
], ids=["raises", "returns None", "unknown argument"])
def test_a_broken_factory_is_one_error_before_training(change: dict[str, object], message: str, log: Path,
                                                       digits: Data) -> None:
    with pytest.raises(TaskError if "factory" in message else ConfigError) as caught:
        load_checked(RMSPROP.replace(**change), digits)
    assert str(caught.value) == message


@pytest.mark.parametrize(("change", "message"), [
    ({"optimizer_args": {"eps": 1e-6}}, "optimizer_args must be empty with the built-in optimizer 'adamw'"),
    ({"optimizer": "useroptim.py:rmsprop", "beta1": 0.8}, "beta1 must be unset with optimizer 'useroptim.py:rmsprop' "
                                                          "(give your factory's own arguments in optimizer_args)"),
    ({"optimizer": "useroptim.py:rmsprop", "momentum": 0.9}, "momentum must be unset with optimizer "
                                                             "'useroptim.py:rmsprop' (give your factory's own"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of adamw, adam, sgd or an entry point"),
], ids=["args to a built-in", "beta1 to a factory", "momentum to a factory", "unknown name"])
def test_settings_of_another_optimizer_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        TrainConfig(**change)  # type: ignore[arg-type]
    assert message in str(caught.value)
