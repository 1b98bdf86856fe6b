"""The task seam: a config's model, data, loss, optimizer and metrics, built in this one module.

A built-in name (``mlp``, ``cnn``, ``digits``, ``cross-entropy``, ``adamw``, …) and a user's entry point
(``pkg.module:attr``, ``file.py:attr``) resolve to the same things here, and every mistake in the
user's code (a factory that raises, returns no module or no optimizer, gives the wrong output shape, a
metrics function that returns no dict) becomes one error line naming the flag and the value, found
before any trial starts.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.choices import METRICS, OPTIMIZERS
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import ANY, CLASSES, VALUES, Data, TaskData, place
from hpsearch.engine.datasets import load_data
from hpsearch.engine.devices import resolve_device
from hpsearch.engine.entry_points import resolve
from hpsearch.engine.models import MODELS
from hpsearch.errors import ConfigError, TaskError

__all__ = ["ADAM_BETAS", "ChanceLevel", "LossFunction", "MetricsFunction", "build_loss", "build_metrics",
           "build_model", "build_optimizer", "chance_level", "check_precision", "check_task", "eval_loss",
           "is_classification", "load_checked", "load_task_data", "reported_metrics"]

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# The user's metrics, called on the outputs and targets of the whole validation set: a dict of name to number.
MetricsFunction = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
ADAM_BETAS = (0.9, 0.999)  # torch's own, where a config leaves beta1 or beta2 unset
# Samples of the training split a metrics function is first called on, before any trial: enough that a score
# over classes (macro-F1, AUROC) sees each class of a small task.
METRICS_CHECK_SAMPLES = 256


def load_task_data(config: TrainConfig, device: torch.device | None = None) -> TaskData:
    """The data ``config`` names, split and subset as it says, placed for ``device`` (tensors on it when
    they fit, else streamed)."""
    device = resolve_device(config.device) if device is None else device
    targets = {"cross-entropy": CLASSES, "mse": VALUES}.get(config.loss, ANY)
    data = load_data(config.dataset, data_dir=config.data_dir, download=config.download, subset=config.subset,
                     val_fraction=config.val_fraction, device="cpu", targets=targets,
                     num_classes=config.num_classes)
    return place(data, device, config.feed, config.num_workers)


def load_checked(config: TrainConfig, data: TaskData | None = None) -> TaskData:
    """The data ``config`` names (or ``data``, placed as ``config`` says) on its device, with the model built and
    one small batch run through it and the loss (check_task): the one way the CLI, a study and every worker load a
    task, so a broken model or data is one error line before anything runs or is written."""
    device = resolve_device(config.device)
    data = load_task_data(config, device) if data is None else place(data, device, config.feed, config.num_workers)
    check_task(config, data)
    return data


def build_model(config: TrainConfig, data: TaskData) -> nn.Module:
    """The model factory called as ``factory(sample_shape, outputs, **model_kwargs)``, on the data's device."""
    factory = MODELS.get(config.model) or resolve(config.model, "model")
    kwargs = config.model_kwargs()
    _check_accepts(factory, kwargs, config.model, "model_args", positional=2)
    try:
        model = factory(data.sample_shape, data.num_classes, **kwargs)
    except Exception as exc:
        raise TaskError(f"model {config.model!r}: the factory raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise TaskError(f"model {config.model!r}: the factory must return an nn.Module, got {type(model).__name__}")
    return model.to(data.device)


def is_classification(config: TrainConfig, data: TaskData) -> bool:
    return data.classification if config.loss not in ("cross-entropy", "mse") else config.loss == "cross-entropy"


def build_loss(config: TrainConfig, *, training: bool = True) -> LossFunction:
    """The training loss (``training``: with label smoothing) or the plain one validation reports."""
    if config.loss == "cross-entropy":
        smoothing = config.label_smoothing if training else 0.0
        return lambda output, target: F.cross_entropy(output, target, label_smoothing=smoothing)
    if config.loss == "mse":
        return lambda output, target: F.mse_loss(output.reshape(target.shape), target)
    return resolve(config.loss, "loss")


def eval_loss(config: TrainConfig) -> LossFunction:
    """The loss validation reports: the training loss without its regularizing label smoothing."""
    return build_loss(config, training=False)


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, Adam or SGD from ``config``: fused into one kernel per step where torch has that for the
    device (AdamW, Adam), else the multi-tensor (foreach) kernels; or the user's factory's optimizer."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer not in OPTIMIZERS:
        return _users_optimizer(params, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum or 0.0,
                               nesterov=config.nesterov, foreach=True)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    beta1, beta2 = ADAM_BETAS
    betas = (beta1 if config.beta1 is None else config.beta1, beta2 if config.beta2 is None else config.beta2)
    try:
        return kind(params, lr=config.lr, weight_decay=config.weight_decay, betas=betas,
                    fused=device.type in ("cuda", "cpu", "mps"))
    except RuntimeError:  # an older torch or a device without the fused kernel
        return kind(params, lr=config.lr, weight_decay=config.weight_decay, betas=betas, foreach=True)


def _users_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The user's factory called as ``factory(params, lr, weight_decay, **optimizer_args)``, ``params`` the model's
    trainable parameters in ``model.parameters()`` order: a list to hand to torch, or to split into groups."""
    factory = resolve(config.optimizer, "optimizer")
    _check_accepts(factory, config.optimizer_args, config.optimizer, "optimizer_args", positional=3)
    try:
        optimizer = factory(params, config.lr, config.weight_decay, **config.optimizer_args)
    except Exception as exc:
        raise TaskError(f"optimizer {config.optimizer!r}: the factory raised {type(exc).__name__}: {exc}") from None
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TaskError(f"optimizer {config.optimizer!r}: the factory must return a torch.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")
    return optimizer


def build_metrics(config: TrainConfig) -> MetricsFunction | None:
    """The user's metrics function with its result checked and made floats; None when the config names none."""
    if config.metrics is None:
        return None
    function, name = resolve(config.metrics, "metrics"), config.metrics

    def metrics(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        try:
            values = function(outputs, targets)
        except Exception as exc:
            raise TaskError(f"metrics {name!r} raised {type(exc).__name__}: {exc} (on outputs "
                            f"{tuple(outputs.shape)} and targets {tuple(targets.shape)})") from None
        return _metric_values(values, name)

    return metrics


def _metric_values(values: object, name: str) -> dict[str, float]:
    """``values`` as a dict of name to float, or one error line saying what is wrong with it."""
    if not isinstance(values, Mapping):
        raise TaskError(f"metrics {name!r} must return a dict of name to number, got {type(values).__name__}")
    result = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise TaskError(f"metrics {name!r} must return names (non-empty strings) as keys, got {key!r}")
        if key in METRICS:
            raise TaskError(f"metrics {name!r} returned {key!r}, a metric hpsearch reports itself: name yours "
                            f"otherwise")
        try:
            result[key] = float(value)
        except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of more than one element
            raise TaskError(f"metrics {name!r} must return numbers, got {key!r}: {type(value).__name__}") from None
    return result


def reported_metrics(config: TrainConfig, data: TaskData) -> tuple[str, ...]:
    """The metrics each epoch of ``config`` reports: val_loss, val_acc for a classification, and the names the
    user's metrics function returns, found by calling it on a fresh model's outputs for a few samples."""
    names = ("val_loss", "val_acc") if is_classification(config, data) else ("val_loss",)
    metrics = build_metrics(config)
    if metrics is None:
        return names
    check_precision(config.precision, torch.device(data.device))
    torch.manual_seed(config.seed)
    model = build_model(config, data)
    x, y = data.head(METRICS_CHECK_SAMPLES)
    model.eval()
    try:
        with torch.no_grad():
            output = model(x).float()
    finally:
        model.train()
    return (*names, *metrics(output, y))


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 needs a GPU: torch's CPU autocast has no float16 kernels worth training with."""
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision 'fp16' needs a GPU (on a CPU use bf16 or fp32)")


def check_task(config: TrainConfig, data: TaskData) -> None:
    """Build the model and run one small batch through it and the loss, so that a model whose output does
    not match the classes or targets fails with one line before any trial starts."""
    check_precision(config.precision, torch.device(data.device))
    torch.manual_seed(config.seed)
    model = build_model(config, data)
    x, y = data.head(2)
    model.eval()
    try:
        with torch.no_grad():
            output = model(x)
    except Exception as exc:
        raise TaskError(f"model {config.model!r} fails on a batch of shape {tuple(x.shape)}: "
                        f"{type(exc).__name__}: {exc}") from None
    finally:
        model.train()
    wanted = (len(x), data.num_classes)
    what = "classes" if is_classification(config, data) else "targets"
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != wanted:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise TaskError(f"model {config.model!r} must output (batch, {data.num_classes}) for the {data.num_classes} "
                        f"{what} of dataset {data.name!r}, got {shape} from a batch of {len(x)}")
    try:
        value = build_loss(config)(output.float(), y)
    except Exception as exc:
        raise TaskError(f"loss {config.loss!r} fails on the model's output {tuple(output.shape)} and targets "
                        f"{tuple(y.shape)}: {type(exc).__name__}: {exc}") from None
    if not (isinstance(value, torch.Tensor) and value.numel() == 1):
        raise TaskError(f"loss {config.loss!r} must return a scalar tensor, got "
                        f"{tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__}")
    if config.optimizer not in OPTIMIZERS:
        build_optimizer(model, config, torch.device(data.device))
    reported_metrics(config, data)


def _check_accepts(factory: Callable[..., Any], kwargs: dict[str, Any], name: str, table: str, positional: int,
                   ) -> None:
    """An argument of ``table`` (model_args, optimizer_args) that the factory does not take after its first
    ``positional`` ones is an error naming it (before the factory runs)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: let the call itself say
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    given = list(parameters)[:positional]
    accepted = [key for key, p in parameters.items() if key not in given
                and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(f"{table}.{key}: {table.removesuffix('_args')} {name!r} takes no argument {key!r} "
                              f"(it takes: {', '.join(accepted) or 'none'})")


def initial_loss_expected(config: TrainConfig, data: TaskData, y: torch.Tensor) -> tuple[float, str] | None:
    """What a built-in loss should start near, with how it is written: log(C) for cross-entropy, the mean
    square of the targets for mse (a fresh model outputs about zero); None for a custom loss."""
    if config.loss == "cross-entropy":
        return math.log(data.num_classes), f"~log({data.num_classes})"
    if config.loss == "mse":
        return float((y.float() ** 2).mean()), "~mean(target^2)"
    return None


@dataclass(frozen=True)
class ChanceLevel:
    """What a model that learned nothing scores on a task: ``loss``, the training loss of predicting the
    class shares (cross-entropy: their entropy, log(C) when balanced) or the targets' mean (mse: their
    variance); ``accuracy``, the validation share of the largest class, what predicting one class gets.
    None where it is not known: a custom loss has no known chance loss, a regression no accuracy."""

    loss: float | None = None
    accuracy: float | None = None


def chance_level(config: TrainConfig, data: TaskData) -> ChanceLevel | None:
    """The chance level of ``config``'s task, from the labels when they are tensors; a streamed dataset is
    not read for it, and is taken as balanced (log(C), 1/C: a collapsed run on unbalanced classes then
    goes unnoticed rather than a healthy one flagged). None when nothing is known."""
    classification = is_classification(config, data)
    if not isinstance(data, Data):
        c = data.num_classes
        known = ChanceLevel(loss=math.log(c) if config.loss == "cross-entropy" else None,
                            accuracy=1 / c if classification else None)
        return known if known != ChanceLevel() else None
    loss = None
    if classification:
        train_shares = _shares(data.y_train, data.num_classes)
        if config.loss == "cross-entropy":
            loss = float(-(train_shares * train_shares.clamp_min(1e-12).log()).sum())
        return ChanceLevel(loss=loss, accuracy=float(_shares(data.y_val, data.num_classes).max()))
    if config.loss == "mse" and data.n_train > 1:
        loss = float(data.y_train.float().reshape(data.n_train, -1).var(dim=0, unbiased=False).mean())
    return ChanceLevel(loss=loss) if loss is not None else None


def _shares(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels.long().reshape(-1).clamp(0, num_classes - 1), minlength=num_classes).double()
    return counts / counts.sum().clamp_min(1)
