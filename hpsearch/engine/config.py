"""TrainConfig: every setting of one training run, validated once, loadable from JSON or TOML."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsearch.choices import FEEDS, LOSSES, OPTIMIZERS, PRECISIONS, SCHEDULES
from hpsearch.engine.datasets import FILE_DATASETS, check_dataset_name, is_users_load
from hpsearch.engine.devices import check_device_name
from hpsearch.engine.entry_points import as_entry_point, is_entry_point
from hpsearch.engine.models import MODELS
from hpsearch.errors import ConfigError

__all__ = ["ARG_TABLES", "ENTRY_POINT_FIELDS", "TrainConfig", "applicable_settings", "load_config_file",
           "merge_train_tables", "parse_arg"]

# The fields that name code, a built-in's name or the user's entry point (a callable from Python held as one).
ENTRY_POINT_FIELDS = ("dataset", "model", "loss", "optimizer", "metrics")
# The keyword-argument tables of the user's factories: fixed in a table of this name, searched as NAME.ARG.
ARG_TABLES = ("model_args", "optimizer_args")



@dataclass(frozen=True)
class TrainConfig:
    """The complete, reproducible description of one training run.

    Every field is checked on construction, so a TrainConfig that exists is a valid one.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    subset: int | None = None
    val_fraction: float = 0.2
    num_classes: int | None = None
    feed: str = "auto"
    num_workers: int = 0
    model: str = "mlp"
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    hidden: tuple[int, ...] = (256, 128)
    loss: str = "cross-entropy"
    label_smoothing: float = 0.0
    optimizer: str = "adamw"
    optimizer_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    momentum: float | None = None
    nesterov: bool = False
    beta1: float | None = None
    beta2: float | None = None
    precision: str = "fp32"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-2
    schedule: str = "constant"
    warmup: float = 0.05
    min_lr_ratio: float = 0.1
    step_size: int = 5
    gamma: float = 0.1
    decay_fraction: float = 0.2
    clip: float | None = None
    metrics: str | None = None
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        # A callable from Python is held as its entry-point string (hpsearch.engine.entry_points), so that a
        # config is always plain data that a storage can hold and a worker can read.
        for name in ENTRY_POINT_FIELDS:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, as_entry_point(getattr(self, name), name))
        for table in ARG_TABLES:
            object.__setattr__(self, table, dict(getattr(self, table)))
        _validate(self)

    @classmethod
    def from_sources(cls, config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
        """A config from a JSON or TOML file of settings (or an export) with ``overrides`` over it (None: not given;
        ``model_args`` and ``optimizer_args`` merged key by key): what ``train``, ``lr-find`` and ``check`` do with
        ``--config`` and flags."""
        values = load_config_file(config_file) if config_file is not None else {}
        given = {key: value for key, value in overrides.items() if value is not None}
        return cls.from_mapping(merge_train_tables(values, given), source=str(config_file) if config_file else "flags")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Build a config from loosely typed values (JSON, TOML, CLI), naming any bad key or value."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r} in {source} (known: {', '.join(known)})")
        return cls(**{name: _coerce(name, str(known[name].type), value) for name, value in values.items()})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists)."""
        values = dataclasses.asdict(self)
        values["hidden"] = list(self.hidden)
        for table in ARG_TABLES:
            values[table] = {key: list(v) if isinstance(v, tuple) else v for key, v in getattr(self, table).items()}
        return values

    def model_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the model factory: ``model_args``, and for the built-in mlp its ``hidden``."""
        if self.model == "mlp":
            return {"hidden": self.hidden, **self.model_args}
        return dict(self.model_args)


def _setting(config: Mapping[str, Any], name: str) -> Any:
    return config.get(name, getattr(TrainConfig, name, None))


_ADAMS = ("adamw", "adam")

# When a setting applies to a run; one not listed always does.
_APPLIES: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "hidden": lambda c: _setting(c, "model") == "mlp",
    "val_fraction": lambda c: not is_users_load(_setting(c, "dataset")),
    "data_dir": lambda c: _setting(c, "dataset") in FILE_DATASETS,
    "download": lambda c: _setting(c, "dataset") in FILE_DATASETS,
    "label_smoothing": lambda c: _setting(c, "loss") == "cross-entropy",
    "momentum": lambda c: _setting(c, "optimizer") == "sgd",
    "nesterov": lambda c: _setting(c, "optimizer") == "sgd",
    "beta1": lambda c: _setting(c, "optimizer") in _ADAMS,
    "beta2": lambda c: _setting(c, "optimizer") in _ADAMS,
    "optimizer_args": lambda c: _setting(c, "optimizer") not in OPTIMIZERS,
    "metrics": lambda c: _setting(c, "metrics") is not None,
    "warmup": lambda c: _setting(c, "schedule") in ("warmup-cosine", "wsd"),
    "min_lr_ratio": lambda c: _setting(c, "schedule") in ("cosine", "warmup-cosine", "wsd"),
    "step_size": lambda c: _setting(c, "schedule") == "step",
    "gamma": lambda c: _setting(c, "schedule") == "step",
    "decay_fraction": lambda c: _setting(c, "schedule") == "wsd",
}


def applicable_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a TrainConfig as a mapping, as a trial stores it) without the settings its run does not use:
    no ``hidden`` for a model other than the built-in mlp, no ``val_fraction`` for the user's own splits, no
    schedule or optimizer settings of another schedule or optimizer. What a person is shown; the stored and the
    exported config stay complete, so that they reproduce the run on their own and can be edited into another."""
    return {key: value for key, value in config.items() if _APPLIES.get(key, lambda c: True)(config)}


def merge_train_tables(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, model_args and optimizer_args merged key by key rather than replaced."""
    merged = {**base, **override}
    for table in ARG_TABLES:
        if isinstance(base.get(table), dict) and table in override:
            merged[table] = {**base[table], **override[table]}
    return merged


def parse_arg(text: str, flag: str = "model-arg") -> tuple[str, Any]:
    """``NAME=VALUE`` from ``--model-arg`` (or ``flag``, such as ``optimizer-arg``), the value read as an int,
    float, bool or else a string."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ConfigError(f"{flag} must be NAME=VALUE with NAME a Python identifier, got {text!r}")
    raw = raw.strip()
    if raw.lower() in ("true", "false"):
        return name, raw.lower() == "true"
    for kind in (int, float):
        try:
            return name, kind(raw)
        except ValueError:
            pass
    return name, raw


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML file of TrainConfig fields.

    An export file (``{"config": {...}, ...}``) is accepted too: its ``config`` table is used.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file (--config {path}): {exc.strerror}") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot parse config file (--config {path}): {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file must hold a table of fields (--config {path})")
    if isinstance(values.get("config"), dict):
        values = values["config"]
    return values


def _coerce(name: str, type_name: str, value: Any) -> Any:
    """Turn a JSON/TOML/CLI value into the field's type, or say which field and value are wrong."""
    if value is None and "None" in type_name:
        return None
    base = type_name.replace(" | None", "")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
        elif base == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                return int(value)
        elif base == "float":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return float(value)
        elif base == "str":
            if isinstance(value, str):
                return value
        elif base == "dict[str, Any]":
            if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
                return dict(value)
        elif base == "tuple[int, ...]":
            items = value.split(",") if isinstance(value, str) else value
            if isinstance(items, (list, tuple)):
                return tuple(_coerce(name, "int", item) for item in items)
    except (ValueError, ConfigError):
        pass
    raise ConfigError(f"{name} must be {base}, got {value!r}")


def _validate(config: TrainConfig) -> None:
    """Check every field's range; the message names the field and its value."""
    check_dataset_name(config.dataset)
    check_device_name(config.device)
    _require(config.model in MODELS or is_entry_point(config.model), "model", config.model,
             f"one of {', '.join(MODELS)} or an entry point (package.module:attr, path/to/file.py:attr)")
    _require(config.loss in LOSSES or is_entry_point(config.loss), "loss", config.loss,
             f"one of {', '.join(LOSSES)} or an entry point f(output, target) -> scalar tensor")
    _validate_optimizer(config)
    _require(config.metrics is None or is_entry_point(config.metrics), "metrics", config.metrics,
             "an entry point f(outputs, targets) -> dict of name to number (module:attr, file.py:attr)")
    _require(config.precision in PRECISIONS, "precision", config.precision, f"one of {', '.join(PRECISIONS)}")
    _require(config.feed in FEEDS, "feed", config.feed, f"one of {', '.join(FEEDS)}")
    _require(config.num_workers >= 0, "num_workers", config.num_workers, ">= 0")
    _require(config.num_classes is None or config.num_classes >= 1, "num_classes", config.num_classes, ">= 1")
    for table in ARG_TABLES:
        _require(all(isinstance(key, str) and key.isidentifier() for key in getattr(config, table)), table,
                 getattr(config, table), "a table of keyword arguments named like Python identifiers")
    _require(_finite(config.label_smoothing) and 0 <= config.label_smoothing < 1, "label_smoothing",
             config.label_smoothing, "in [0, 1)")
    _require(config.label_smoothing == 0 or config.loss == "cross-entropy", "label_smoothing",
             config.label_smoothing, f"0 with loss {config.loss!r} (it smooths cross-entropy's targets)")
    _require(config.schedule in SCHEDULES, "schedule", config.schedule, f"one of {', '.join(SCHEDULES)}")
    _require(config.subset is None or config.subset >= 1, "subset", config.subset, ">= 1")
    _require(_finite(config.val_fraction) and 0 < config.val_fraction < 1, "val_fraction", config.val_fraction,
             "between 0 and 1")
    _require(len(config.hidden) >= 1 and all(h >= 1 for h in config.hidden), "hidden", config.hidden,
             "one or more positive layer widths")
    _require(config.epochs >= 1, "epochs", config.epochs, ">= 1")
    _require(config.batch_size >= 1, "batch_size", config.batch_size, ">= 1")
    _require(_finite(config.lr) and config.lr > 0, "lr", config.lr, "> 0")
    _require(_finite(config.weight_decay) and config.weight_decay >= 0, "weight_decay", config.weight_decay, ">= 0")
    _require(_finite(config.warmup) and 0 <= config.warmup < 1, "warmup", config.warmup, "in [0, 1)")
    _require(_finite(config.min_lr_ratio) and 0 <= config.min_lr_ratio <= 1, "min_lr_ratio", config.min_lr_ratio,
             "in [0, 1]")
    _require(config.step_size >= 1, "step_size", config.step_size, ">= 1")
    _require(_finite(config.gamma) and 0 < config.gamma <= 1, "gamma", config.gamma, "in (0, 1]")
    _require(_finite(config.decay_fraction) and 0 < config.decay_fraction <= 1, "decay_fraction",
             config.decay_fraction, "in (0, 1]")
    _require(config.clip is None or (_finite(config.clip) and config.clip > 0), "clip", config.clip, "> 0")
    _require(config.seed >= 0, "seed", config.seed, ">= 0")


def _validate_optimizer(config: TrainConfig) -> None:
    """The optimizer's name or entry point, and the settings only some optimizers take: momentum and nesterov
    SGD's, beta1 and beta2 Adam's and AdamW's, optimizer_args the user's factory's."""
    builtin, sgd = config.optimizer in OPTIMIZERS, config.optimizer == "sgd"
    _require(builtin or is_entry_point(config.optimizer), "optimizer", config.optimizer,
             f"one of {', '.join(OPTIMIZERS)} or an entry point f(params, lr, weight_decay, **optimizer_args) -> "
             f"torch.optim.Optimizer")
    yours = f"unset with optimizer {config.optimizer!r} (give your factory's own arguments in optimizer_args)"
    _require(not config.optimizer_args or not builtin, "optimizer_args", config.optimizer_args,
             f"empty with the built-in optimizer {config.optimizer!r}, whose settings are its own fields (momentum, "
             f"nesterov, beta1, beta2); optimizer_args go to your optimizer factory")
    _require(config.momentum is None or sgd, "momentum", config.momentum,
             f"unset with optimizer {config.optimizer!r}, which has no momentum (use beta1; or optimizer sgd)"
             if builtin else yours)
    _require(config.momentum is None or (_finite(config.momentum) and 0 <= config.momentum < 1), "momentum",
             config.momentum, "in [0, 1)")
    _require(not config.nesterov or sgd, "nesterov", config.nesterov, f"false with optimizer {config.optimizer!r}")
    _require(not config.nesterov or (config.momentum or 0) > 0, "nesterov", config.nesterov,
             "false unless momentum > 0 (torch's SGD needs momentum for Nesterov)")
    for beta in ("beta1", "beta2"):
        value = getattr(config, beta)
        _require(value is None or not sgd, beta, value, "unset with optimizer 'sgd' (use momentum)")
        _require(value is None or builtin, beta, value, yours)
        _require(value is None or (_finite(value) and 0 <= value < 1), beta, value, "in [0, 1)")


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _require(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {expected}, got {value!r}")

