"""The user's metrics function (tests/useroptim.py): on the whole validation set each epoch, kept in the history."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from sklearn.metrics import f1_score

import hpsearch.engine.data
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.engine.task import load_checked, reported_metrics
from hpsearch.engine.training import train
from hpsearch.errors import TaskError

USEROPTIM = Path(__file__).parent.with_name("useroptim.py")
F1 = TrainConfig(metrics="useroptim.py:macro_f1", epochs=3, hidden=(32,), lr=3e-3)


@pytest.fixture(autouse=True)
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(USEROPTIM, tmp_path / "useroptim.py")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_metrics_see_the_whole_validation_set_at_once(monkeypatch: pytest.MonkeyPatch, digits: Data) -> None:
    monkeypatch.setattr(hpsearch.engine.data, "EVAL_CHUNK", 50)  # validation in 8 batches, the last a short one
    result = train(F1, digits)
    assert [m.user_metrics["samples"] for m in result.history] == [digits.n_val] * 3
    model = result.model.eval()
    with torch.no_grad():
        predicted = model(digits.x_val).argmax(dim=1)
    whole = f1_score(digits.y_val.numpy(), predicted.numpy(), average="macro")
    assert result.history[-1].user_metrics["macro_f1"] == pytest.approx(whole, abs=1e-12)


def test_each_epoch_keeps_the_users_metrics_in_its_json(digits: Data) -> None:
    history = train(F1, digits).to_dict()["history"]
    assert [sorted(epoch["user_metrics"]) for epoch in history] == [["macro_f1", "samples"]] * 3
    assert all(0 < epoch["user_metrics"]["macro_f1"] <= 1 for epoch in history)
    assert train(F1.replace(metrics=None, epochs=1), digits).to_dict()["history"][0]["user_metrics"] == {}


def test_an_optimizer_factory_and_a_metrics_function_from_python_train_in_process(digits: Data) -> None:
    def sgd(params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)

    def error_rate(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {"error_rate": float((outputs.argmax(dim=1) != targets).float().mean())}

    config = TrainConfig(optimizer=sgd, metrics=error_rate, lr=0.05, epochs=2, hidden=(32,))
    assert config.optimizer.endswith("sgd") and config.metrics.endswith("error_rate")
    final = train(config, digits).history[-1]
    assert final.user_metrics["error_rate"] == pytest.approx(1 - final.val_acc)


def test_the_reported_metrics_are_the_built_in_ones_and_the_users(digits: Data) -> None:
    assert reported_metrics(F1, digits) == ("val_loss", "val_acc", "macro_f1", "samples")
    assert reported_metrics(F1.replace(metrics=None), digits) == ("val_loss", "val_acc")


@pytest.mark.parametrize(("metrics", "message"), [
    ("metrics_list", "metrics 'useroptim.py:metrics_list' must return a dict of name to number, got list"),
    ("metrics_raises", "metrics 'useroptim.py:metrics_raises' raised RuntimeError: no positive class (on outputs "
                       "(256, 10) and targets (256,))"),
    ("metrics_named_val_acc", "metrics 'useroptim.py:metrics_named_val_acc' returned 'val_acc', a metric hpsearch "
                              "reports itself: name yours otherwise"),
    ("metrics_text", "metrics 'useroptim.py:metrics_text' must return numbers, got 'macro_f1': str"),
], ids=["a list", "raises", "named val_acc", "a string value"])
def test_a_broken_metrics_function_is_one_error_before_training(metrics: str, message: str, digits: Data) -> None:
    with pytest.raises(TaskError) as caught:
        load_checked(F1.replace(metrics=f"useroptim.py:{metrics}"), digits)
    assert str(caught.value) == message
