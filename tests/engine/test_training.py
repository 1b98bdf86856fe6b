from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from conftest import TrainedEpochs

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data, StreamData
from hpsearch.engine.models import MLP
from hpsearch.engine.step import Stepper
from hpsearch.engine.task import build_optimizer
from hpsearch.engine.training import EpochMetrics, train
from hpsearch.errors import CheckpointError, ConfigError

CPU = torch.device("cpu")


def killed_at_epoch_2(epoch: int, metrics: EpochMetrics) -> None:
    if epoch == 2:
        raise KeyboardInterrupt


def test_lr_1e3_reaches_95_percent_on_digits_within_20_epochs(digits: Data) -> None:
    result = train(TrainConfig(lr=1e-3, epochs=20), digits)
    assert result.status == "completed"
    assert max(m.val_acc for m in result.history) >= 0.95
    assert result.initial_loss == pytest.approx(math.log(10), abs=0.15)
    assert len(result.history) == 20 and result.history[-1].epoch == 20


def test_lr_0_5_diverges_or_stays_near_chance(digits: Data) -> None:
    result = train(TrainConfig(lr=0.5, epochs=5), digits)
    assert result.status == "diverged" or result.val_acc <= 0.30
    if result.status == "diverged":
        assert result.reason is not None and "diverged at epoch" in result.reason


def test_overfitting_500_samples_drives_train_loss_below_0_05() -> None:
    result = train(TrainConfig(subset=500, epochs=40, lr=1e-3, weight_decay=0.0))
    assert result.history[-1].train_loss < 0.05


def test_epoch_metrics_are_complete_and_sane(digits: Data) -> None:
    result = train(TrainConfig(epochs=2, schedule="cosine"), digits)
    first, last = result.history
    assert first.lr == pytest.approx(1e-3)
    assert last.lr < first.lr
    for m in result.history:
        assert m.samples_per_s > 0 and m.seconds > 0 and m.grad_norm > 0
        assert 0.0 <= m.val_acc <= 1.0 and m.train_loss > 0
    assert result.to_dict()["history"][0]["epoch"] == 1


def test_same_config_and_seed_give_the_same_numbers(digits: Data) -> None:
    config = TrainConfig(epochs=3, seed=7)
    first, second = train(config, digits), train(config, digits)
    assert [m.val_loss for m in first.history] == [m.val_loss for m in second.history]
    other = train(config.replace(seed=8), digits)
    assert other.history[-1].val_loss != first.history[-1].val_loss


def test_a_reporter_sees_every_epoch_and_can_stop_the_run(digits: Data) -> None:
    seen: list[int] = []

    def stop_after_two(epoch: int, metrics: EpochMetrics) -> bool:
        seen.append(epoch)
        return epoch == 2

    result = train(TrainConfig(epochs=5), digits, reporter=stop_after_two)
    assert seen == [1, 2]
    assert result.status == "stopped" and len(result.history) == 2


def test_a_stop_after_the_last_epoch_leaves_the_run_completed(digits: Data) -> None:
    result = train(TrainConfig(epochs=2, hidden=(16,)), digits, reporter=lambda epoch, metrics: epoch == 2)
    assert result.status == "completed" and result.reason is None and len(result.history) == 2


def test_non_finite_loss_ends_the_run_as_diverged_not_an_exception(digits: Data) -> None:
    poisoned = Data(digits.x_train * 1e38, digits.y_train, digits.x_val, digits.y_val, 10, "poisoned")
    result = train(TrainConfig(epochs=3, lr=1.0), poisoned)
    assert result.status == "diverged"
    assert len(result.history) == 1
    assert result.to_dict()["status"] == "diverged"


def test_clipping_bounds_the_step_on_a_corrupted_batch(digits: Data) -> None:
    # Plain SGD makes the step proportional to the applied gradient, so the bound is exact:
    # |dw| <= lr * clip with clipping, and lr * |g| without.
    x, y = digits.x_train[:64] * 1000, digits.y_train[:64]
    moved = {}
    for clip in (1.0, None):
        torch.manual_seed(0)
        model = MLP(digits.input_dim, 10)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        _, grad_norm = Stepper(model, TrainConfig(), CPU, torch.optim.SGD(model.parameters(), lr=0.01)).step(x, y, clip)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        moved[clip] = (after - before).norm().item()
    assert grad_norm.item() > 100
    assert moved[1.0] <= 0.01 * 1.0 + 1e-6
    assert moved[None] > 50 * moved[1.0]


def test_adamw_step_applies_the_clipped_gradient(digits: Data) -> None:
    torch.manual_seed(0)
    model = MLP(digits.input_dim, 10)
    stepper = Stepper(model, TrainConfig(), CPU, build_optimizer(model, TrainConfig(), CPU))
    _, grad_norm = stepper.step(digits.x_train[:64] * 1000, digits.y_train[:64], clip=1.0)
    applied = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert grad_norm.item() > 100
    assert applied.item() == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("schedule", ["constant", "warmup-cosine", "wsd", "step"])
def test_resume_from_a_mid_run_checkpoint_equals_the_uninterrupted_run(
    digits: Data, tmp_path: Path, schedule: str
) -> None:
    config = TrainConfig(epochs=4, schedule=schedule, step_size=1, clip=1.0)
    path = tmp_path / "run.ckpt"

    with pytest.raises(KeyboardInterrupt):
        train(config, digits, checkpoint=path, reporter=killed_at_epoch_2)
    resumed = train(config, digits, checkpoint=path)
    uninterrupted = train(config, digits)

    assert [m.epoch for m in resumed.history] == [1, 2, 3, 4]
    assert [m.val_loss for m in resumed.history] == [m.val_loss for m in uninterrupted.history]
    for a, b in zip(resumed.model.state_dict().values(), uninterrupted.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.resumed_from == 2 and uninterrupted.resumed_from == 0


@pytest.mark.parametrize("feed", ["device", "stream"])
def test_a_resumed_run_trains_only_the_epochs_after_its_checkpoint_from_its_weights(
    feed: str, digits: Data, tmp_path: Path, trained_epochs: TrainedEpochs
) -> None:
    config = TrainConfig(epochs=4, hidden=(32,), feed=feed)
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(config, digits, checkpoint=path, reporter=killed_at_epoch_2)
    assert trained_epochs.count == 2
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 2

    reported: list[tuple[int, int]] = []  # (epoch reported, epochs trained so far in this run)
    resumed = train(config, digits, checkpoint=path,
                    reporter=lambda epoch, metrics: reported.append((epoch, trained_epochs.count - 2)))
    uninterrupted = train(config, digits)

    assert resumed.resumed_from == 2 and resumed.to_dict()["resumed_from"] == 2
    assert reported == [(1, 0), (2, 0), (3, 1), (4, 2)]  # epochs 1-2 restored, 3-4 trained
    assert trained_epochs.count == 2 + 2 + 4
    assert set(trained_epochs.data) == {StreamData if feed == "stream" else Data}
    for name, weight in trained_epochs.starting_weights[2].items():  # epoch 3 of the resumed run
        assert torch.equal(weight, saved["model"][name]), name
    assert resumed.history[2].train_loss == uninterrupted.history[2].train_loss
    assert resumed.history[2].train_loss != uninterrupted.history[0].train_loss  # what fresh weights would give
    assert [m.val_loss for m in resumed.history] == [m.val_loss for m in uninterrupted.history]


def test_a_checkpoint_of_another_config_is_refused(digits: Data, tmp_path: Path) -> None:
    path = tmp_path / "run.ckpt"
    train(TrainConfig(epochs=1), digits, checkpoint=path)
    saved = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"made with lr=0\.001, not 0\.01"):
        train(TrainConfig(epochs=1, lr=0.01), digits, checkpoint=path)
    assert path.read_bytes() == saved


def test_a_finished_checkpoint_returns_its_history_without_training(digits: Data, tmp_path: Path,
                                                                     trained_epochs: TrainedEpochs) -> None:
    path = tmp_path / "run.ckpt"
    first = train(TrainConfig(epochs=2), digits, checkpoint=path)
    assert trained_epochs.count == 2
    again = train(TrainConfig(epochs=2), digits, checkpoint=path)
    assert again.history == first.history
    assert again.resumed_from == 2 and trained_epochs.count == 2


def test_batch_larger_than_the_data_is_a_config_error(digits: Data) -> None:
    with pytest.raises(ConfigError, match="batch_size must be at most the 1438 training samples of digits, got 5000"):
        train(TrainConfig(batch_size=5000), digits)


def test_copying_a_config_keeps_it_valid() -> None:
    config = TrainConfig()
    assert copy.deepcopy(config) == config
    with pytest.raises(ConfigError):
        config.replace(epochs=0)
