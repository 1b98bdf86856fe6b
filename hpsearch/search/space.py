"""The search space: which TrainConfig fields a study varies, over which range, on which scale."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from hpsearch.choices import OPTIMIZERS
from hpsearch.engine.config import ARG_TABLES
from hpsearch.errors import ConfigError

__all__ = ["DEFAULT_SPACE", "NO_SPACE", "SEARCHABLE", "ParamSpec", "SearchSpace", "split_arg"]

# TrainConfig fields a study may vary, with the type each takes; and any of the model factory's or the
# optimizer factory's arguments as ``model_args.NAME`` or ``optimizer_args.NAME`` (ARG_TABLES; an int range
# when both bounds are integers, else a float one).
SEARCHABLE: dict[str, type] = {
    "lr": float, "weight_decay": float, "warmup": float, "min_lr_ratio": float, "clip": float,
    "gamma": float, "decay_fraction": float, "batch_size": int, "step_size": int, "schedule": str,
    "optimizer": str, "momentum": float, "nesterov": bool, "beta1": float, "beta2": float,
    "label_smoothing": float, "precision": str,
}
# Parameters that exist only for some optimizers: a trial samples them only when its optimizer has them,
# a conditional space TPE models as such (an optimizer_args.NAME only when its optimizer is the user's).
OPTIMIZER_PARAMS = {"momentum": ("sgd",), "nesterov": ("sgd",), "beta1": ("adamw", "adam"), "beta2": ("adamw", "adam")}


def split_arg(name: str) -> tuple[str, str] | None:
    """``("model_args", "width")`` for a parameter named ``model_args.width`` (any of ARG_TABLES), else None."""
    table, dot, arg = name.partition(".")
    return (table, arg) if dot and table in ARG_TABLES and arg.isidentifier() else None


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: a ``low``..``high`` range (``log`` scale or not), or a list of ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    # A model argument's range is searched as ints when its bounds were written as ints (the fields' own
    # types say it for TrainConfig fields); kept by every copy, a narrowed stage's included.
    integer: bool = field(default=False, compare=False, repr=False)
    # A parameter of the user's Optuna objective, named as its own suggest calls name it: any name, typed by its
    # range alone (hpsearch.search.user_objective).
    own: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        where = f"space.{self.name}"
        if self.own:
            if not self.name:
                raise ConfigError(f"{where}: a parameter needs a name")
        elif self.name not in SEARCHABLE and split_arg(self.name) is None:
            raise ConfigError(f"{where}: cannot search {self.name!r}; searchable: {', '.join(SEARCHABLE)}, "
                              f"[space.model_args] NAME (the model factory's arguments) and [space.optimizer_args] "
                              f"NAME (your optimizer factory's)")
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ConfigError(f"{where}: give either non-empty choices or low and high, got {self._text()}")
            wrong = [choice for choice in self.choices if not _is_a(choice, self.kind)]
            if wrong:
                raise ConfigError(f"{where}: choices must be of type {self.kind.__name__}, got {wrong[0]!r}")
            return
        if self.low is None or self.high is None or self.kind in (str, bool):
            raise ConfigError(f"{where}: needs low and high (or choices), got {self._text()}")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ConfigError(f"{where}: low must be < high, got low={self.low:g} high={self.high:g}")
        if self.kind is int and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ConfigError(f"{where}: low and high must be whole numbers, got low={self.low:g} high={self.high:g}")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where}: a log-scale range needs low > 0, got low={self.low:g}")

    @property
    def kind(self) -> type:
        """The value's type: the TrainConfig field's, or for a factory's argument (or a parameter of the user's
        objective) int when both bounds are."""
        if self.name in SEARCHABLE and not self.own:
            return SEARCHABLE[self.name]
        if self.choices is not None:
            return object
        return int if self.integer else float

    @classmethod
    def from_mapping(cls, name: str, values: Mapping[str, Any], own: bool = False) -> ParamSpec:
        """From a spec table such as ``{low = 1e-5, high = 1e-1, log = true}`` or ``{choices = [...]}``; ``own``: a
        parameter of the user's objective."""
        unknown = sorted(set(values) - {"low", "high", "log", "choices"})
        if unknown:
            raise ConfigError(f"space.{name}: unknown key {unknown[0]!r} (known: low, high, log, choices)")
        choices, log = values.get("choices"), values.get("log", False)
        if choices is not None and not isinstance(choices, list | tuple):
            raise ConfigError(f"space.{name}: choices must be a list such as [1, 2], got {choices!r}")
        if not isinstance(log, bool):
            raise ConfigError(f"space.{name}: log must be true or false, got {log!r}")
        ints = all(isinstance(values.get(k), int) and not isinstance(values.get(k), bool) for k in ("low", "high"))
        try:
            return cls(name=name, low=_number(values.get("low")), high=_number(values.get("high")),
                       log=log, choices=tuple(choices) if choices is not None else None,
                       integer=ints, own=own)
        except (TypeError, ValueError):
            raise ConfigError(f"space.{name}: low and high must be numbers, got {dict(values)}") from None

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution this parameter is sampled from."""
        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        assert self.low is not None and self.high is not None  # checked in __post_init__
        if self.kind is int:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def holds(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter can take: a choice, or inside the range."""
        if self.choices is not None:
            return value in self.choices
        assert self.low is not None and self.high is not None
        return isinstance(value, int | float) and self.low <= value <= self.high

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask ``trial`` for this parameter's value."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def grid(self, points: int) -> list[Any]:
        """Grid values: the choices, else ``points`` values spaced evenly (geometrically when log)."""
        if self.choices is not None:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        spaced = np.geomspace(self.low, self.high, points) if self.log else np.linspace(self.low, self.high, points)
        if self.kind is int:
            return sorted({round(float(v)) for v in spaced})
        return [float(v) for v in spaced]

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        if self.kind is int:
            return {"low": int(self.low or 0), "high": int(self.high or 0), "log": self.log}
        return {"low": self.low, "high": self.high, "log": self.log}

    def _text(self) -> str:
        return str(self.to_dict())


def _is_a(value: Any, kind: type) -> bool:
    """Whether ``value`` is of a setting's ``kind`` as a config file writes it (an int is a float, a bool no number)."""
    if kind is object:
        return True
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(value)
    return float(value)


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of a study, in a fixed order."""

    params: tuple[ParamSpec, ...]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Mapping[str, Any]], own: bool = False) -> SearchSpace:
        """From ``[space]``; its ``[space.model_args]`` and ``[space.optimizer_args]`` tables search the model
        factory's and the optimizer factory's arguments. ``own``: the parameters of the user's Optuna objective, by
        the names its suggest calls give them."""
        flat: dict[str, Mapping[str, Any]] = {}
        for name, spec in values.items():
            if (not own and name in ARG_TABLES and isinstance(spec, Mapping)
                    and all(isinstance(v, Mapping) for v in spec.values())):
                flat.update({f"{name}.{arg}": arg_spec for arg, arg_spec in spec.items()})
            elif not isinstance(spec, Mapping):
                raise ConfigError(f"space.{name}: needs a table such as {{low = 1e-4, high = 1e-1, log = true}} "
                                  f"or {{choices = [...]}}, got {spec!r}")
            else:
                flat[name] = spec
        if not flat:
            raise ConfigError("space: a study needs at least one parameter to search")
        ordered = sorted(flat, key=lambda n: n != "optimizer")  # the optimizer first: others depend on it
        return cls(tuple(ParamSpec.from_mapping(name, flat[name], own=own) for name in ordered))

    def suggest(self, trial: optuna.Trial, optimizer: str) -> dict[str, Any]:
        """Every parameter's value for ``trial``; optimizer-specific ones only where the trial's optimizer (the
        searched one, else the fixed ``optimizer``) has them."""
        values: dict[str, Any] = {}
        for param in self.params:
            chosen = values.get("optimizer", optimizer)
            needs = OPTIMIZER_PARAMS.get(param.name)
            if needs is not None and chosen not in needs:
                continue
            if param.name.startswith("optimizer_args.") and chosen in OPTIMIZERS:
                continue
            values[param.name] = param.suggest(trial)
        return values

    def replace(self, param: ParamSpec) -> SearchSpace:
        """A space where ``param`` takes the place of the parameter of the same name (or is added)."""
        others = tuple(p for p in self.params if p.name != param.name)
        return SearchSpace((*others, param))

    def distributions(self) -> dict[str, BaseDistribution]:
        return {p.name: p.distribution() for p in self.params}

    def grid(self, points: int) -> dict[str, list[Any]]:
        return {p.name: p.grid(points) for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        """As a ``[space]`` table, factories' arguments under ``model_args`` and ``optimizer_args`` (an objective's
        parameters by their own names, whatever they are)."""
        table: dict[str, Any] = {}
        for p in self.params:
            split = split_arg(p.name) if not p.own else None
            if split is not None:
                table.setdefault(split[0], {})[split[1]] = p.to_dict()
            else:
                table[p.name] = p.to_dict()
        return table


DEFAULT_SPACE = SearchSpace((ParamSpec("lr", 1e-5, 1e-1, log=True), ParamSpec("weight_decay", 1e-5, 1e-1, log=True)))
# The space of a user's objective that declares none: its own suggest calls define it as it runs.
NO_SPACE = SearchSpace(())
