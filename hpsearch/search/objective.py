"""One Optuna trial: suggested params → TrainConfig → train() with a pruning reporter → value."""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from hpsearch.checkpoint import check_checkpoint_file
from hpsearch.config import TrainConfig
from hpsearch.data import TaskData
from hpsearch.diagnosis import diagnose
from hpsearch.errors import CheckpointError
from hpsearch.search.space import MODEL_ARGS
from hpsearch.spec import StudySpec
from hpsearch.status import Status
from hpsearch.training import EpochMetrics, TrainResult, train

__all__ = ["NO_FILES", "Objective", "TrialFiles", "apply_params", "checkpoint_folder", "mark_interrupted",
           "record_result", "start_trial"]

logger = logging.getLogger(__name__)

CURVE_ARTIFACT = "learning_curve.png"


@dataclass(frozen=True)
class TrialFiles:
    """Where trials write files: a checkpoint each epoch (``checkpoint_dir``), and on completion their
    learning-curve PNG and final checkpoint as Optuna artifacts for optuna-dashboard (``artifact_dir``)."""

    checkpoint_dir: Path | None = None
    artifact_dir: Path | None = None

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
    """Callable for ``study.optimize``: trains one configuration on data loaded once per study.

    Everything about the trial goes into its user attrs, so Optuna's storage is the only record:
    ``config`` (the full TrainConfig), ``history`` (per-epoch metrics), ``diagnosis`` (label and rule
    from hpsearch.diagnosis), ``status``, ``reason``, ``seconds``, ``seed``, ``worker`` (host:pid)
    and, with ``checkpoint_dir``, ``checkpoint`` (the file saved each epoch; a retry inherits the
    attr and so continues from that file's epoch). Optuna writes one attr per storage call (a
    journal line and its fsync, or an SQLite commit), so each is written once, before or after
    training; within an epoch the storage sees only the reported value and the pruner's read.
    """

    def __init__(self, spec: StudySpec, data: TaskData, files: TrialFiles = NO_FILES) -> None:
        self.spec = spec
        self.data = data
        self.checkpoint_dir = files.checkpoint_dir
        self.artifacts = FileSystemArtifactStore(str(files.artifact_dir)) if files.artifact_dir else None

    def __call__(self, trial: optuna.Trial) -> float:
        config = start_trial(trial, self.spec)
        checkpoint = self._checkpoint(trial)

        def report(epoch: int, metrics: EpochMetrics) -> bool:
            value = getattr(metrics, self.spec.metric)
            if math.isfinite(value):
                trial.report(value, epoch)
            return trial.should_prune()

        try:
            result = train(config, self.data, reporter=report, checkpoint=checkpoint)
        except KeyboardInterrupt:
            mark_interrupted(trial)
            raise
        except Exception as exc:
            trial.set_user_attr("status", Status.FAILED)
            trial.set_user_attr("reason", f"{type(exc).__name__}: {exc}")
            raise
        value = record_result(trial, result, self.spec.metric)
        if value is None:
            raise optuna.TrialPruned(trial.user_attrs["reason"])
        if self.artifacts is not None:
            self._upload(trial, trial.user_attrs["history"], checkpoint)
        return value

    def _upload(self, trial: optuna.Trial, history: list[dict[str, float]], checkpoint: Path | None) -> None:
        """The learning curve and final checkpoint as artifacts: Optuna takes them only while the trial runs."""
        from hpsearch.report import plot_trial_curve, save_figure  # matplotlib: only when artifacts are asked for

        assert self.artifacts is not None
        with tempfile.TemporaryDirectory() as scratch:
            curve = Path(scratch) / CURVE_ARTIFACT
            save_figure(plot_trial_curve(history, f"{trial.study.study_name}, trial {trial.number}"), curve)
            upload_artifact(artifact_store=self.artifacts, file_path=str(curve), study_or_trial=trial,
                            mimetype="image/png")
        if checkpoint is not None and checkpoint.is_file():
            upload_artifact(artifact_store=self.artifacts, file_path=str(checkpoint), study_or_trial=trial,
                            mimetype="application/octet-stream")

    def _checkpoint(self, trial: optuna.Trial) -> Path | None:
        """The trial's checkpoint file: inherited by a retry, else one per trial under checkpoint_dir."""
        if self.checkpoint_dir is None:
            return None
        if "checkpoint" in trial.user_attrs:
            return Path(trial.user_attrs["checkpoint"])
        path = checkpoint_folder(self.checkpoint_dir, trial.study.study_name) / f"trial-{trial.number}.pt"
        trial.set_user_attr("checkpoint", str(path))
        return path



def start_trial(trial: optuna.Trial, spec: StudySpec) -> TrainConfig:
    """Suggest the trial's params and record what it is: ``config`` and ``seed`` (a retry has them from
    the trial it retries) and ``worker``, the host:pid running it, where to look when one fails."""
    config = apply_params(spec.train, spec.space.suggest(trial, spec.train.optimizer))
    if "config" not in trial.user_attrs:
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("seed", config.seed)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    return config


def apply_params(config: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """``config`` with a trial's params: TrainConfig fields directly, ``model_args.NAME`` into model_args."""
    model_args = {name[len(MODEL_ARGS):]: value for name, value in params.items() if name.startswith(MODEL_ARGS)}
    fields = {name: value for name, value in params.items() if not name.startswith(MODEL_ARGS)}
    if model_args:
        fields["model_args"] = {**config.model_args, **model_args}
    return config.replace(**fields)


def mark_interrupted(trial: optuna.Trial) -> None:
    """Ctrl-C or SIGTERM ended the trial: it does not count, and the next run retries it."""
    trial.set_user_attr("status", Status.INTERRUPTED)
    trial.set_user_attr("reason", "interrupted by the user")


def record_result(trial: optuna.Trial, result: TrainResult, metric: str) -> float | None:
    """Store a finished run with its trial (history, diagnosis, seconds, status, reason); return its
    ``metric`` value, or None when the trial is to be told PRUNED (diverged, stopped, non-finite)."""
    history = result.to_dict()["history"]  # JSON-ready: None where a loss was not finite
    trial.set_user_attr("history", history)
    trial.set_user_attr("diagnosis", diagnose(history, result.status).to_dict())
    trial.set_user_attr("seconds", result.seconds)
    if result.resumed_from:
        trial.set_user_attr("resumed_from_epoch", result.resumed_from)
    epochs_run = len(result.history)
    value = getattr(result, metric)
    if result.status == Status.DIVERGED:
        status, reason = Status.DIVERGED, result.reason or "diverged"
    elif result.status == Status.STOPPED:
        status, reason = Status.PRUNED, f"pruned at epoch {epochs_run}"
    elif not math.isfinite(value):
        status, reason = Status.DIVERGED, f"{metric} is {value} after epoch {epochs_run}"
    else:
        trial.set_user_attr("status", Status.COMPLETED)
        return value
    trial.set_user_attr("status", status)
    trial.set_user_attr("reason", reason)
    return None


def checkpoint_folder(checkpoint_dir: Path, study_name: str) -> Path:
    """Where a study's trial checkpoints go: one folder per study, its name made safe for a path."""
    return Path(checkpoint_dir) / re.sub(r"[^\w.-]+", "_", study_name)
