"""Create or resume a study on a storage and run it until it holds the spec's number of trials."""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from hpsearch._version import __version__
from hpsearch.engine.checks import FAIL, QUICK_CHECKS, run_checks
from hpsearch.engine.config import ENTRY_POINT_FIELDS
from hpsearch.engine.data import TaskData
from hpsearch.engine.devices import resolve_device
from hpsearch.engine.entry_points import in_process_only
from hpsearch.engine.lr_finder import LRFinderResult, lr_range_test
from hpsearch.engine.task import is_classification, load_checked, reported_metrics
from hpsearch.engine.training import check_batch_size
from hpsearch.errors import ConfigError
from hpsearch.search.batched_study import check_batchable, check_files_unbatched, optimize_batched, resolve_batch
from hpsearch.search.budget import finished_trials
from hpsearch.search.coarse_to_fine import (
    carried_trials,
    coarse_spec,
    fine_spec,
    first_trials,
    stage_name,
    with_lr_prior,
)
from hpsearch.search.objective import NO_FILES, TrialFiles
from hpsearch.search.pool import WorkerPool
from hpsearch.search.records import StudyRecord, is_carried, own_trials, read_record, write_record
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import describe_storage, open_storage
from hpsearch.search.summary import find_family
from hpsearch.search.trust import entry_point_trust
from hpsearch.search.user_objective import check_loop_options, load_objective, optimize_objective
from hpsearch.search.worker import optimize_to_budget

__all__ = ["PreflightError", "StudyMismatchError", "finished_trials", "run_study", "stored_tables"]

logger = logging.getLogger(__name__)

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]
# Spec fields that may change between runs of one study; any other difference is refused.
_MAY_CHANGE = {"study": ("name", "n_trials", "timeout", "pruner", "pruner_warmup", "seed"), "train": ("device",)}


class StudyMismatchError(ConfigError):
    """A spec differs from the one stored with the study of the same name."""


def run_study(
    spec: StudySpec,
    storage: str | BaseStorage | None = None,
    *,
    callbacks: Sequence[TrialCallback] = (),
    data: TaskData | None = None,
    files: TrialFiles = NO_FILES,
    pool: WorkerPool | None = None,
    batch: int | str | None = None,
    preflight: bool = False,
) -> optuna.Study:
    """Run ``spec`` on ``storage`` until its study holds ``spec.total_trials`` finished trials; return
    the (last) study run.

    Trials run in this process (``batch`` K at a time, or "auto"), or in ``pool``'s worker processes. Each is
    hpsearch's training loop on the spec's task, or with ``spec.objective`` the user's own Optuna objective.
    With ``files.checkpoint_dir`` each trial saves its state every epoch there, and a retried trial
    continues from it. Re-running the same spec resumes: finished trials count toward the total,
    interrupted ones are retried, and coarse-to-fine picks up at the stage where it stopped. Every
    check (spec, data, stored spec, checkpoints, and with ``preflight`` the quick checks of
    hpsearch.engine.checks) happens before anything is written.
    """
    storage = open_storage(storage) if storage is None or isinstance(storage, str) else storage
    if pool is not None:
        _check_for_workers(spec)
        trust = entry_point_trust(spec.train, spec.objective)
        pool = dataclasses.replace(pool, trust=tuple(sorted({*pool.trust, *trust})))
    if spec.objective is not None:
        check_loop_options(spec, batch=batch, files=files)
        load_objective(spec.objective)  # a missing or broken objective is one line, before anything is stored
        run = _Execution(storage, None, callbacks, files, pool, None)
    else:
        run = _loop_execution(spec, storage, callbacks, files, pool, batch, data, preflight)
    if spec.strategy == "coarse-to-fine":
        return _run_coarse_to_fine(spec, run)
    if spec.lr_find:
        lr_test = _lr_range_test(_stored_record(spec.study_name, storage), spec, run.loaded_data)
        return _run_one(with_lr_prior(spec, lr_test), run, lr_test)
    return _run_one(spec, run)


def _loop_execution(spec: StudySpec, storage: BaseStorage, callbacks: Sequence[TrialCallback], files: TrialFiles,
                    pool: WorkerPool | None, batch: int | str | None, data: TaskData | None, preflight: bool,
                    ) -> _Execution:
    """Where and how trials of hpsearch's loop run, once every check of the spec, data, batch, checkpoints and
    (with ``preflight``) the quick checks passed."""
    device = resolve_device(spec.train.device)
    if batch is not None:
        check_batchable(spec, 1)  # the space and model first: nothing is loaded or written for a refused batch
        check_files_unbatched(files)
    data = load_checked(spec.train, data)
    _check_batch_sizes(spec, data)
    _check_metric_reported(spec, data)
    if batch is not None and not (pool is not None and batch == "auto"):  # each worker sizes auto to its threads
        batch = resolve_batch(batch, device, spec, data)
    if pool is not None and batch is not None:
        pool, batch = dataclasses.replace(pool, batch=str(batch)), None
    files.prepare(spec.study_name)
    if preflight:
        _preflight(spec, data)
    return _Execution(storage, data, callbacks, files, pool, batch)


@dataclass(frozen=True)
class _Execution:
    """Where and how the trials of every stage run: storage, data (none for the user's objective), callbacks,
    checkpoints, workers."""

    storage: BaseStorage
    data: TaskData | None
    callbacks: Sequence[TrialCallback]
    files: TrialFiles
    pool: WorkerPool | None
    batch: int | None

    @property
    def loaded_data(self) -> TaskData:
        """The data of hpsearch's loop (an objective's study, which has none, never asks)."""
        assert self.data is not None
        return self.data

    def optimize(self, study: optuna.Study, spec: StudySpec) -> None:
        if self.pool is not None:  # its workers batch when asked (WorkerPool.batch)
            self.pool.run(study, self.callbacks, timeout=spec.timeout)
        elif spec.objective is not None:
            optimize_objective(study, spec, callbacks=self.callbacks, timeout=spec.timeout)
        elif self.batch is not None:
            optimize_batched(study, spec, self.loaded_data, self.batch, callbacks=self.callbacks,
                             timeout=spec.timeout)
        else:
            optimize_to_budget(study, spec, self.loaded_data, callbacks=self.callbacks, timeout=spec.timeout,
                               files=self.files)


def _run_coarse_to_fine(spec: StudySpec, run: _Execution) -> optuna.Study:
    """Stage 0, the LR range test (not for the user's objective, which trains itself); stage 1, coarse; stages 2..,
    fine: one study each (NAME/k-…)."""
    deadline = time.monotonic() + spec.timeout if spec.timeout is not None else None
    coarse = _stored_record(stage_name(spec.study_name, 1), run.storage)  # read once: the plan and the LR test
    spec, more_in_last_stage = _planned(spec, coarse, run.storage)
    lr_test = _lr_range_test(coarse, spec, run.loaded_data) if spec.objective is None else None

    done: list[tuple[str, list[FrozenTrial]]] = []  # each stage's own trials, for the stages after it

    def run_stage(stage: int, stage_spec: StudySpec) -> optuna.Study:
        if deadline is not None:
            stage_spec = stage_spec.replace(timeout=max(deadline - time.monotonic(), 1e-3))
        study = _run_one(stage_spec, run, lr_test if stage == 1 else None,
                         parent={"name": spec.study_name, "stage": stage, "spec": spec.to_dict()},
                         carried=carried_trials(done, stage_spec))
        done.append((study.study_name, own_trials(study)))
        return study

    stage_spec = coarse_spec(spec, lr_test)
    study = run_stage(1, stage_spec)
    for stage in range(2, spec.stage_plan.stages + 1):
        if len(finished_trials(study)) < stage_spec.total_trials:
            break  # the stage before ran out of time: narrowing needs all of it
        stage_spec = fine_spec(spec, stage, stage_spec, study.get_trials(), study.direction)
        if stage == spec.stage_plan.stages:
            stage_spec = stage_spec.replace(n_trials=stage_spec.total_trials + more_in_last_stage)
        study = run_stage(stage, stage_spec)
    return study


def stored_tables(name: str | None, storage: BaseStorage | None, *, pruner_given: bool = False,
                  ) -> dict[str, Any]:
    """The spec tables ``hpsearch run --study NAME`` without a spec file starts from, so that it goes on with the
    stored study (or coarse-to-fine family) as it was asked; empty for a new study.

    A family's own spec is stored with each stage; its ``n_trials`` grows by the trials a larger total added to
    the last stage (the stages' own budgets sum to it). The timeout is left out: it limited the run that gave it,
    not the study. A pruner given is a coarse-to-fine family's fine pruner, as on a first run: the stored fine
    pruner gives way to it."""
    family = find_family(name, storage) if name is not None and storage is not None else []
    if not family:
        return {}
    record = read_record(family[0])
    if record.coarse_to_fine is not None and family[0].study_name != name:
        tables = {table: dict(values) for table, values in record.coarse_to_fine["spec"].items()}
        stages = sum(read_record(study).table("study").get("n_trials", 0) for study in family)
        if stages > StudySpec.from_mapping(tables, source=f"study {name!r}").total_trials:
            tables["study"]["n_trials"] = stages
    else:
        tables = {table: dict(values) for table, values in (record.spec or {}).items()}
    tables.get("study", {}).pop("timeout", None)
    if pruner_given:
        tables.get("coarse_to_fine", {}).pop("fine_pruner", None)
    return tables


def _stored_record(study_name: str, storage: BaseStorage) -> StudyRecord | None:
    """The hpsearch record stored with ``study_name``; None when no such study exists yet."""
    if study_name not in optuna.get_all_study_names(storage):
        return None
    return read_record(optuna.load_study(study_name=study_name, storage=storage))


def _planned(spec: StudySpec, coarse: StudyRecord | None, storage: BaseStorage) -> tuple[StudySpec, int]:
    """The spec whose plan the stages follow, and how many trials more than planned its last stage runs.

    A run whose stages were planned from a stored total (``coarse``, its first stage's record) keeps that plan:
    later stages narrow around the earlier ones as they were, so re-sizing a stage already run would leave the
    stored fine stages' ranges stale. A larger ``n_trials`` goes to the last stage, so that a finished search goes
    on where it narrowed to, as more trials for one Optuna study would; a smaller one, or another plan, is refused
    before any trial."""
    parent = coarse.coarse_to_fine if coarse is not None else None
    if parent is None:
        return spec, 0  # no stage yet, or not one hpsearch made: _create_or_load refuses it
    stored = StudySpec.from_mapping(parent["spec"], source=f"study {stage_name(spec.study_name, 1)!r}")
    plan = stored.stage_plan
    if plan == spec.stage_plan:
        return spec, 0
    if stored.coarse_to_fine == spec.coarse_to_fine and spec.total_trials > plan.total_trials:
        logger.info("coarse-to-fine study %s was planned for %d trials: the %d more go to its last stage",
                    spec.study_name, plan.total_trials, spec.total_trials - plan.total_trials)
        return spec.replace(n_trials=stored.n_trials), spec.total_trials - plan.total_trials
    raise StudyMismatchError(
        f"coarse-to-fine study {spec.study_name!r} in {describe_storage(storage)} was planned for n_trials="
        f"{plan.total_trials} ({plan.coarse_trials} coarse, {plan.fine_trials} a fine stage), not "
        f"{spec.stage_plan.total_trials}; a larger n_trials adds trials to its last stage, or choose a new --study "
        f"name (nothing was changed)")


def _run_one(spec: StudySpec, run: _Execution, lr_test: LRFinderResult | None = None,
             parent: dict[str, Any] | None = None, carried: Sequence[FrozenTrial] = ()) -> optuna.Study:
    """Create or resume one study and run it to its total; a new study with an LR test starts at its
    suggestion, and a coarse-to-fine stage holds the ``carried`` trials of the stages before it."""
    study, created = _create_or_load(spec, run.storage, lr_test, parent)
    if carried and not any(is_carried(t) for t in study.get_trials(deepcopy=False)):
        study.add_trials(carried)  # one storage write each; a stage resumed before they were added gets them now
    if created and lr_test is not None and spec.strategy != "grid":
        for params in first_trials(lr_test, spec.space):
            study.enqueue_trial(params)
    finished = len(finished_trials(study))
    if finished >= spec.total_trials:
        logger.info("study %s already has %d finished trials", study.study_name, finished)
        return study
    run.optimize(study, spec)
    return study


def _lr_range_test(stored: StudyRecord | None, spec: StudySpec, data: TaskData) -> LRFinderResult:
    """The LR range test in the ``stored`` record of the study that runs it, or a new one when that study
    does not exist yet (or holds none)."""
    if stored is not None and stored.lr_range_test is not None:
        return LRFinderResult.from_dict(stored.lr_range_test)
    logger.info("running the LR range test for %s", spec.study_name)
    return lr_range_test(spec.train, data)


def _create_or_load(spec: StudySpec, storage: BaseStorage, lr_test: LRFinderResult | None,
                    parent: dict[str, Any] | None) -> tuple[optuna.Study, bool]:
    """The study of ``spec`` (checked against the stored spec), and whether it was created now."""
    name = spec.study_name
    if name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        _check_same_spec(study, spec, storage)
        _store_changes(study, spec)
        return study, False
    study = optuna.create_study(study_name=name, storage=storage, direction=spec.direction)
    with warnings.catch_warnings():  # experimental since Optuna 3.2, and what optuna-dashboard labels values by
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.set_metric_names([spec.metric])
    versions = {"hpsearch": __version__, "torch": torch.__version__, "optuna": optuna.__version__}
    write_record(study, StudyRecord(spec=spec.to_dict(), versions=versions,
                                    lr_range_test=lr_test.to_dict() if lr_test is not None else None,
                                    coarse_to_fine=parent))
    return study, True


def _check_same_spec(study: optuna.Study, spec: StudySpec, storage: BaseStorage) -> None:
    """Refuse to add trials of another search to a stored study; the message says what differs."""
    where = f"study {study.study_name!r} in {describe_storage(storage)}"
    stored = read_record(study).spec
    if stored is None:
        raise StudyMismatchError(f"{where} was not created by hpsearch; choose another --study name")
    stored, current = _with_defaults(stored), spec.to_dict()
    for table in ("study", "space", "train"):
        old, new = _comparable(stored.get(table, {}), table), _comparable(current[table], table)
        if old != new:
            key = next(k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
            raise StudyMismatchError(
                f"{where} was created with {table}.{key}={old.get(key)!r}, not {new.get(key)!r}; "
                f"choose a new --study name (nothing was changed)")


def _with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored spec with the keys it lacks at their defaults: a setting added since the study was created (a
    direction, optimizer_args) had its default in that study's trials."""
    try:
        return StudySpec.from_mapping(stored, source="the stored spec").to_dict()
    except ConfigError:  # not one this version reads: compared as it is
        return stored


def _store_changes(study: optuna.Study, spec: StudySpec) -> None:
    """Keep what may change between runs (the budget, timeout, pruner, seed, device) as this run says in the
    stored spec, which workers read: a larger ``--n-trials`` with ``--jobs`` is then their budget too."""
    record = read_record(study)
    current = spec.to_dict()
    stored = {table: dict(values) for table, values in (record.spec or {}).items()}
    for table, keys in _MAY_CHANGE.items():
        for key in keys:
            if key in current[table] and key != "name":
                stored.setdefault(table, {})[key] = current[table][key]
            elif key != "name":
                stored.get(table, {}).pop(key, None)
    if stored != record.spec:
        write_record(study, record.with_spec(stored))


def _comparable(table: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in table.items() if key not in _MAY_CHANGE.get(name, ())}


class PreflightError(ConfigError):
    """A quick pre-flight check failed: the setup is broken before any trial could tell."""


def _preflight(spec: StudySpec, data: TaskData) -> None:
    """The quick checks on the study's fixed training settings; the first failure stops the run."""
    for result in run_checks(spec.train, data, QUICK_CHECKS):
        if result.outcome == FAIL:
            raise PreflightError(f"pre-flight check {result.name!r} failed: {result.measured}, expected "
                                 f"{result.expected} ({result.meaning}); hpsearch check says more, --no-check skips")


def _check_metric_reported(spec: StudySpec, data: TaskData) -> None:
    """The study's metric must be one every epoch reports: val_acc needs a classification, the user's a metrics
    function that returns it (called once here, on a fresh model), so that no trial runs for a missing value."""
    if spec.metric == "val_acc" and not is_classification(spec.train, data):
        raise ConfigError(f"metric val_acc needs a classification task; loss {spec.train.loss!r} on dataset "
                          f"{data.name!r} is a regression: use --metric val_loss")
    if spec.metric == "val_loss":
        return
    reported = reported_metrics(spec.train, data)
    if spec.metric not in reported:
        source = (f"metrics {spec.train.metrics!r} returns" if spec.train.metrics else
                  "without --metrics file.py:fn, each epoch reports")
        raise ConfigError(f"metric {spec.metric!r} is not reported: {source} {', '.join(reported)}")


def _check_batch_sizes(spec: StudySpec, data: TaskData) -> None:
    """A batch larger than the training set would fail every trial: refuse it before the study starts."""
    sizes = [spec.train.batch_size]
    for param in spec.space.params:
        if param.name == "batch_size":
            sizes = list(param.choices) if param.choices is not None else [int(param.high or 0)]
    check_batch_size(max(sizes), data)


def _check_for_workers(spec: StudySpec) -> None:
    """Workers are other processes: they can import entry points, not callables handed over from Python."""
    fields = {field: getattr(spec.train, field) for field in ENTRY_POINT_FIELDS}
    for field, value in {**fields, "objective": spec.objective}.items():
        if value is not None and in_process_only(value):
            raise ConfigError(f"{field} {value!r} is a callable of this process, which worker processes cannot "
                              f"import: give it as an entry point (package.module:attr or path/to/file.py:attr)")
