"""StudySpec: what a study searches, how, for how long, over which fixed training settings.

Loaded from a TOML file with ``[study]``, ``[space]`` and ``[train]`` tables, then overridden by
command-line flags; validated once here, so the runner can trust it.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.search.space import DEFAULT_SPACE, SearchSpace

__all__ = ["DEFAULT_TRIALS", "METRICS", "PRUNERS", "STRATEGIES", "StudySpec", "load_spec_file"]

STRATEGIES = ("grid", "random", "tpe")
PRUNERS = ("median", "hyperband", "none")
METRICS = {"val_loss": "minimize", "val_acc": "maximize"}
DEFAULT_TRIALS = 30
_STUDY_KEYS = ("name", "strategy", "metric", "pruner", "n_trials", "timeout", "seed", "grid_points")


@dataclass(frozen=True)
class StudySpec:
    """A validated study description; ``train`` holds the settings every trial shares."""

    name: str | None = None
    strategy: str = "tpe"
    metric: str = "val_loss"
    pruner: str = "median"
    n_trials: int | None = None
    timeout: float | None = None
    seed: int = 0
    grid_points: int = 5
    space: SearchSpace = DEFAULT_SPACE
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _one_of("strategy", self.strategy, STRATEGIES)
        _one_of("pruner", self.pruner, PRUNERS)
        _one_of("metric", self.metric, tuple(METRICS))
        if self.n_trials is not None and self.n_trials < 1:
            raise ConfigError(f"n_trials must be >= 1, got {self.n_trials}")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.grid_points < 2:
            raise ConfigError(f"grid_points must be >= 2, got {self.grid_points}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.name is not None and not self.name.strip():
            raise ConfigError(f"study name must not be empty, got {self.name!r}")

    @property
    def study_name(self) -> str:
        """The given name, else ``<dataset>-<strategy>`` so that different searches do not collide."""
        if self.name:
            return self.name
        dataset = self.train.dataset
        if dataset.startswith("npz:"):
            dataset = Path(dataset[4:]).stem
        return f"{dataset.partition(':')[0]}-{self.strategy}"

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    @property
    def total_trials(self) -> int:
        """The number of finished trials the study should reach."""
        if self.n_trials is not None:
            return self.n_trials
        if self.strategy == "grid":
            return math.prod(len(values) for values in self.space.grid(self.grid_points).values())
        return DEFAULT_TRIALS

    def replace(self, **changes: Any) -> StudySpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The spec as the tables of a spec file (what is stored with the study)."""
        study = {key: getattr(self, key) for key in _STUDY_KEYS if getattr(self, key) is not None}
        study["name"] = self.study_name
        return {"study": study, "space": self.space.to_dict(), "train": self.train.to_dict()}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "spec") -> StudySpec:
        """From the tables of a spec file; any unknown table or key is an error naming it."""
        unknown = sorted(set(values) - {"study", "space", "train"})
        if unknown:
            raise ConfigError(f"unknown table [{unknown[0]}] in {source} (known: study, space, train)")
        study = dict(values.get("study", {}))
        bad = sorted(set(study) - set(_STUDY_KEYS))
        if bad:
            raise ConfigError(f"unknown key {bad[0]!r} in [study] of {source} (known: {', '.join(_STUDY_KEYS)})")
        space = SearchSpace.from_mapping(values["space"]) if "space" in values else DEFAULT_SPACE
        train = TrainConfig.from_mapping(values.get("train", {}), source=f"[train] of {source}")
        return cls(space=space, train=train, **_typed_study_fields(study))


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML spec file into its tables."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read spec file (--spec {path}): {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse spec file (--spec {path}): {exc}") from None


def _typed_study_fields(study: dict[str, Any]) -> dict[str, Any]:
    types = {"name": str, "strategy": str, "metric": str, "pruner": str, "n_trials": int, "timeout": float,
             "seed": int, "grid_points": int}
    typed = {}
    for key, value in study.items():
        wanted = types[key]
        if value is not None and not (isinstance(value, wanted) or (wanted is float and isinstance(value, int))):
            raise ConfigError(f"{key} must be {wanted.__name__}, got {value!r}")
        typed[key] = float(value) if wanted is float and value is not None else value
    return typed


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
