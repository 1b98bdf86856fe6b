"""A study in words, without figures: the optuna-dashboard note and the diagnosis summary a run ends with.

Kept apart from hpsearch.presentation.report so that writing them imports no plotting library.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from hpsearch.engine.config import applicable_settings
from hpsearch.engine.lr_finder import LRFinderResult
from hpsearch.search.advice import label_summary, range_advice
from hpsearch.search.pruners import learns_its_warmup
from hpsearch.search.records import is_carried, own_trials, read_record, read_trial
from hpsearch.search.summary import best_with_study, counts_by_state, load_family
from hpsearch.search.trusted_epoch import trusted_epoch

__all__ = ["family_counts", "family_table", "learned_warmup_lines", "stored_lr_test", "study_diagnosis",
           "study_note", "trial_note"]

# The settings a trial's note shows beside its params: what tells runs apart at a glance (the whole config stays in
# the trial's ``hpsearch`` user attr); of them, those that apply (``hidden`` only for the built-in mlp).
_NOTE_SETTINGS = ("dataset", "model", "hidden", "model_args", "loss", "optimizer", "optimizer_args", "metrics",
                  "epochs", "batch_size", "lr", "weight_decay", "schedule", "clip", "seed")
_NOTE_COLUMNS = {"epoch": "d", "train_loss": ".4g", "val_loss": ".4g", "val_acc": ".4f", "lr": ".3g",
                 "grad_norm": ".3g", "seconds": ".2f"}


def study_note(name: str, storage: BaseStorage) -> str:
    """Markdown for optuna-dashboard's note: strategy, LR range test, trial counts and the best config."""
    family = load_family(name, storage)
    table = family_table(family)
    lines = [f"**hpsearch** study `{name}`: strategy **{table.get('strategy', '?')}**, "
             f"metric `{table.get('metric', '?')}` ({family[0].direction.name.lower()})", ""]
    counts = family_counts(family)
    lines.append("Trials: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n) + ".")
    lr_test = stored_lr_test(family)
    if lr_test is not None:
        low, high = lr_test.prior()
        suggestion = f"{lr_test.suggestion:.3g} ({lr_test.method})" if lr_test.suggestion is not None else "none"
        lines.append(f"LR range test: suggested lr {suggestion}; search range {low:.3g} to {high:.3g}.")
    lines += [f"- {line}" for line in study_diagnosis(family)]
    if len(family) > 1:
        lines += ["", "Stages:"] + [f"- {line}" for line in stage_lines(family)]
    else:
        lines += learned_warmup_lines(family[0], table)
    best = best_with_study(family, 1)
    if best:
        study, trial = best[0]
        lines += ["", f"Best: trial {trial.number} of `{study.study_name}`, value {trial.value:.4g}", "",
                  "```json", json.dumps(applicable_settings(read_trial(trial).config or {}) or trial.params, indent=2),
                  "```"]
    else:
        lines.append("No trial has completed yet.")
    return "\n".join(lines)


def learned_warmup_lines(study: optuna.Study, table: dict[str, Any]) -> list[str]:
    """The epoch the median pruner learned to wait for (pruners.TrustedEpochMedianPruner), as of the study's complete
    trials, when later than the first: why trials that trailed early were let through. Nothing for another pruner or
    a warm-up the spec fixed."""
    if not learns_its_warmup(table.get("pruner", ""), table.get("pruner_warmup")):
        return []
    epoch = trusted_epoch(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if epoch is None or epoch <= 1:
        return []
    return [f"Median pruner: no trial pruned before epoch {epoch}, the first at which the complete trials ranked "
            "as they finished."]


def family_table(family: list[optuna.Study]) -> dict[str, Any]:
    """The [study] table of the search as asked: a coarse-to-fine family's own, not its first stage's."""
    return read_record(family[0]).family_table()


def study_diagnosis(family: list[optuna.Study]) -> list[str]:
    """The trials' diagnosis counts and the range advice, as lines (none when there is nothing to say)."""
    trials = [trial for study in family for trial in own_trials(study)]
    space = read_record(family[-1]).table("space")
    maximize = family[0].direction == optuna.study.StudyDirection.MAXIMIZE
    summary = label_summary(trials)
    return ([summary] if summary else []) + [f"advice: {line}" for line in range_advice(trials, space, maximize)]


def stage_lines(family: list[optuna.Study]) -> list[str]:
    """Per coarse-to-fine stage: its own trials, what it started from (trials carried over from the stages
    before it), its ranges, and the epoch its pruner stopped no trial before, when later than the first."""
    lines = []
    for study in family:
        trials = study.get_trials(deepcopy=False)
        carried = sum(is_carried(t) for t in trials)
        record = read_record(study)
        space = record.table("space")
        warmup = record.table("study").get("pruner_warmup") or 1
        ranges = ", ".join(f"{name} {r['low']:.3g} to {r['high']:.3g}" for name, r in space.items()
                           if isinstance(r, dict) and "low" in r)
        start = f"started from {carried} carried over from earlier stages" if carried else "started from none"
        pruning = f"; no trial pruned before epoch {warmup}" if warmup > 1 else ""
        lines.append(f"`{study.study_name}`: {len(trials) - carried} trials of its own, {start}; {ranges}{pruning}")
    return lines


def family_counts(family: list[optuna.Study]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for study in family:
        for state, n in counts_by_state(study).items():
            totals[state] = totals.get(state, 0) + n
    return totals


def stored_lr_test(family: list[optuna.Study]) -> LRFinderResult | None:
    for study in family:
        stored = read_record(study).lr_range_test
        if stored is not None:
            return LRFinderResult.from_dict(stored)
    return None


def trial_note(trial: FrozenTrial, metric: str) -> str:
    """Markdown for a trial's optuna-dashboard note, to read: what became of it and why, its diagnosis, its params
    and key settings, and its epochs as a table. The ``hpsearch`` user attr keeps the whole record for programs."""
    stored = read_trial(trial)
    value = f"; {metric} **{trial.value:.4g}**" if trial.value is not None else ""
    lines = [f"**hpsearch** trial {trial.number}: **{stored.status or trial.state.name.lower()}**{value}"
             + (f" ({stored.reason})" if stored.reason else "")]
    if stored.diagnosis:
        lines.append(f"Diagnosis: **{stored.diagnosis['label']}** ({stored.diagnosis['rule']})")
    if trial.params:
        lines.append("Params: " + ", ".join(f"`{name}={_short(value)}`" for name, value in trial.params.items()))
    config = applicable_settings(stored.config or {})
    settings = [f"{key} `{_short(config[key])}`" for key in _NOTE_SETTINGS if config.get(key) not in (None, {})
                and key not in trial.params]
    if settings:
        lines.append("Settings: " + ", ".join(settings))
    if stored.history:
        epochs = [{**(epoch.get("user_metrics") or {}), **epoch} for epoch in stored.history]  # the user's beside
        user = {name: ".4g" for epoch in stored.history for name in epoch.get("user_metrics") or {}}
        formats = {**_NOTE_COLUMNS, **{name: spec for name, spec in user.items() if name not in _NOTE_COLUMNS}}
        columns = [name for name in formats if any(epoch.get(name) is not None for epoch in epochs)]
        rows = [columns, ["---:"] * len(columns),
                *([_cell(epoch.get(name), formats[name]) for name in columns] for epoch in epochs)]
        lines.append("\n".join(f"| {' | '.join(row)} |" for row in rows))
    return "\n\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
