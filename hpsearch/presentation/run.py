"""The library's study run: ``hpsearch.run_study`` runs the search and leaves what a person reads after it.

hpsearch.search.runner runs the trials; this adds optuna-dashboard's note on every stage (strategy, LR
range test, counts, diagnosis, best config) and on every trial as it finishes, and logs the diagnosis summary,
so that a library caller gets what ``hpsearch run`` shows. A study in memory gets no note: no dashboard can open it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import optuna
from optuna.storages import BaseStorage, InMemoryStorage

from hpsearch.presentation.dashboard import write_notes, write_trial_note
from hpsearch.presentation.notes import study_diagnosis
from hpsearch.search import runner
from hpsearch.search.pool import WorkerPool
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import open_storage
from hpsearch.search.summary import load_family

__all__ = ["CURVE_WRITER", "run_study", "with_curve_writer"]

logger = logging.getLogger(__name__)

# The learning-curve artifact's writer, by name: importing the figures (matplotlib) waits for a trial that draws.
CURVE_WRITER = "hpsearch.presentation.figures:write_trial_curve"


def run_study(spec: StudySpec, storage: str | BaseStorage | None = None, **options: Any) -> optuna.Study:
    """Run ``spec`` as hpsearch.search.runner.run_study does (same options), then write the dashboard notes
    and log the diagnosis summary; returns the (last) study run."""
    storage = open_storage(storage) if storage is None or isinstance(storage, str) else storage
    for name in ("files", "pool"):  # the learning-curve artifacts are drawn here, in the presentation layer
        if options.get(name) is not None:
            options[name] = with_curve_writer(options[name])
    if not isinstance(storage, InMemoryStorage):  # each trial's note as it finishes, for a dashboard watching
        options["callbacks"] = [functools.partial(write_trial_note, metric=spec.metric), *options.get("callbacks", ())]
    study = runner.run_study(spec, storage, **options)
    if not isinstance(storage, InMemoryStorage):
        write_notes(spec.study_name, storage)
    for line in study_diagnosis(load_family(spec.study_name, storage)):
        logger.info("%s: %s", spec.study_name, line)
    return study


def with_curve_writer(holder: Any) -> Any:
    """``holder`` (TrialFiles, or a WorkerPool with its files) with this layer's learning-curve writer when it
    stores artifacts and names no writer of its own."""
    files = holder.files if isinstance(holder, WorkerPool) else holder
    if files.artifact_dir is None or files.curve_writer is not None:
        return holder
    files = dataclasses.replace(files, curve_writer=CURVE_WRITER)
    return dataclasses.replace(holder, files=files) if isinstance(holder, WorkerPool) else files
