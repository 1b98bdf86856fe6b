"""TrainConfig: every setting of one training run, validated once, loadable from JSON or TOML."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsearch.data import check_dataset_name
from hpsearch.devices import check_device_name
from hpsearch.errors import ConfigError
from hpsearch.models import MODELS
from hpsearch.schedules import SCHEDULES

__all__ = ["TrainConfig", "load_config_file"]


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
    model: str = "mlp"
    hidden: tuple[int, ...] = (256, 128)
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
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        _validate(self)

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
        return values


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
    _require(config.model in MODELS, "model", config.model, f"one of {', '.join(MODELS)}")
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


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _require(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {expected}, got {value!r}")

