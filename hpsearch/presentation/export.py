"""Best trial(s) of a study → a JSON file that ``hpsearch train --config`` runs again: the complete TrainConfig of
hpsearch's loop, or for a study of the user's Optuna objective its entry point and the params to fix."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from hpsearch._version import __version__
from hpsearch.errors import HPSearchError
from hpsearch.search.records import read_record, read_trial
from hpsearch.search.summary import best_with_study, load_family
from hpsearch.search.user_objective import run_fixed

__all__ = ["SCHEMA_VERSION", "ObjectiveExport", "export_best", "objective_export", "rerun_objective", "write_export"]

SCHEMA_VERSION = 1


def export_best(study_name: str, storage: BaseStorage, top: int = 1) -> dict[str, Any]:
    """The best complete trial as a self-contained record; with ``top`` > 1, the runners-up under ``top``.

    ``study_name`` may name a coarse-to-fine run: the best over all its stages is exported. The
    record's ``config`` is the complete TrainConfig, so the file alone reproduces the run; a study of the user's
    objective has none, and its ``objective`` (the entry point, as the study stored it) is what runs again.
    """
    if top < 1:
        raise HPSearchError(f"top must be >= 1, got {top}")
    studies = load_family(study_name, storage)
    best = best_with_study(studies, top)
    if not best:
        raise HPSearchError(f"study {study_name!r} has no completed trial to export yet")
    first_study = best[0][0]
    stored = read_record(first_study)
    metric = stored.table("study").get("metric", "value")
    objective = stored.table("study").get("objective")
    record = {
        "schema_version": SCHEMA_VERSION,
        "study": first_study.study_name,
        "direction": first_study.direction.name.lower(),
        "metric": metric,
        **({"objective": objective} if objective is not None else {}),
        **_trial_record(best[0][1], objective is None),
        "versions": {"hpsearch": __version__, "torch": torch.__version__, "optuna": optuna.__version__,
                     "python": platform.python_version()},
        "study_versions": stored.versions,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if len(studies) > 1:
        record["stages"] = [study.study_name for study in studies]
    if top > 1:
        record["top"] = [{"study": study.study_name, **_trial_record(trial, objective is None)}
                         for study, trial in best]
    return record


def write_export(record: dict[str, Any], path: str | Path) -> None:
    """Write atomically, so an existing file is either kept whole or replaced whole."""
    path = Path(path)
    if not path.parent.is_dir():
        raise HPSearchError(f"folder does not exist (--out {path})")
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, path)


def _trial_record(trial: FrozenTrial, loop: bool = True) -> dict[str, Any]:
    """A trial as exported; ``loop``: one of hpsearch's loop, with its config, dataset and seed."""
    stored = read_trial(trial)
    if not loop:
        return {"trial": trial.number, "value": trial.value, "params": trial.params, "seconds": stored.seconds}
    config = stored.config or {}
    return {"trial": trial.number, "value": trial.value, "params": trial.params, "config": config,
            "dataset": config.get("dataset"), "seed": stored.seed, "seconds": stored.seconds}


@dataclass(frozen=True)
class ObjectiveExport:
    """What an export of a study of the user's objective runs again: the objective, the params to fix, and the
    value they scored in the study."""

    objective: str
    params: dict[str, Any]
    value: float | None
    metric: str


def objective_export(path: str | Path) -> ObjectiveExport | None:
    """The objective run an export file holds; None for any other settings file (a TrainConfig, or an export of
    hpsearch's loop), which ``train --config`` reads as it always has."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None  # not a JSON export: TrainConfig.from_sources reads it, or says what is wrong with it
    if not isinstance(values, dict) or not isinstance(values.get("objective"), str):
        return None
    params = values.get("params")
    if not isinstance(params, dict):
        raise HPSearchError(f"export {path} names objective {values['objective']!r} but holds no params table")
    return ObjectiveExport(values["objective"], params, values.get("value"), values.get("metric", "value"))


def rerun_objective(export: ObjectiveExport) -> float:
    """The exported objective's value with the exported params fixed (Optuna's FixedTrial)."""
    return run_fixed(export.objective, export.params)
