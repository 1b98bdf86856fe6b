"""What the CLI shows while work runs: the live per-epoch table and the study progress bar (tables after: tables)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from rich import box
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hpsearch.engine.training import EpochMetrics
from hpsearch.search.budget import finished_in_family, finished_trials
from hpsearch.search.records import own_trials
from hpsearch.search.spec import StudySpec
from hpsearch.search.summary import find_family

__all__ = ["EpochTable", "StudyProgress", "epoch_cells", "epoch_table", "format_params"]

_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_EPOCH_COLUMNS = ("epoch", "train_loss", "val_loss", "val_acc", "lr", "grad_norm", "samples/s", "sec")


class EpochTable:
    """A live per-epoch table; ``add`` is a training reporter that never stops the run."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.table = epoch_table()
        self._live = Live(self.table, console=console, auto_refresh=False)

    def __enter__(self) -> EpochTable:
        self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None,
                 ) -> None:
        self._live.__exit__(kind, error, tb)
        if not self.console.is_terminal:
            self.console.line()  # Live leaves no newline after its last render when output is not a terminal

    def add(self, epoch: int, m: EpochMetrics) -> None:
        if not self.table.rows and m.user_metrics:  # the user's metrics are known from the first epoch on
            self.table = epoch_table(list(m.user_metrics))
            self._live.update(self.table)
        self.table.add_row(*epoch_cells(m, [column.header for column in self.table.columns[len(_EPOCH_COLUMNS):]]))
        self._live.refresh()


def epoch_table(user_metrics: Sequence[str] = ()) -> Table:
    """The per-epoch table's columns: what every run reports, then the user's metrics (``user_metrics``)."""
    table = Table(box=box.SIMPLE_HEAD)
    for column in (*_EPOCH_COLUMNS, *user_metrics):
        table.add_column(column, justify="right", min_width=len(column))
    return table


def epoch_cells(m: EpochMetrics, user_metrics: Sequence[str] = ()) -> tuple[str, ...]:
    """One epoch's row, with the user's metrics named in ``user_metrics``; a stored history holds None where a
    value was not finite (or, for val_acc, where a regression has no accuracy), shown as "-"."""
    def cell(value: float | None, spec: str) -> str:
        return "-" if value is None or math.isnan(value) else format(value, spec)

    return (str(m.epoch), cell(m.train_loss, ".4g"), cell(m.val_loss, ".4g"), cell(m.val_acc, ".4f"),
            cell(m.lr, ".3g"), cell(m.grad_norm, ".3g"), cell(m.samples_per_s, ",.0f"), cell(m.seconds, ".2f"),
            *(cell(m.user_metrics.get(name), ".4g") for name in user_metrics))


class _TwoLineProgress(Progress):
    """A progress bar with a status line under it (counts and best so far do not fit beside the bar)."""

    status = ""

    def get_renderables(self) -> Any:
        yield self.make_tasks_table(self.tasks)
        if self.status:
            yield self.status


class StudyProgress:
    """A progress bar for a study: trial n/N, elapsed, ETA; under it counts by outcome and the best so far.

    ``stored``: the studies of the search as the storage held them before this run (a resumed study, the stages
    of a coarse-to-fine family), whose trials the bar starts from rather than from 0.
    """

    def __init__(self, console: Console, spec: StudySpec, enabled: bool = True,
                 stored: Sequence[optuna.Study] = ()) -> None:
        self.spec = spec
        self._progress = _TwoLineProgress(
            TextColumn("trial"), MofNCompleteColumn(), BarColumn(bar_width=30), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=console, disable=not enabled)
        self._task = self._progress.add_task("study", total=spec.total_trials)
        self._counts: dict[str, dict[TrialState, int]] = {}
        self._finished: dict[str, int] = {}
        self._best: FrozenTrial | None = None
        self._trials_seen = False
        for study in stored:
            for trial in own_trials(study, states=(TrialState.COMPLETE,)):
                self._note_best(trial)
            self._count(study)

    @classmethod
    def resuming(cls, console: Console, spec: StudySpec, storage: BaseStorage, enabled: bool = True) -> StudyProgress:
        """The bar of a run of ``spec`` on ``storage``, from the trials its study (or family) holds already; none to
        show when it holds them all (the run then runs nothing)."""
        stored = find_family(spec.study_name, storage)
        return cls(console, spec, enabled=enabled and finished_in_family(stored) < spec.total_trials, stored=stored)

    def __enter__(self) -> StudyProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None,
                 ) -> None:
        if error is not None and not self._trials_seen:  # refused before any trial: the error line alone, no bar
            self._progress.live.transient = True
        self._progress.__exit__(kind, error, tb)

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback after each trial: move the bar and restate counts and the best so far,
        summed over every study of the search (the stages of coarse-to-fine)."""
        self._trials_seen = True
        self._note_best(trial)
        self._count(study)

    def _note_best(self, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and trial.value is not None and (
                self._best is None or (trial.value > self._best.value) == (self.spec.direction == "maximize")):
            self._best = trial

    def _count(self, study: optuna.Study) -> None:
        trials = own_trials(study)
        self._counts[study.study_name] = {state: sum(t.state == state for t in trials) for state in _COUNTED}
        self._finished[study.study_name] = len(finished_trials(study))  # an interrupted trial is retried, not done
        totals = {state: sum(counts[state] for counts in self._counts.values()) for state in _COUNTED}
        status = (f"{totals[TrialState.COMPLETE]} complete, {totals[TrialState.PRUNED]} pruned, "
                  f"{totals[TrialState.FAIL]} failed")
        if self._best is not None:
            status += f"; best {self.spec.metric} {self._best.value:.4g}: {format_params(self._best.params)}"
        self._progress.status = status
        self._progress.update(self._task, completed=min(sum(self._finished.values()), self.spec.total_trials))


def format_params(params: dict[str, Any]) -> str:
    """``lr=0.00151, schedule=wsd``: floats to three significant digits."""
    return ", ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in params.items())
