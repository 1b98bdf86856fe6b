"""One Optuna trial, whichever loop runs it: suggested params → TrainConfig and its record → per-epoch
reports to the pruner → the result recorded and told."""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial, TrialState

from hpsearch.engine.checkpoint import check_checkpoint_file
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import TaskData
from hpsearch.engine.diagnosis import diagnose
from hpsearch.engine.entry_points import resolve
from hpsearch.engine.training import EpochMetrics, TrainResult, train
from hpsearch.errors import CheckpointError
from hpsearch.search.budget import budget
from hpsearch.search.records import TrialRecord, read_trial, write_trial
from hpsearch.search.space import split_arg
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages.optuna_private import drop_idle_connections, requeue
from hpsearch.status import Status

__all__ = ["NO_FILES", "Objective", "TrialCallback", "TrialFiles", "apply_params", "ask_within_budget",
           "checkpoint_folder", "finish_trial", "give_up", "interrupted", "record_result", "report_epoch",
           "start_trial"]

logger = logging.getLogger(__name__)

CURVE_ARTIFACT = "learning_curve.png"
TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


@dataclass(frozen=True)
class TrialFiles:
    """Where trials write files: a checkpoint each epoch (``checkpoint_dir``), and on completion their
    learning-curve PNG and final checkpoint as Optuna artifacts for optuna-dashboard (``artifact_dir``).

    ``curve_writer`` draws the curve: an entry point (``module:attr``) of ``f(history, title, path)``, handed down
    by the layer that draws (hpsearch.presentation's run_study and the CLI name theirs), as a name so that the
    pool can hand it on to its worker processes; without one a trial stores its checkpoint alone.
    """

    checkpoint_dir: Path | None = None
    artifact_dir: Path | None = None
    curve_writer: str | None = None

    def prepare(self, study_name: str) -> None:
        """Before any trial: refuse a folder that is a file or a checkpoint hpsearch did not write, and
        create the artifact folder."""
        for flag, folder in (("--checkpoint-dir", self.checkpoint_dir), ("--artifact-dir", self.artifact_dir)):
            if folder is not None and folder.exists() and not folder.is_dir():
                raise CheckpointError(f"not a folder ({flag} {folder})")
        if self.checkpoint_dir is not None:
            own = checkpoint_folder(self.checkpoint_dir, study_name)  # and the stages' folders, own_1-coarse, …
            for path in sorted(own.glob("*.pt")) + sorted(own.parent.glob(f"{own.name}_*/*.pt")):
                check_checkpoint_file(path)
        if self.artifact_dir is not None:
            self.artifact_dir.mkdir(parents=True, exist_ok=True)


NO_FILES = TrialFiles()


class Objective:
    """Trains one trial's configuration on data loaded once per study, reporting each epoch to the trial.

    Used by the sequential loop (hpsearch.search.worker); the batched loop trains its members itself.
    Both start, report and end their trials with this module's start_trial, report_epoch and
    finish_trial, so a trial's record and its storage writes are the same whichever loop ran it.
    """

    def __init__(self, spec: StudySpec, data: TaskData, files: TrialFiles = NO_FILES) -> None:
        self.spec = spec
        self.data = data
        self.checkpoint_dir = files.checkpoint_dir
        self.artifacts = FileSystemArtifactStore(str(files.artifact_dir)) if files.artifact_dir else None
        self.draw_curve = resolve(files.curve_writer, "curve_writer") if files.curve_writer else None

    def start(self, trial: optuna.Trial) -> tuple[TrainConfig, TrialRecord]:
        return start_trial(trial, self.spec, self.checkpoint_dir)

    def train(self, trial: optuna.Trial, config: TrainConfig, record: TrialRecord) -> TrainResult:
        """Train ``config``; the trial's pruner may stop it after any epoch."""
        checkpoint = Path(record.checkpoint) if record.checkpoint else None
        return train(config, self.data, checkpoint=checkpoint,
                     reporter=lambda epoch, metrics: report_epoch(trial, self.spec.metric, epoch, metrics))

    def upload(self, trial: optuna.Trial, record: TrialRecord) -> None:
        """The learning curve and final checkpoint as artifacts: Optuna takes them only while the trial runs."""
        if self.artifacts is None:
            return
        if self.draw_curve is not None:
            with tempfile.TemporaryDirectory() as scratch:
                curve = Path(scratch) / CURVE_ARTIFACT
                self.draw_curve(record.history or [], f"{trial.study.study_name}, trial {trial.number}", curve)
                upload_artifact(artifact_store=self.artifacts, file_path=str(curve), study_or_trial=trial,
                                mimetype="image/png")
        if record.checkpoint is not None and Path(record.checkpoint).is_file():
            upload_artifact(artifact_store=self.artifacts, file_path=record.checkpoint, study_or_trial=trial,
                            mimetype="application/octet-stream")


def start_trial(trial: optuna.Trial, spec: StudySpec, checkpoint_dir: Path | None = None
                ) -> tuple[TrainConfig, TrialRecord]:
    """Suggest the trial's params and store what it is, in one write: ``config``, ``seed`` and
    ``checkpoint`` (a retry keeps those of the trial it retries, so it continues from its checkpoint)
    and ``worker``, the host:pid running it."""
    config = apply_params(spec.train, spec.space.suggest(trial, spec.train.optimizer))
    inherited = read_trial(trial)
    checkpoint = inherited.checkpoint
    if checkpoint is None and checkpoint_dir is not None:
        checkpoint = str(checkpoint_folder(checkpoint_dir, trial.study.study_name) / f"trial-{trial.number}.pt")
    known = inherited.config is not None
    record = TrialRecord(config=inherited.config if known else config.to_dict(),
                         seed=inherited.seed if known else config.seed,
                         worker=f"{socket.gethostname()}:{os.getpid()}", checkpoint=checkpoint)
    write_trial(trial, record)
    return config, record


def report_epoch(trial: optuna.Trial, metric: str, epoch: int, metrics: EpochMetrics) -> bool:
    """The one per-epoch report of every loop: the epoch's ``metric`` (when finite) to the trial, then
    whether its pruner stops it."""
    value = metrics.value(metric)
    if math.isfinite(value):
        trial.report(value, epoch)
    return trial.should_prune()


def finish_trial(study: optuna.Study, trial: optuna.Trial, record: TrialRecord, result: TrainResult, metric: str,
                 objective: Objective | None = None) -> FrozenTrial:
    """Store a finished run with its trial and tell it: COMPLETE with its value, or PRUNED (stopped,
    diverged, non-finite). A completed trial's artifacts go up first, while it still runs."""
    final = record_result(record, result, metric)
    write_trial(trial, final)
    if final.status == Status.COMPLETED:
        if objective is not None:
            objective.upload(trial, final)
        return study.tell(trial, result.value(metric))
    return study.tell(trial, state=TrialState.PRUNED)


def ask_within_budget(study: optuna.Study, total: int) -> tuple[optuna.Trial, int] | None:
    """The next trial and the places the budget has left beyond it; or None, the trial back in the queue, when
    the finished trials and the running ones started before it (lower numbers) already fill ``total``:
    two workers, or two slots of a batch, asked at once for the last place. Every loop asks through this."""
    trial = study.ask()
    try:
        state = budget(study, before=trial.number)
        room = total - state.finished - state.running - 1
        if room < 0:
            requeue(study, trial)
            return None
    except BaseException as exc:  # Ctrl-C or SIGTERM before the trial starts: it must not stay RUNNING
        give_up(study, trial, None, exc)
        raise
    return trial, room


def give_up(study: optuna.Study, trial: optuna.Trial, record: TrialRecord | None, exc: BaseException) -> FrozenTrial:
    """Fail a trial that an error or an interrupt ended; an interrupted one (Ctrl-C, SIGTERM) does not
    count, and the next run retries it."""
    record = record if record is not None else read_trial(trial).identity()
    if isinstance(exc, KeyboardInterrupt):
        drop_idle_connections(study)  # the interrupt may have cut a read short
        ended = interrupted(record)
    else:
        ended = replace(record, status=Status.FAILED, reason=f"{type(exc).__name__}: {exc}")
    write_trial(trial, ended)
    return study.tell(trial, state=TrialState.FAIL)


def interrupted(record: TrialRecord) -> TrialRecord:
    """``record`` of a trial that Ctrl-C or SIGTERM ended: it does not count, and the next run retries it."""
    return replace(record, status=Status.INTERRUPTED, reason="interrupted by the user")


def apply_params(config: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """``config`` with a trial's params: TrainConfig fields directly, ``model_args.NAME`` into model_args and
    ``optimizer_args.NAME`` into optimizer_args, over the fixed ones."""
    fields: dict[str, Any] = {}
    for name, value in params.items():
        split = split_arg(name)
        if split is None:
            fields[name] = value
        else:
            table, arg = split
            fields.setdefault(table, dict(getattr(config, table)))[arg] = value
    return config.replace(**fields)


def record_result(record: TrialRecord, result: TrainResult, metric: str) -> TrialRecord:
    """``record`` with what became of the run: history, diagnosis, seconds, and its status and reason
    (completed, or diverged / pruned / non-finite ``metric``, which its trial is told as PRUNED)."""
    history = result.to_dict()["history"]  # JSON-ready: None where a loss was not finite
    epochs_run = len(result.history)
    value = result.value(metric)
    if result.status == Status.DIVERGED:
        status, reason = Status.DIVERGED, result.reason or "diverged"
    elif result.status == Status.STOPPED:
        status, reason = Status.PRUNED, f"pruned at epoch {epochs_run}"
    elif not math.isfinite(value):
        status, reason = Status.DIVERGED, f"{metric} is {value} after epoch {epochs_run}"
    else:
        status, reason = Status.COMPLETED, None
    return replace(record, history=history, diagnosis=diagnose(history, result.status, result.chance).to_dict(),
                   seconds=result.seconds, resumed_from_epoch=result.resumed_from or None, status=status,
                   reason=reason)


def checkpoint_folder(checkpoint_dir: Path, study_name: str) -> Path:
    """Where a study's trial checkpoints go: one folder per study, its name made safe for a path."""
    return Path(checkpoint_dir) / re.sub(r"[^\w.-]+", "_", study_name)
