"""What the CLI prints after the work: a study's trials, one trial in full, the checks, the studies in a storage, and
what a run leaves."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hpsearch.engine.checks import FAIL, PASS, SKIP, WARN, CheckResult
from hpsearch.engine.config import applicable_settings
from hpsearch.engine.lr_finder import LRFinderResult
from hpsearch.engine.training import EpochMetrics
from hpsearch.presentation.progress import epoch_cells, epoch_table, format_params
from hpsearch.search.coarse_to_fine import stage_label
from hpsearch.search.records import read_trial
from hpsearch.search.summary import StudyRow, stored_study_table

if TYPE_CHECKING:  # the run module brings the search runner with it; these tables print what it left
    from hpsearch.presentation.run import StudyResult

__all__ = ["held_line", "print_checks", "print_lr_range_test", "print_run", "print_studies", "print_trial",
           "print_trials"]

_CHECK_COLOURS = {PASS: "green", WARN: "yellow", FAIL: "red", SKIP: "cyan"}


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
    history = [EpochMetrics(**epoch) for epoch in stored.history or []]
    if history:
        user_metrics = list(dict.fromkeys(name for epoch in history for name in epoch.user_metrics))
        table = epoch_table(user_metrics)
        for epoch in history:
            table.add_row(*epoch_cells(epoch, user_metrics))
        console.print(table)
    elif trial.intermediate_values:  # ended before its history was written (interrupted, killed), or the user's
        last = max(trial.intermediate_values)  # objective's, which keeps only what it reported, by its own steps
        step = "epoch" if stored.config is not None else "step"
        console.print(f"reported {len(trial.intermediate_values)} {step}s; {step} {last}: {metric} "
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


def print_run(console: Console, result: StudyResult, *, quiet: bool = False, storage: str | None = None) -> None:
    """What ``hpsearch run`` ends with: that the study held its trials already (and how to run more), the diagnosis
    and advice, the best trials (not when quiet), the best line and how to export it (``storage``: as given)."""
    spec, best = result.spec, result.best
    if result.held_already:
        console.print(held_line(result, storage), highlight=False, soft_wrap=True)  # a command to copy: one line
    for line in result.diagnosis:
        console.print(line, highlight=False)
    if not quiet:
        print_trials(console, result.family, best, title=f"study {spec.study_name}: top {len(best)}")
    if not best:
        console.print("no trial completed")
        return
    best_study, best_trial = best[0]
    where = f" of {best_study.study_name}" if len(result.family) > 1 else ""
    console.print(f"best {spec.metric} {best_trial.value:.4g} (trial {best_trial.number}{where}): "
                  + format_params(best_trial.params))
    if not quiet:
        console.print(f"full config: hpsearch export {spec.study_name} --out best.json"
                      + (f" --storage {storage}" if storage else ""))


def held_line(result: StudyResult, storage: str | None) -> str:
    """What a re-run of a study that holds its trials already says: how many, the best, how to run more."""
    spec, held = result.spec, result.held_before
    name, total = spec.study_name, spec.total_trials
    found = f" (best {spec.metric} {result.best[0][1].value:.4g})" if result.best else ""
    count = f"its {held} trials" if held == total else f"{held} finished trials ({total} asked)"
    if spec.strategy == "grid" and total == spec.replace(n_trials=None).total_trials:
        return f"study {name} already holds {count}{found}, every point of its grid"
    more = shlex.join(["hpsearch", "run", "--study", name, "--n-trials", str(total + 10),
                       *(["--storage", storage] if storage else [])])
    return f"study {name} already holds {count}{found}; run more with: {more}"


def print_lr_range_test(console: Console, result: LRFinderResult, plot: Path | None = None) -> None:
    """The LR range test's suggestions, the one it picked, the search range it gives and where it diverged."""
    found = result.suggestions
    for name in ("steepest", "divergence", "valley"):
        lr = getattr(found, name)
        console.print(f"{name:>10}: {lr:.3g}" if lr is not None else f"{name:>10}: -")
    low, high = result.prior()
    stop = f"diverged at lr {result.diverged_at:.3g}" if result.diverged_at else "never diverged"
    suggestion = f"{result.suggestion:.3g} ({result.method})" if result.suggestion is not None else "none"
    console.print(f"suggested lr {suggestion}; search range {low:.3g} to {high:.3g}; {len(result.lrs)} steps, {stop}"
                  + (f"; plot in {plot}" if plot else ""))
