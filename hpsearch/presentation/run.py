"""The library's study run: ``hpsearch.run_study`` runs the search and leaves what a person reads after it.

hpsearch.search.runner runs the trials; this adds optuna-dashboard's note on every stage (strategy, LR
range test, counts, diagnosis, best config) and on every trial as it finishes, and logs the diagnosis summary,
so that a library caller gets what ``hpsearch run`` shows. A study in memory gets no note: no dashboard can open it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage, InMemoryStorage
from optuna.trial import FrozenTrial

from hpsearch.presentation.dashboard import write_notes, write_trial_note
from hpsearch.presentation.notes import study_diagnosis
from hpsearch.search import runner
from hpsearch.search.budget import finished_in_family
from hpsearch.search.pool import WorkerPool
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage
from hpsearch.search.summary import best_with_study, find_family, load_family

__all__ = ["CURVE_WRITER", "StudyResult", "run_study", "with_curve_writer"]

logger = logging.getLogger(__name__)

# The learning-curve artifact's writer, by name: importing the figures (matplotlib) waits for a trial that draws.
CURVE_WRITER = "hpsearch.presentation.figures:write_trial_curve"


@dataclass(frozen=True)
class StudyResult:
    """What a study run leaves, as ``hpsearch run`` prints it: the family (one study, or a coarse-to-fine family's
    stages in order), its best trials with their studies, the diagnosis and advice lines, and how many finished
    trials the family held before this run (as many as the spec asks: nothing ran).

    It reads as its last study too (``result.trials``, ``result.user_attrs``, …), as run_study returned before."""

    study: optuna.Study
    spec: StudySpec
    family: list[optuna.Study]
    best: list[tuple[optuna.Study, FrozenTrial]]
    diagnosis: list[str]
    held_before: int

    @property
    def held_already(self) -> bool:
        """The family held its trials before this run, which then ran none."""
        return self.held_before >= self.spec.total_trials

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "study" not in self.__dict__:  # copy and pickle ask before the fields exist
            raise AttributeError(name)
        return getattr(self.study, name)


TOP = 5  # best trials a result keeps, as the run's table shows them


def run_study(spec: StudySpec, storage: str | BaseStorage | None = None, **options: Any) -> StudyResult:
    """Run ``spec`` as hpsearch.search.runner.run_study does (same options), then write the dashboard notes and
    log the diagnosis summary; returns what the run leaves (StudyResult)."""
    storage = open_storage(storage) if storage is None or isinstance(storage, str) else storage
    for name in ("files", "pool"):  # the learning-curve artifacts are drawn here, in the presentation layer
        if options.get(name) is not None:
            options[name] = with_curve_writer(options[name])
    if not isinstance(storage, InMemoryStorage):  # each trial's note as it finishes, for a dashboard watching
        options["callbacks"] = [functools.partial(write_trial_note, metric=spec.metric), *options.get("callbacks", ())]
    held_before = finished_in_family(find_family(spec.study_name, storage))
    study = runner.run_study(spec, storage, **options)
    if not isinstance(storage, InMemoryStorage):
        write_notes(spec.study_name, storage)
    family = load_family(spec.study_name, storage)
    diagnosis = study_diagnosis(family)
    for line in diagnosis:
        logger.info("%s: %s", spec.study_name, line)
    return StudyResult(study=study, spec=spec, family=family, best=best_with_study(family, TOP), diagnosis=diagnosis,
                       held_before=held_before)


def with_curve_writer(holder: Any) -> Any:
    """``holder`` (TrialFiles, or a WorkerPool with its files) with this layer's learning-curve writer when it
    stores artifacts and names no writer of its own."""
    files = holder.files if isinstance(holder, WorkerPool) else holder
    if files.artifact_dir is None or files.curve_writer is not None:
        return holder
    files = dataclasses.replace(files, curve_writer=CURVE_WRITER)
    return dataclasses.replace(holder, files=files) if isinstance(holder, WorkerPool) else files
