"""Create or resume a study on a storage and run it until it holds the spec's number of trials."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

import hpsearch
from hpsearch.data import Data, load_data
from hpsearch.devices import resolve_device
from hpsearch.errors import ConfigError
from hpsearch.search.objective import Objective
from hpsearch.search.pruners import make_pruner
from hpsearch.search.strategies import make_sampler
from hpsearch.spec import StudySpec
from hpsearch.storage import describe_storage, open_storage

__all__ = ["StudyMismatchError", "finished_trials", "run_study"]

logger = logging.getLogger(__name__)

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]
# Spec fields that may change between runs of one study; any other difference is refused.
_MAY_CHANGE = {"study": ("name", "n_trials", "timeout", "pruner", "seed"), "train": ("device",)}


class StudyMismatchError(ConfigError):
    """A spec differs from the one stored with the study of the same name."""


def run_study(
    spec: StudySpec,
    storage: str | BaseStorage | None = None,
    *,
    callbacks: Sequence[TrialCallback] = (),
    data: Data | None = None,
) -> optuna.Study:
    """Run ``spec`` on ``storage`` until the study has ``spec.total_trials`` finished trials.

    Re-running the same spec resumes: finished trials count toward the total, interrupted ones do
    not. Every check (spec, data, stored spec) happens before anything is written.
    """
    storage = open_storage(storage) if storage is None or isinstance(storage, str) else storage
    device = resolve_device(spec.train.device)
    if data is None:
        train = spec.train
        data = load_data(train.dataset, data_dir=train.data_dir, download=train.download, subset=train.subset,
                         val_fraction=train.val_fraction, device=device)
    _check_batch_sizes(spec, data)
    study = _create_or_load(spec, storage)
    finished = len(finished_trials(study))
    remaining = spec.total_trials - finished
    if remaining <= 0:
        logger.info("study %s already has %d finished trials", study.study_name, finished)
        return study
    # A resumed study gets a seed of its own, so that a random sampler does not repeat its first picks.
    study.sampler = make_sampler(spec.strategy, spec.space, seed=spec.seed + finished, grid_points=spec.grid_points)
    study.pruner = make_pruner(spec.pruner, epochs=spec.train.epochs)
    study.optimize(Objective(spec, data.to(device)), n_trials=remaining, timeout=spec.timeout,
                   callbacks=list(callbacks), catch=(RuntimeError,))
    return study


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that count toward the budget: complete, pruned, or failed by an error (not interrupted)."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and t.user_attrs.get("status") != "interrupted")]


def _create_or_load(spec: StudySpec, storage: BaseStorage) -> optuna.Study:
    name = spec.study_name
    if name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        _check_same_spec(study, spec, storage)
        return study
    study = optuna.create_study(study_name=name, storage=storage, direction=spec.direction)
    study.set_user_attr("hpsearch", {
        "spec": spec.to_dict(),
        "versions": {"hpsearch": hpsearch.__version__, "torch": torch.__version__, "optuna": optuna.__version__},
    })
    return study


def _check_same_spec(study: optuna.Study, spec: StudySpec, storage: BaseStorage) -> None:
    """Refuse to add trials of another search to a stored study; the message says what differs."""
    where = f"study {study.study_name!r} in {describe_storage(storage)}"
    stored = study.user_attrs.get("hpsearch", {}).get("spec")
    if stored is None:
        raise StudyMismatchError(f"{where} was not created by hpsearch; choose another --study name")
    current = spec.to_dict()
    for table in ("study", "space", "train"):
        old, new = _comparable(stored.get(table, {}), table), _comparable(current[table], table)
        if old != new:
            key = next(k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
            raise StudyMismatchError(
                f"{where} was created with {table}.{key}={old.get(key)!r}, not {new.get(key)!r}; "
                f"choose a new --study name (nothing was changed)")


def _comparable(table: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in table.items() if key not in _MAY_CHANGE.get(name, ())}


def _check_batch_sizes(spec: StudySpec, data: Data) -> None:
    """A batch larger than the training set would fail every trial: refuse it before the study starts."""
    sizes = [spec.train.batch_size]
    for param in spec.space.params:
        if param.name == "batch_size":
            sizes = list(param.choices) if param.choices is not None else [int(param.high or 0)]
    if max(sizes) > data.n_train:
        raise ConfigError(f"batch_size must be at most the {data.n_train} training samples of {data.name}, "
                          f"got {max(sizes)}")
