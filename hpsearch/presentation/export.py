"""Best trial(s) of a study → a JSON file that ``hpsearch train --config`` runs again."""

from __future__ import annotations

import json
import os
import platform
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

__all__ = ["SCHEMA_VERSION", "export_best", "write_export"]

SCHEMA_VERSION = 1


def export_best(study_name: str, storage: BaseStorage, top: int = 1) -> dict[str, Any]:
    """The best complete trial as a self-contained record; with ``top`` > 1, the runners-up under ``top``.

    ``study_name`` may name a coarse-to-fine run: the best over all its stages is exported. The
    record's ``config`` is the complete TrainConfig, so the file alone reproduces the run.
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
    record = {
        "schema_version": SCHEMA_VERSION,
        "study": first_study.study_name,
        "direction": first_study.direction.name.lower(),
        "metric": metric,
        **_trial_record(best[0][1]),
        "versions": {"hpsearch": __version__, "torch": torch.__version__, "optuna": optuna.__version__,
                     "python": platform.python_version()},
        "study_versions": stored.versions,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if len(studies) > 1:
        record["stages"] = [study.study_name for study in studies]
    if top > 1:
        record["top"] = [{"study": study.study_name, **_trial_record(trial)} for study, trial in best]
    return record


def write_export(record: dict[str, Any], path: str | Path) -> None:
    """Write atomically, so an existing file is either kept whole or replaced whole."""
    path = Path(path)
    if not path.parent.is_dir():
        raise HPSearchError(f"folder does not exist (--out {path})")
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, path)


def _trial_record(trial: FrozenTrial) -> dict[str, Any]:
    stored = read_trial(trial)
    config = stored.config or {}
    return {"trial": trial.number, "value": trial.value, "params": trial.params, "config": config,
            "dataset": config.get("dataset"), "seed": stored.seed, "seconds": stored.seconds}
