"""The training engine: the task's batches, optimizer, schedule, clipping, precision, per-epoch metrics.

``train`` knows nothing about Optuna: it takes a config, tensors and an optional reporter that
may stop the run (the study runner's pruning hook), and returns a TrainResult.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpsearch.choices import METRICS
from hpsearch.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import TaskData, place
from hpsearch.engine.devices import resolve_device
from hpsearch.engine.models import count_parameters
from hpsearch.engine.schedules import build_scheduler
from hpsearch.engine.step import Stepper, evaluate
from hpsearch.engine.task import (
    ChanceLevel,
    build_metrics,
    build_model,
    chance_level,
    eval_loss,
    is_classification,
    load_task_data,
)
from hpsearch.errors import ConfigError, TaskError
from hpsearch.status import Status
from hpsearch.strict_json import finite_or_none

__all__ = ["EpochMetrics", "Reporter", "TrainResult", "check_batch_size", "config_data", "train"]

logger = logging.getLogger(__name__)

# A run has diverged when its loss is not finite or exceeds this many times its first loss.
DIVERGENCE_FACTOR = 4.0
# Reading a loss value synchronizes a GPU, so divergence is checked every this many steps.
DIVERGENCE_CHECK_EVERY = 16


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch measured; ``train_loss`` is the mean over its batches, ``user_metrics`` what the user's
    metrics function returned for the whole validation set."""

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float  # NaN for a regression
    lr: float
    grad_norm: float
    samples_per_s: float
    seconds: float
    user_metrics: dict[str, float] = field(default_factory=dict)

    def value(self, metric: str) -> float:
        """The epoch's ``metric``: val_loss, val_acc or one of the user's; a name it did not report is an error."""
        if metric in METRICS:
            return float(getattr(self, metric))
        if metric not in self.user_metrics:
            reported = ", ".join([*METRICS, *self.user_metrics])
            raise TaskError(f"metric {metric!r} was not reported at epoch {self.epoch} (reported: {reported})")
        return self.user_metrics[metric]


Reporter = Callable[[int, EpochMetrics], bool | None]
"""Called after each epoch with its metrics; returning True stops the run (status ``stopped``)."""


@dataclass
class TrainResult:
    """Outcome of ``train``: status (completed, diverged, stopped), why, and every epoch's metrics."""

    config: TrainConfig
    status: str
    reason: str | None
    history: list[EpochMetrics]
    initial_loss: float
    num_params: int
    device: str
    seconds: float
    model: nn.Module = field(repr=False, compare=False)
    resumed_from: int = 0  # the checkpoint's epoch when the run continued from one
    chance: ChanceLevel | None = None  # what learning nothing scores on the task, for the diagnosis

    @property
    def final(self) -> EpochMetrics | None:
        return self.history[-1] if self.history else None

    @property
    def val_loss(self) -> float:
        return self.final.val_loss if self.final else math.nan

    @property
    def val_acc(self) -> float:
        return self.final.val_acc if self.final else math.nan

    def value(self, metric: str) -> float:
        """The last epoch's ``metric`` (NaN when no epoch ran)."""
        return self.final.value(metric) if self.final else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary; non-finite numbers become None so the output is strict JSON."""
        return finite_or_none({
            "status": self.status,
            "reason": self.reason,
            "val_loss": self.val_loss,
            "val_acc": self.val_acc,
            "epochs": len(self.history),
            "initial_loss": self.initial_loss,
            "num_params": self.num_params,
            "resumed_from": self.resumed_from,
            "device": self.device,
            "seconds": self.seconds,
            "config": self.config.to_dict(),
            "history": [asdict(m) for m in self.history],
        })


def train(
    config: TrainConfig,
    data: TaskData | None = None,
    device: torch.device | str | None = None,
    reporter: Reporter | None = None,
    checkpoint: str | Path | None = None,
) -> TrainResult:
    """Train ``config`` on ``data`` (loaded from the config when None) and report each epoch.

    With ``checkpoint``, state is saved there after every epoch, and a run that finds a checkpoint
    of the same config resumes from it, ending with the same weights as an uninterrupted run; the
    reporter is first called with the restored epochs. The reporter may stop the run after any epoch but
    the last, which completes it (so a pruner asked there cannot turn a whole run into a stopped one).
    """
    started = time.perf_counter()
    device = resolve_device(config.device) if device is None else torch.device(device)
    data = config_data(config, device) if data is None else place(data, device, config.feed, config.num_workers)
    check_batch_size(config.batch_size, data)

    torch.manual_seed(config.seed)
    model = build_model(config, data)
    stepper = Stepper(model, config, device)
    optimizer = stepper.optimizer
    validation_loss, classification = eval_loss(config), is_classification(config, data)
    metrics_function = build_metrics(config)
    steps_per_epoch = math.ceil(data.n_train / config.batch_size)
    scheduler = build_scheduler(
        optimizer, config.schedule, total_steps=steps_per_epoch * config.epochs, steps_per_epoch=steps_per_epoch,
        warmup=config.warmup, min_lr_ratio=config.min_lr_ratio, step_size=config.step_size, gamma=config.gamma,
        decay_fraction=config.decay_fraction)
    shuffle = data.generator(config.seed)
    state = Checkpoint(epoch=0, history=[], initial_loss=math.nan)
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, config, model, optimizer, scheduler, shuffle, stepper.scaler)
        logger.info("resuming %s from epoch %d", checkpoint, state.epoch)

    history = [EpochMetrics(**m) for m in state.history]
    for restored in history if reporter is not None else ():
        reporter(restored.epoch, restored)  # the reporter sees the whole run; a stop applies to new epochs only
    initial_loss = state.initial_loss
    status, reason = Status.COMPLETED, None
    for epoch in range(state.epoch + 1, config.epochs + 1):
        epoch_started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        stats = _run_epoch(stepper, scheduler, data, config, shuffle, initial_loss)
        initial_loss = stats.initial_loss
        val_loss, val_acc, user_metrics = evaluate(model, data.val_batches(), validation_loss, config.precision,
                                                   device, classification, metrics_function)
        metrics = EpochMetrics(epoch=epoch, train_loss=stats.train_loss, val_loss=val_loss, val_acc=val_acc, lr=lr,
                               grad_norm=stats.grad_norm, samples_per_s=stats.samples / stats.seconds,
                               seconds=time.perf_counter() - epoch_started, user_metrics=user_metrics)
        history.append(metrics)
        if checkpoint is not None and stats.diverged_reason is None:
            # Saved before the reporter runs, so a run killed inside it resumes after this epoch.
            save_checkpoint(checkpoint, Checkpoint(epoch, [asdict(m) for m in history], initial_loss),
                            config, model, optimizer, scheduler, shuffle, stepper.scaler)
        stop = reporter is not None and reporter(epoch, metrics)
        if stats.diverged_reason is not None:
            status, reason = Status.DIVERGED, f"diverged at epoch {epoch}: {stats.diverged_reason}"
            break
        if stop and epoch < config.epochs:  # after the last epoch a stop saves nothing: the run completed
            status, reason = Status.STOPPED, f"stopped by the reporter after epoch {epoch}"
            break
    return TrainResult(config=config, status=status, reason=reason, history=history, initial_loss=initial_loss,
                       num_params=count_parameters(model), device=str(device),
                       seconds=time.perf_counter() - started, model=model, resumed_from=state.epoch,
                       chance=chance_level(config, data))


def config_data(config: TrainConfig, device: torch.device) -> TaskData:
    """The dataset ``config`` names, split and subset as it says, placed for ``device``."""
    return load_task_data(config, device)


def check_batch_size(batch_size: int, data: TaskData) -> None:
    """A batch cannot be larger than the training set: say so naming both."""
    if batch_size > data.n_train:
        raise ConfigError(f"batch_size must be at most the {data.n_train} training samples of {data.name}, "
                          f"got {batch_size}")


@dataclass
class _EpochStats:
    train_loss: float
    grad_norm: float
    samples: int
    seconds: float
    initial_loss: float
    diverged_reason: str | None


def _run_epoch(stepper: Stepper, scheduler: torch.optim.lr_scheduler.LRScheduler, data: TaskData,
               config: TrainConfig, shuffle: torch.Generator, initial_loss: float) -> _EpochStats:
    """One pass over the shuffled training batches (by index on the device, or streamed)."""
    started = time.perf_counter()
    device = stepper.device
    loss_sum = torch.zeros((), device=device)
    norm_sum = torch.zeros((), device=device)
    steps = samples = 0
    checked_sum, checked_steps = 0.0, 0
    diverged = None
    for x, y in data.train_batches(config.batch_size, shuffle):
        loss, grad_norm = stepper.step(x, y, config.clip)
        scheduler.step()
        loss_sum += loss
        norm_sum += grad_norm
        steps += 1
        samples += len(x)
        if math.isnan(initial_loss):
            initial_loss = loss.item()
        if steps % DIVERGENCE_CHECK_EVERY == 0 or samples >= data.n_train:
            # The mean loss since the last check, so that a spike that later collapses is caught too.
            total = loss_sum.item()
            diverged = _divergence((total - checked_sum) / (steps - checked_steps), initial_loss)
            checked_sum, checked_steps = total, steps
            if diverged is not None:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return _EpochStats(train_loss=loss_sum.item() / steps, grad_norm=norm_sum.item() / steps, samples=samples,
                       seconds=time.perf_counter() - started, initial_loss=initial_loss, diverged_reason=diverged)


def _divergence(loss: float, initial_loss: float) -> str | None:
    """Why a loss means the run has diverged, or None while it is still sane."""
    if not math.isfinite(loss):
        return f"loss is {loss}"
    if loss > DIVERGENCE_FACTOR * initial_loss:
        return f"loss {loss:.3g} exceeds {DIVERGENCE_FACTOR:g}x its initial {initial_loss:.3g}"
    return None
