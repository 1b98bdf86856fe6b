"""Read-only views of a storage: its studies, and a study's best trials."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpsearch.errors import HPSearchError

__all__ = ["StudyRow", "counts_by_state", "list_studies", "load_existing_study", "top_trials", "trial_row"]


@dataclass(frozen=True)
class StudyRow:
    """One line of ``hpsearch studies``."""

    name: str
    strategy: str
    metric: str
    direction: str
    counts: dict[str, int]
    best_value: float | None


def load_existing_study(name: str, storage: BaseStorage) -> optuna.Study:
    """Load a study that must exist; an unknown name is a user error that lists the known ones."""
    names = optuna.get_all_study_names(storage)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise HPSearchError(f"no study named {name!r} in this storage (studies: {known})")
    return optuna.load_study(study_name=name, storage=storage)


def list_studies(storage: BaseStorage) -> list[StudyRow]:
    """Every study in ``storage`` with its strategy, direction, trial counts and best value."""
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=True):
        spec = summary.user_attrs.get("hpsearch", {}).get("spec", {}).get("study", {})
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
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] += 1
    return counts


def top_trials(study: optuna.Study, k: int = 5) -> list[FrozenTrial]:
    """The ``k`` best complete trials, best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    reverse = study.direction == StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: t.value if t.value is not None else float("nan"), reverse=reverse)[:k]


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """The facts about a trial that tables and exports show."""
    return {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "params": trial.params, "epochs": len(trial.intermediate_values),
            "reason": trial.user_attrs.get("reason")}
