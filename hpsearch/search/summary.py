"""Read-only views of a storage: its studies, and a study's best trials."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpsearch.errors import HPSearchError
from hpsearch.search.records import RECORD_ATTR, own_trials, read_record, read_trial
from hpsearch.strict_json import finite_or_none

__all__ = ["StudyRow", "best_with_study", "counts_by_state", "find_family", "list_studies", "load_existing_study",
           "load_family", "stored_study_table", "study_row_json", "trial_json", "trial_row"]


@dataclass(frozen=True)
class StudyRow:
    """One line of ``hpsearch studies``."""

    name: str
    strategy: str
    metric: str
    direction: str
    counts: dict[str, int]
    best_value: float | None


def stored_study_table(user_attrs: dict[str, Any]) -> dict[str, Any]:
    """The ``[study]`` table of the spec hpsearch stored with a study (empty for a foreign study)."""
    return read_record(user_attrs).table("study")


def load_existing_study(name: str, storage: BaseStorage) -> optuna.Study:
    """Load a study that must exist; an unknown name is a user error that lists the known ones."""
    return load_family(name, storage)[-1]


def load_family(name: str, storage: BaseStorage) -> list[optuna.Study]:
    """The study ``name``, or the stages ``name/1-coarse``, ``name/2-fine``, … of a coarse-to-fine run."""
    family = find_family(name, storage)
    if not family:
        known = ", ".join(sorted(optuna.get_all_study_names(storage))) or "none"
        raise HPSearchError(f"no study named {name!r} in this storage (studies: {known})")
    return family


def find_family(name: str, storage: BaseStorage) -> list[optuna.Study]:
    """What load_family loads, or an empty list when the storage holds no such study yet."""
    names = optuna.get_all_study_names(storage)
    members = [name] if name in names else sorted(n for n in names if n.startswith(name + "/"))
    return [optuna.load_study(study_name=member, storage=storage) for member in members]


def list_studies(storage: BaseStorage) -> list[StudyRow]:
    """Every study in ``storage`` with its strategy, direction, trial counts and best value."""
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=True):
        spec = stored_study_table(summary.user_attrs)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        counts = counts_by_state(study)
        best = summary.best_trial.value if summary.best_trial is not None else None
        rows.append(StudyRow(name=summary.study_name, strategy=spec.get("strategy", "?"),
                             metric=spec.get("metric", "?"), direction=summary.direction.name.lower(),
                             counts=counts, best_value=best))
    return rows


def counts_by_state(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state name (complete, pruned, fail, running, waiting)."""
    counts = {state.name.lower(): 0 for state in TrialState}
    for trial in own_trials(study):
        counts[trial.state.name.lower()] += 1
    return counts


def best_with_study(studies: optuna.Study | list[optuna.Study], k: int = 5,
                    ) -> list[tuple[optuna.Study, FrozenTrial]]:
    """The ``k`` best complete (study, trial) pairs over ``studies``, best first."""
    group = [studies] if isinstance(studies, optuna.Study) else studies
    pairs = [(study, trial) for study in group
             for trial in own_trials(study, states=(TrialState.COMPLETE,)) if trial.value is not None]
    reverse = group[0].direction == StudyDirection.MAXIMIZE
    return sorted(pairs, key=lambda pair: pair[1].value, reverse=reverse)[:k]  # type: ignore[arg-type,return-value]


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """The facts about a trial that tables and exports show."""
    return {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "params": trial.params, "epochs": len(trial.intermediate_values),
            "reason": read_trial(trial).reason}


def study_row_json(row: StudyRow) -> dict[str, Any]:
    """``hpsearch studies --json``: one study's row, strict JSON (a non-finite best is null)."""
    best = row.best_value if row.best_value is not None and math.isfinite(row.best_value) else None
    return {"name": row.name, "strategy": row.strategy, "metric": row.metric, "direction": row.direction,
            "counts": row.counts, "best_value": best}


def trial_json(trial: FrozenTrial, full: bool = False) -> dict[str, Any]:
    """``hpsearch show --json``: a trial's row and seconds; with ``full``, its stored record too (config,
    history, status, diagnosis, seed, worker, retry links), as ``show --trial`` prints it."""
    stored = read_trial(trial)
    values = {**trial_row(trial), "status": stored.status, "seconds": stored.seconds}
    if full:
        values["record"] = stored.to_dict()
        values["user_attrs"] = {key: value for key, value in trial.user_attrs.items() if key != RECORD_ATTR}
        values["intermediate_values"] = {str(epoch): value for epoch, value in trial.intermediate_values.items()}
        values["retry_of"] = trial.system_attrs.get("failed_trial")
    return finite_or_none(values)
