"""StudySpec: what a study searches, how, for how long, over which fixed training settings.

Loaded from a TOML file with ``[study]``, ``[space]`` and ``[train]`` tables, then overridden by
command-line flags; validated once here, so the runner can trust it. A study's trials run hpsearch's training loop
on ``[train]``, or with ``objective`` the user's own Optuna objective, which suggests, reports and prunes itself.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsearch.choices import DIRECTIONS, METRICS, PRUNERS, STRATEGIES
from hpsearch.engine.config import ARG_TABLES, TrainConfig, merge_train_tables
from hpsearch.engine.entry_points import as_entry_point, is_entry_point
from hpsearch.errors import ConfigError
from hpsearch.search.space import DEFAULT_SPACE, NO_SPACE, OPTIMIZER_PARAMS, SearchSpace, split_arg

__all__ = ["DEFAULT_METRIC", "DEFAULT_TRIALS", "METRICS", "OBJECTIVE_METRIC", "PRUNERS", "STRATEGIES", "CoarseToFine",
           "StudySpec", "load_spec_file"]

DEFAULT_TRIALS = 30
DEFAULT_METRIC = "val_loss"
OBJECTIVE_METRIC = "value"  # what an objective's returned value is called unless the spec names it
_STUDY_KEYS = ("name", "strategy", "metric", "direction", "pruner", "pruner_warmup", "n_trials", "timeout", "seed",
               "grid_points", "lr_find", "objective")
# Strategies that need the objective's space declared ([space]): a grid lists its points, coarse-to-fine narrows it.
_DECLARED_SPACE_STRATEGIES = ("grid", "coarse-to-fine")


@dataclass(frozen=True)
class CoarseToFine:
    """How coarse-to-fine spends its budget: a short coarse stage, then fine stages on narrowed ranges.

    The coarse stage's trials stop early by ``coarse_pruner``: hyperband (successive halving in
    brackets, from stopping after one epoch to none) lets short trials buy the information while the
    best reach full length, a competitive best value early. ``coarse_epochs`` 0 means the full training
    epochs under hyperband or asha (they shorten trials themselves), else a third of them (at least
    1). The fine stages' trials stop early by ``fine_pruner``, hyperband too by default (the study's
    ``pruner``, when one is given, sets it), and stops no trial before the epoch from which the stage before
    ranked its trials as they finished (trusted_epoch.trusted_epoch). scripts/compare_strategies.py chose
    hyperband: asha in both stages did best on digits but worst on the MNIST-shaped task, whose slow
    learners it stopped at epoch 1 in favour of fast ones that overfit; the median pruner did worse on
    digits. Ranges narrow, in log space for log parameters, to the span of the ``keep`` best trials of the
    stage before, widened by ``margin`` (decades for log ranges, a fraction of the range otherwise).
    """

    stages: int = 3
    coarse_trials: int = 12
    coarse_epochs: int = 0
    coarse_sampler: str = "random"
    coarse_pruner: str = "hyperband"
    fine_pruner: str = "hyperband"
    fine_trials: int = 9
    keep: int = 4
    margin: float = 0.3

    def __post_init__(self) -> None:
        for name, low in (("stages", 2), ("coarse_trials", 1), ("fine_trials", 1), ("keep", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"coarse_to_fine.{name} must be >= {low}, got {getattr(self, name)}")
        if self.coarse_epochs < 0:
            raise ConfigError(f"coarse_to_fine.coarse_epochs must be >= 0, got {self.coarse_epochs}")
        _one_of("coarse_to_fine.coarse_sampler", self.coarse_sampler, ("random", "tpe"))
        _one_of("coarse_to_fine.coarse_pruner", self.coarse_pruner, PRUNERS)
        _one_of("coarse_to_fine.fine_pruner", self.fine_pruner, PRUNERS)
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ConfigError(f"coarse_to_fine.margin must be >= 0, got {self.margin}")

    @property
    def total_trials(self) -> int:
        return self.coarse_trials + (self.stages - 1) * self.fine_trials

    def sized(self, n_trials: int) -> CoarseToFine:
        """This plan with ``n_trials`` in all (at least one a stage), shared between the coarse stage and the
        fine stages as the plan shares its own total; what the fine stages cannot share evenly goes to the
        coarse one."""
        fine = max(1, round(n_trials * (1 - self.coarse_trials / self.total_trials)) // (self.stages - 1))
        fine = min(fine, (n_trials - 1) // (self.stages - 1))
        return dataclasses.replace(self, coarse_trials=n_trials - (self.stages - 1) * fine, fine_trials=fine)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CoarseToFine:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} in [coarse_to_fine] (known: {', '.join(known)})")
        for key, value in values.items():
            wanted = {"coarse_sampler": str, "coarse_pruner": str, "fine_pruner": str, "margin": float}.get(key, int)
            if isinstance(value, bool) or not isinstance(value, (int, float) if wanted is float else wanted):
                raise ConfigError(f"coarse_to_fine.{key} must be {wanted.__name__}, got {value!r}")
        return cls(**values)


@dataclass(frozen=True)
class StudySpec:
    """A validated study description; ``train`` holds the settings every trial of hpsearch's loop shares.

    ``metric`` is val_loss, val_acc or a name the user's metrics function reports; ``direction`` is the built-in
    metric's own when left out, and must be given for the user's. With ``objective`` (an entry point ``file.py:fn``
    or ``module:fn``, or the callable itself from Python) each trial is the user's Optuna objective
    ``fn(trial) -> float`` instead, unchanged; ``metric`` then only names its value (``value`` unless given),
    ``direction`` says which way is better (minimize unless given), and ``space`` holds what the spec declares of
    the objective's parameters (none unless given: the objective defines them)."""

    name: str | None = None
    strategy: str = "tpe"
    metric: str | None = None  # None: val_loss, or for an objective "value"
    direction: str | None = None  # None: the built-in metric's own (minimize for an objective), filled in on creation
    pruner: str = "median"
    pruner_warmup: int | None = None  # epochs every trial trains before its pruner may stop it; None: 1,
    # or for median the trusted epoch of the study's complete trials (pruners.make_pruner)
    n_trials: int | None = None
    timeout: float | None = None
    seed: int = 0
    grid_points: int = 5
    lr_find: bool = False
    objective: str | None = None
    space: SearchSpace | None = None  # None: DEFAULT_SPACE, or for an objective NO_SPACE
    train: TrainConfig = field(default_factory=TrainConfig)
    coarse_to_fine: CoarseToFine = field(default_factory=CoarseToFine)

    def __post_init__(self) -> None:
        if self.objective is not None:
            object.__setattr__(self, "objective", as_entry_point(self.objective, "objective"))
        own = self.objective is not None
        if self.metric is None:
            object.__setattr__(self, "metric", OBJECTIVE_METRIC if own else DEFAULT_METRIC)
        if self.space is None:
            object.__setattr__(self, "space", NO_SPACE if own else DEFAULT_SPACE)
        _one_of("strategy", self.strategy, STRATEGIES)
        _one_of("pruner", self.pruner, PRUNERS)
        _check_metric(self.metric, self.direction, objective=own)
        if self.direction is None:  # Optuna's default for an objective's value, unless it is named as a built-in
            object.__setattr__(self, "direction", METRICS.get(self.metric, "minimize"))
        if own:
            self._check_objective()
        if self.n_trials is not None and self.n_trials < 1:
            raise ConfigError(f"n_trials must be >= 1, got {self.n_trials}")
        stages = self.coarse_to_fine.stages
        if self.strategy == "coarse-to-fine" and self.n_trials is not None and self.n_trials < stages:
            raise ConfigError(f"n_trials must be >= coarse_to_fine.stages ({stages}) for coarse-to-fine, a trial or "
                              f"more a stage, got {self.n_trials}")
        if self.pruner_warmup is not None and self.pruner_warmup < 1:
            raise ConfigError(f"pruner_warmup must be >= 1 epoch, got {self.pruner_warmup}")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.grid_points < 2:
            raise ConfigError(f"grid_points must be >= 2, got {self.grid_points}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.name is not None and not self.name.strip():
            raise ConfigError(f"study name must not be empty, got {self.name!r}")
        if self.objective is None:  # an objective's space is its own parameters, not settings of [train]
            _check_space_fits(self.space, self.train)

    def _check_objective(self) -> None:
        """What a study of the user's objective cannot do: an objective trains itself, and suggests its own
        parameters, which a grid and coarse-to-fine need declared."""
        assert self.objective is not None and self.space is not None  # set by __post_init__
        if not is_entry_point(self.objective):
            raise ConfigError(f"objective must be an entry point (path/to/file.py:fn or package.module:fn) or a "
                              f"callable, got {self.objective!r}")
        if self.strategy in _DECLARED_SPACE_STRATEGIES and not self.space.params:
            raise ConfigError(f"strategy {self.strategy} with objective {self.objective!r} needs the objective's "
                              f"parameters declared: a spec's [space] (--spec FILE), e.g. n_layers = {{low = 1, "
                              f"high = 3}}")
        if self.lr_find:
            raise ConfigError(f"lr_find runs hpsearch's training loop; objective {self.objective!r} trains itself")

    @property
    def study_name(self) -> str:
        """The given name, else ``<dataset>-<strategy>`` (an objective's module for the dataset) so that different
        searches do not collide."""
        if self.name:
            return self.name
        if self.objective is not None:
            where, _, attr = self.objective.rpartition(":")
            module = Path(where).stem if where.endswith(".py") else where.rpartition(".")[2]
            return f"{attr.rpartition('.')[2] if module == '__main__' else module}-{self.strategy}"
        dataset = self.train.dataset
        if dataset.startswith("npz:"):
            dataset = Path(dataset[4:]).stem
        elif is_entry_point(dataset):  # mytask.py:load -> mytask, pkg.tasks:load -> tasks
            where = dataset.rpartition(":")[0]
            dataset = Path(where).stem if where.endswith(".py") else where.rpartition(".")[2]
        else:  # synthetic:n=100 -> synthetic
            dataset = dataset.partition(":")[0]
        return f"{dataset}-{self.strategy}"

    @property
    def total_trials(self) -> int:
        """The number of finished trials the study should reach; a grid ends when it is done."""
        if self.strategy == "grid":
            size = math.prod(len(values) for values in self.space.grid(self.grid_points).values())
            return min(size, self.n_trials) if self.n_trials is not None else size
        if self.strategy == "coarse-to-fine":
            return self.stage_plan.total_trials
        return self.n_trials if self.n_trials is not None else DEFAULT_TRIALS

    @property
    def stage_plan(self) -> CoarseToFine:
        """The coarse-to-fine plan its stages run: ``n_trials``, when given, is the total over all of them."""
        return self.coarse_to_fine.sized(self.n_trials) if self.n_trials is not None else self.coarse_to_fine

    def replace(self, **changes: Any) -> StudySpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The spec as the tables of a spec file (what is stored with the study)."""
        study = {key: getattr(self, key) for key in _STUDY_KEYS if getattr(self, key) is not None}
        study["name"] = self.study_name
        tables = {"study": study, "space": self.space.to_dict(), "train": self.train.to_dict()}
        if self.strategy == "coarse-to-fine":
            tables["coarse_to_fine"] = dataclasses.asdict(self.coarse_to_fine)
        return tables

    @classmethod
    def from_sources(cls, spec_file: str | Path | Mapping[str, Any] | None = None, *,
                     train: Mapping[str, Any] | None = None, lr_range: tuple[float, float] | None = None,
                     wd_range: tuple[float, float] | None = None, **study: Any) -> StudySpec:
        """A spec from a TOML spec file (or its tables, such as a stored study's) with flags over it, as ``hpsearch
        run`` builds it: ``study`` holds [study] keys (name, strategy, n_trials, …; a metric given without a
        direction takes its own, not the file's), ``train`` [train] keys (model_args merged key by key; ``seed``
        goes to both), None meaning not given; a range changes that one
        parameter of the file's space, or of the default one, and the rest is still searched."""
        tables = load_spec_file(spec_file) if isinstance(spec_file, str | Path) else dict(spec_file or {})
        _check_tables(tables, str(spec_file) if isinstance(spec_file, str | Path) else "flags")
        given = {key: value for key, value in study.items() if value is not None}
        objective = given.get("objective", tables.get("study", {}).get("objective"))
        if objective is not None and train:
            key = next(iter(train))
            flag = "--" + (key.removesuffix("s") if key in ARG_TABLES else key).replace("_", "-")  # --model-arg
            raise ConfigError(f"{flag} sets hpsearch's training loop; objective {objective!r} trains itself (its own "
                              f"settings are its code's)")
        seed = {"seed": given["seed"]} if "seed" in given else {}
        train_table = merge_train_tables(tables.get("train", {}), {**(train or {}), **seed})
        default_space = {} if objective is not None else DEFAULT_SPACE.to_dict()  # an objective's own, unless declared
        space_table = dict(tables["space"]) if "space" in tables else default_space
        for name, bounds in (("lr", lr_range), ("weight_decay", wd_range)):
            if bounds is not None:
                space_table[name] = {"low": bounds[0], "high": bounds[1], "log": True}
        base = dict(tables.get("study", {}))
        if "metric" in given and "direction" not in given:
            base.pop("direction", None)  # the file's direction was its metric's
        return cls.from_mapping({**tables, "study": {**base, **given}, "train": train_table,
                                 **({"space": space_table} if space_table else {})},
                                source=str(spec_file) if isinstance(spec_file, str | Path) else "flags")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "spec") -> StudySpec:
        """From the tables of a spec file; any unknown table or key is an error naming it. ``[model_args]``
        holds the model factory's arguments (the same as ``model_args`` in ``[train]``), ``[optimizer_args]`` the
        optimizer factory's."""
        _check_tables(values, source)
        study = dict(values.get("study", {}))
        bad = sorted(set(study) - set(_STUDY_KEYS))
        if bad:
            raise ConfigError(f"unknown key {bad[0]!r} in [study] of {source} (known: {', '.join(_STUDY_KEYS)})")
        own = study.get("objective") is not None
        if values.get("space") or (not own and "space" in values):
            space: SearchSpace | None = SearchSpace.from_mapping(values["space"], own=own)
        else:
            space = None  # the default space; for an objective, none declared
        train_table = dict(values.get("train", {}))
        for table in ARG_TABLES:  # a table of its own beside [train]'s: key by key, [train]'s winning
            if table in values and isinstance(train_table.get(table, {}), Mapping):
                train_table[table] = {**values[table], **train_table.get(table, {})}
        train = TrainConfig.from_mapping(train_table, source=f"[train] of {source}")
        stages_table = dict(values.get("coarse_to_fine", {}))
        if study.get("strategy") == "coarse-to-fine" and "pruner" in study and "fine_pruner" not in stages_table:
            stages_table["fine_pruner"] = study["pruner"]  # a pruner asked for is the fine stages'
        stages = CoarseToFine.from_mapping(stages_table)
        return cls(space=space, train=train, coarse_to_fine=stages, **_typed_study_fields(study))


_TABLES = ("study", "space", "train", *ARG_TABLES, "coarse_to_fine")


def _check_tables(values: Mapping[str, Any], source: str) -> None:
    """Every table of a spec is a known one, and a table (``study = 5`` is not)."""
    unknown = sorted(set(values) - set(_TABLES))
    if unknown:
        raise ConfigError(f"unknown table [{unknown[0]}] in {source} (known: {', '.join(_TABLES)})")
    for name in _TABLES:
        if name in values and not isinstance(values[name], Mapping):
            raise ConfigError(f"[{name}] of {source} must be a table of NAME = VALUE, got {values[name]!r}")


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
    types = {"name": str, "strategy": str, "metric": str, "direction": str, "pruner": str, "pruner_warmup": int,
             "n_trials": int, "timeout": float, "seed": int, "grid_points": int, "lr_find": bool, "objective": str}
    typed = {}
    for key, value in study.items():
        wanted = types[key]
        of_type = isinstance(value, wanted) or (wanted is float and isinstance(value, int))
        if value is not None and (not of_type or (isinstance(value, bool) and wanted is not bool)):
            raise ConfigError(f"{key} must be {wanted.__name__}, got {value!r}")
        typed[key] = float(value) if wanted is float and value is not None else value
    return typed


def _check_metric(metric: str, direction: str | None, objective: bool = False) -> None:
    """A metric is named; with hpsearch's loop the user's comes with a direction and a built-in one keeps its own,
    while an ``objective``'s value may be called anything and goes either way."""
    if not isinstance(metric, str) or not metric.strip():
        if objective:
            raise ConfigError(f"metric must name the objective's value, got {metric!r}")
        raise ConfigError(f"metric must be val_loss, val_acc or a name your metrics function reports, got {metric!r}")
    if direction is not None:
        _one_of("direction", direction, DIRECTIONS)
    if objective:
        return
    if metric in METRICS and direction not in (None, METRICS[metric]):
        raise ConfigError(f"direction must be {METRICS[metric]} for metric {metric}, got {direction!r}")
    if metric not in METRICS and direction is None:
        raise ConfigError(f"direction must be given for metric {metric!r}, which is not built in (val_loss, "
                          f"val_acc): --direction maximize or minimize")


def _check_space_fits(space: SearchSpace, train: TrainConfig) -> None:
    """Refuse a space that can suggest a setting the training cannot take (a warmup range past 1, a choice of an
    unknown schedule, an optimizer without the momentum ``train`` fixes): every trial that drew it would fail, after
    the study was written. Each range's ends and every choice are tried, the optimizer's settings in every
    combination with it (which of them a trial has depends on its optimizer), any other setting alone."""
    together = [p for p in space.params if p.name == "optimizer" or p.name in OPTIMIZER_PARAMS]
    alone = [p for p in space.params if p not in together and split_arg(p.name) is None]
    trials = [{p.name: value} for p in alone for value in p.grid(2)]
    trials += [dict(zip([p.name for p in together], values, strict=True))
               for values in itertools.product(*(p.grid(2) for p in together))]
    for values in trials:
        optimizer = values.get("optimizer", train.optimizer)
        drawn = {name: value for name, value in values.items() if optimizer in OPTIMIZER_PARAMS.get(name, (optimizer,))}
        try:
            train.replace(**drawn)
        except ConfigError as exc:
            shown = ", ".join(f"{name}={value!r}" for name, value in drawn.items())
            raise ConfigError(f"space.{next(iter(drawn))}: a trial may draw {shown}, which [train] cannot take: "
                              f"{exc}") from None


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
