"""The fixed vocabularies of hpsearch's settings, in one torch-free module: the config and the spec
validate against them, and the CLI lists them in ``--help`` without importing the engine."""

from __future__ import annotations

from typing import Literal

__all__ = ["DIRECTIONS", "FEEDS", "LOSSES", "METRICS", "OPTIMIZERS", "PRECISIONS", "PRUNERS", "SCHEDULES",
           "STRATEGIES", "Direction", "Feed", "Metric", "Optimizer", "Precision", "Pruner", "Schedule", "Strategy"]

Strategy = Literal["grid", "random", "tpe", "coarse-to-fine"]
Pruner = Literal["median", "hyperband", "asha", "none"]
Metric = Literal["val_loss", "val_acc"]  # built in; the user's metrics function reports more
Direction = Literal["minimize", "maximize"]
Schedule = Literal["constant", "step", "cosine", "warmup-cosine", "wsd"]
Optimizer = Literal["adamw", "adam", "sgd"]
Precision = Literal["fp32", "bf16", "fp16"]
# How batches reach the model: ``device`` (tensors on the device, batched by index), ``stream`` (a
# DataLoader), ``auto`` (device when the tensors fit, else stream; a Dataset always streams).
Feed = Literal["auto", "device", "stream"]

STRATEGIES: tuple[str, ...] = Strategy.__args__
PRUNERS: tuple[str, ...] = Pruner.__args__
METRICS = {"val_loss": "minimize", "val_acc": "maximize"}
DIRECTIONS: tuple[str, ...] = Direction.__args__
SCHEDULES: tuple[str, ...] = Schedule.__args__
OPTIMIZERS: tuple[str, ...] = Optimizer.__args__  # built in; an entry point names the user's factory
PRECISIONS: tuple[str, ...] = Precision.__args__
FEEDS: tuple[str, ...] = Feed.__args__
# Built-in losses; an entry point f(output, target) is accepted too, so this is no closed Literal.
LOSSES = ("cross-entropy", "mse")
