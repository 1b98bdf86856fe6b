"""One Optuna trial: suggested params → TrainConfig → train() with a pruning reporter → value."""

from __future__ import annotations

import logging
import math

import optuna

from hpsearch.data import Data
from hpsearch.spec import StudySpec
from hpsearch.training import EpochMetrics, train

__all__ = ["Objective"]

logger = logging.getLogger(__name__)


class Objective:
    """Callable for ``study.optimize``: trains one configuration on data loaded once per study.

    Everything about the trial goes into its user attrs, so Optuna's storage is the only record:
    ``config`` (the full TrainConfig), ``history`` (per-epoch metrics), ``status``, ``reason``,
    ``seconds``, ``seed``. Optuna writes one attr per storage call (a journal line and its fsync, or
    an SQLite commit), so each is written once, before or after training; within an epoch the
    storage sees only the reported value and the pruner's read.
    """

    def __init__(self, spec: StudySpec, data: Data) -> None:
        self.spec = spec
        self.data = data

    def __call__(self, trial: optuna.Trial) -> float:
        params = {param.name: param.suggest(trial) for param in self.spec.space.params}
        config = self.spec.train.replace(**params)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("seed", config.seed)

        def report(epoch: int, metrics: EpochMetrics) -> bool:
            value = getattr(metrics, self.spec.metric)
            if math.isfinite(value):
                trial.report(value, epoch)
            return trial.should_prune()

        try:
            result = train(config, self.data, reporter=report)
        except KeyboardInterrupt:
            trial.set_user_attr("status", "interrupted")
            trial.set_user_attr("reason", "interrupted by the user")
            raise
        summary = result.to_dict()
        trial.set_user_attr("history", summary["history"])
        trial.set_user_attr("seconds", result.seconds)
        epochs_run = len(result.history)
        if result.status == "diverged":
            return self._prune(trial, "diverged", result.reason or "diverged")
        if result.status == "stopped":
            return self._prune(trial, "pruned", f"pruned at epoch {epochs_run}")
        trial.set_user_attr("status", "completed")
        value = getattr(result, self.spec.metric)
        if not math.isfinite(value):
            return self._prune(trial, "diverged", f"{self.spec.metric} is {value} after epoch {epochs_run}")
        return value

    @staticmethod
    def _prune(trial: optuna.Trial, status: str, reason: str) -> float:
        trial.set_user_attr("status", status)
        trial.set_user_attr("reason", reason)
        raise optuna.TrialPruned(reason)
