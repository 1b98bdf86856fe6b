"""What the CLI shows while work runs and after: epoch tables, the study progress bar, trial tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich import box
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hpsearch.engine.checks import FAIL, PASS, SKIP, WARN, CheckResult
from hpsearch.engine.config import applicable_settings
from hpsearch.engine.training import EpochMetrics
from hpsearch.search.budget import finished_trials
from hpsearch.search.coarse_to_fine import stage_label
from hpsearch.search.records import own_trials, read_trial
from hpsearch.search.spec import StudySpec
from hpsearch.search.summary import StudyRow, stored_study_table

__all__ = ["EpochTable", "StudyProgress", "format_params", "print_checks", "print_studies", "print_trial",
           "print_trials"]

_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_CHECK_COLOURS = {PASS: "green", WARN: "yellow", FAIL: "red", SKIP: "cyan"}
_EPOCH_COLUMNS = ("epoch", "train_loss", "val_loss", "val_acc", "lr", "grad_norm", "samples/s", "sec")


class EpochTable:
    """A live per-epoch table; ``add`` is a training reporter that never stops the run."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.table = _epoch_table()
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
        self.table.add_row(*_epoch_cells(m))
        self._live.refresh()


def _epoch_table() -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in _EPOCH_COLUMNS:
        table.add_column(column, justify="right", min_width=len(column))
    return table


def _epoch_cells(m: EpochMetrics) -> tuple[str, ...]:
    """One epoch's row; a stored history holds None where a value was not finite (or, for val_acc, where a
    regression has no accuracy), shown as "-"."""
    def cell(value: float | None, spec: str) -> str:
        return "-" if value is None or math.isnan(value) else format(value, spec)

    return (str(m.epoch), cell(m.train_loss, ".4g"), cell(m.val_loss, ".4g"), cell(m.val_acc, ".4f"),
            cell(m.lr, ".3g"), cell(m.grad_norm, ".3g"), cell(m.samples_per_s, ",.0f"), cell(m.seconds, ".2f"))


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


def print_trials(console: Console, family: list[optuna.Study], trials: list[tuple[optuna.Study, FrozenTrial]],
                 title: str) -> None:
    """A table of (study, trial) pairs of one study or of a coarse-to-fine family: number, value, params,
    epochs run; for a family also each trial's stage, as every stage numbers its trials from 0."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    metric = stored_study_table(family[-1].user_attrs).get("metric", "value")
    staged = len(family) > 1
    for column in ("stage",) * staged + ("trial", metric, "params", "epochs", "seconds"):
        table.add_column(column, justify="left" if column in ("params", "stage") else "right")
    for study, trial in trials:
        seconds = read_trial(trial).seconds
        table.add_row(*(stage_label(study.study_name),) * staged, str(trial.number),
                      f"{trial.value:.4g}" if trial.value is not None else "-", format_params(trial.params),
                      str(len(trial.intermediate_values)), f"{seconds:.1f}" if seconds is not None else "-")
    console.print(table)



def print_trial(console: Console, study: optuna.Study, trial: FrozenTrial) -> None:
    """One trial in full: state, status and reason, value, params, training config, per-epoch metrics."""
    stored = read_trial(trial)
    metric = stored_study_table(study.user_attrs).get("metric", "value")
    value = f"{metric} {trial.value:.4g}" if trial.value is not None else "no value"
    console.print(f"trial {trial.number} of {study.study_name}: {trial.state.name.lower()}"
                  f" ({stored.status or '-'}); {value}")
    if stored.carried_from:
        console.print(f"carried over from {stored.carried_from}, for this stage's sampler to start from")
    if stored.reason:
        console.print(f"reason: {stored.reason}")
    if stored.diagnosis:
        console.print(f"diagnosis: {stored.diagnosis['label']} ({stored.diagnosis['rule']})")
    retried = trial.system_attrs.get("failed_trial")
    if retried is not None:
        console.print(f"retry of trial {retried}" + (f", resumed from epoch {stored.resumed_from_epoch}"
                                                      if stored.resumed_from_epoch else ""))
    console.print(f"params: {format_params(trial.params) or '-'}")
    config = applicable_settings(stored.config or {})  # not the mlp's hidden for a user's model, and so on
    if config:
        console.print("config: " + escape(", ".join(f"{key}={value}" for key, value in config.items())))
    extras = [f"{key} {value}" for key, value in (("worker", stored.worker), ("checkpoint", stored.checkpoint))
              if value is not None]
    if stored.seconds is not None:
        extras.append(f"{stored.seconds:.1f} s")
    if extras:
        console.print("; ".join(extras))
    history = stored.history or []
    if history:
        table = _epoch_table()
        for epoch in history:
            table.add_row(*_epoch_cells(EpochMetrics(**epoch)))
        console.print(table)
    elif trial.intermediate_values:  # ended before its history was written (interrupted, killed)
        last = max(trial.intermediate_values)
        console.print(f"reported {len(trial.intermediate_values)} epochs; epoch {last}: {metric} "
                      f"{trial.intermediate_values[last]:.4g}")


def print_checks(console: Console, results: list[CheckResult]) -> None:
    """One line per check, PASS/WARN/FAIL with measured and expected values and advice under the others;
    SKIP with why the check could not run and what to look at instead."""
    for result in results:
        tag = f"[{_CHECK_COLOURS[result.outcome]}]{result.outcome}[/] {escape(result.name)}: "
        if result.outcome == SKIP:
            console.print(tag + escape(result.meaning), highlight=False)
            console.print(f"     instead: {escape(result.advice)}", highlight=False)
            continue
        console.print(tag + escape(f"{result.measured} (expected {result.expected})"), highlight=False)
        if result.outcome != PASS:
            console.print(escape(f"     usually means: {result.meaning}; try: {result.advice}"), highlight=False)


def print_studies(console: Console, rows: list[StudyRow]) -> None:
    """A table of the studies in a storage."""
    if not rows:
        console.print("no studies in this storage")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    states = ["complete", "pruned", "fail"] + [state for state in ("running", "waiting")
                                               if any(row.counts.get(state) for row in rows)]
    table.add_column("study", min_width=max(len(row.name) for row in rows))
    table.add_column("strategy")
    table.add_column("metric")
    for state in states:
        table.add_column(state, justify="right", min_width=len(state))
    table.add_column("best", justify="right", min_width=6)
    for row in rows:
        table.add_row(row.name, row.strategy, row.metric, *(str(row.counts.get(state, 0)) for state in states),
                      f"{row.best_value:.4g}" if row.best_value is not None else "-")
    console.print(table)


def format_params(params: dict[str, Any]) -> str:
    """``lr=0.00151, schedule=wsd``: floats to three significant digits."""
    return ", ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in params.items())
