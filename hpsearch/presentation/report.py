"""``hpsearch report``: a study (or coarse-to-fine family) as PNG figures and an index.md that shows them.

Everything comes from the storage: trials, the stored spec (metric, ranges of each stage) and the
stored LR range test. A figure that cannot be drawn (too few complete trials) is named in the index
with the reason, so a report of a study whose trials were all pruned still says what it can.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from hpsearch.engine.config import applicable_settings
from hpsearch.errors import HPSearchError
from hpsearch.presentation.figures import (
    StageRange,
    plot_history,
    plot_importances,
    plot_landscape,
    plot_learning_curves,
    plot_lr_range_test,
    save_figure,
)
from hpsearch.presentation.notes import family_counts, family_table, stored_lr_test, study_diagnosis, study_note
from hpsearch.search.coarse_to_fine import stage_label
from hpsearch.search.records import own_trials, read_record, read_trial
from hpsearch.search.summary import best_with_study, load_family

# The notes are re-exported for their readers.
__all__ = ["Report", "full_length", "landscape_axis", "study_diagnosis", "study_note", "write_report"]

# Parameter importances need at least this many complete trials to say anything.
MIN_TRIALS_FOR_IMPORTANCE = 3
# Below this many, they are drawn with a warning not to trust them. fANOVA fits a random forest to the trials and
# splits the variance of its prediction between the parameters: under about ten trials a parameter of the default
# space's two, each tree's splits follow where a few samples happened to fall. A judgement, not a sharp line: on
# 60 random digits trials over three parameters, subsets of 5 or 10 named the same top parameter as all 60 in 9
# and 7 of 20 draws (and subsets of 20 or 30 hardly more often, the two top shares being 0.61 and 0.37), so the
# caution is certain below 20, and importances from more are still a ranking to check, not a measurement.
TRUSTED_IMPORTANCE_TRIALS = 20


@dataclass
class Report:
    """What ``write_report`` wrote: the figures (name → file), and the figures left out with why."""

    folder: Path
    figures: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # a line under a figure: what to keep in mind reading it

    @property
    def index(self) -> Path:
        return self.folder / "index.md"


_TITLES = {
    "history": "Optimization history",
    "landscape": "Learning-rate landscape",
    "learning_curves": "Learning curves",
    "importances": "Parameter importances",
    "lr_range_test": "LR range test",
}


def write_report(name: str, storage: BaseStorage, out: Path) -> Report:
    """Draw every figure the study allows into ``out`` and write ``out/index.md`` linking them."""
    family = load_family(name, storage)
    trials = [trial for study in family for trial in own_trials(study)]
    table = family_table(family)
    metric = table.get("metric", "value")
    maximize = family[0].direction == optuna.study.StudyDirection.MAXIMIZE
    if out.exists() and not out.is_dir():
        raise HPSearchError(f"not a folder (--out {out})")
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]

    report.figures["history"] = _save(plot_history(trials, metric, maximize), out / "history.png")
    full, epochs = full_length(complete)
    importances, why = _importances(full)
    other = landscape_axis(trials, importances)
    if other is not None:
        report.figures["landscape"] = _save(plot_landscape(trials, metric, maximize, _stage_ranges(family, other),
                                                           other), out / "landscape.png")
        if other != "weight_decay":
            ranked = " (the most important one searched with it)" if importances and other in importances else ""
            report.notes["landscape"] = f"No trial searched weight decay with lr: lr is drawn against {other}{ranked}."
    else:
        report.missing["landscape"] = "no trial searched lr with another parameter"
    if any(t.intermediate_values for t in trials):
        report.figures["learning_curves"] = _save(plot_learning_curves(trials, metric, maximize),
                                                  out / "learning_curves.png")
    else:
        report.missing["learning_curves"] = "no trial reported an epoch"
    if importances is not None:
        basis = f"{len(full)} complete trials of {epochs} epochs"
        caution = (f"too few to trust: fewer than {TRUSTED_IMPORTANCE_TRIALS} complete trials"
                   if len(full) < TRUSTED_IMPORTANCE_TRIALS else "")
        report.figures["importances"] = _save(plot_importances(importances, metric, basis, caution),
                                              out / "importances.png")
        if caution:
            report.notes["importances"] = (f"Drawn from {len(full)} complete trials, {caution}: a few more trials "
                                           "can reorder them.")
    else:
        report.missing["importances"] = why
    lr_test = stored_lr_test(family)
    if lr_test is not None:
        report.figures["lr_range_test"] = _save(plot_lr_range_test(lr_test), out / "lr_range_test.png")
    else:
        report.missing["lr_range_test"] = "the study ran without an LR range test (--lr-find or coarse-to-fine)"
    report.index.write_text(_index(name, family, trials, report, table))
    return report


def full_length(trials: Sequence[FrozenTrial]) -> tuple[list[FrozenTrial], int]:
    """The trials that trained the most epochs, and that count: the importances of trials of fewer epochs
    (a coarse stage's) would mix training length in. Listed, not keyed by trial number, which a
    coarse-to-fine family's stages repeat."""
    trained = [(t, (read_trial(t).config or {}).get("epochs", 0)) for t in trials]
    epochs = max((its for _, its in trained), default=0)
    return [t for t, its in trained if its == epochs], epochs


def _save(figure: Any, path: Path) -> Path:
    save_figure(figure, path)
    return path


def landscape_axis(trials: Sequence[FrozenTrial], importances: dict[str, float] | None) -> str | None:
    """The parameter the landscape draws lr against: weight decay where trials searched both, else the one searched
    with lr that the importances rank highest, else the first searched with it on a float range (or any); None
    when no trial searched lr with another parameter."""
    searched = sorted({name for t in trials if "lr" in t.params for name in t.params} - {"lr"})
    if "weight_decay" in searched:
        return "weight_decay"
    ranked = [name for name in importances or {} if name in searched]
    floats = [name for name in searched
              if any(isinstance(t.distributions.get(name), FloatDistribution) for t in trials)]
    return next(iter(ranked + floats + searched), None)


def _stage_ranges(family: list[optuna.Study], other: str) -> list[StageRange]:
    """The lr and ``other`` box of each coarse-to-fine stage, from the spec stored with it."""
    if len(family) < 2:
        return []
    ranges = []
    for study in family:
        space = read_record(study).table("space")
        lr, span = space.get("lr", {}), space.get(other, {})
        if {"low", "high"} <= set(lr) and {"low", "high"} <= set(span):
            ranges.append(StageRange(stage_label(study.study_name), (lr["low"], lr["high"]),
                                     (span["low"], span["high"])))
    return ranges


def _importances(complete: list[FrozenTrial]) -> tuple[dict[str, float] | None, str]:
    """fANOVA importances over the complete trials of all stages (one range per parameter spanning them)."""
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return None, (f"needs at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials; this study has "
                      f"{len(complete)}")
    names = sorted({name for t in complete for name in t.params})
    study = optuna.create_study(direction="minimize")
    distributions = {}
    for name in names:
        values = [t.params[name] for t in complete if name in t.params]
        first = next(t.distributions[name] for t in complete if name in t.params)
        distributions[name] = (FloatDistribution(min(values), max(values), log=first.log)
                               if isinstance(first, FloatDistribution) and min(values) < max(values) else first)
    for trial in complete:
        if set(trial.params) == set(names):
            study.add_trial(optuna.create_trial(params=trial.params, distributions=distributions, value=trial.value))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as exc:
        return None, f"Optuna could not compute them: {exc}"
    if not importances:
        return None, "no parameter varied across the complete trials"
    return dict(importances), ""


def _index(name: str, family: list[optuna.Study], trials: list[FrozenTrial], report: Report,
           table: dict[str, Any]) -> str:
    counts = family_counts(family)
    lines = [f"# hpsearch report: {name}", "",
             f"- strategy: {table.get('strategy', '?')}; metric: {table.get('metric', '?')} "
             f"({family[0].direction.name.lower()})",
             f"- trials: {len(trials)} (" + ", ".join(f"{n} {state}" for state, n in counts.items() if n) + ")"]
    if len(family) > 1:
        lines.append("- stages: " + ", ".join(f"`{study.study_name}`" for study in family))
    diagnosis = study_diagnosis(family)
    if diagnosis:
        lines += ["", "## Diagnosis", ""] + [f"- {line}" for line in diagnosis]
    best = best_with_study(family, 1)
    lines += ["", "## Best trial", ""]
    if best:
        study, trial = best[0]
        lines += [f"Trial {trial.number} of `{study.study_name}`: {table.get('metric', 'value')} "
                  f"**{trial.value:.4g}**; run it again with `hpsearch export {name} --out best.json` and "
                  "`hpsearch train --config best.json`.", "", "```json",
                  json.dumps(applicable_settings(read_trial(trial).config or {}) or trial.params, indent=2), "```"]
    else:
        lines.append("No trial completed, so there is no best configuration: every trial was pruned or failed.")
    for key, path in report.figures.items():
        lines += ["", f"## {_TITLES[key]}", "", f"![{_TITLES[key]}]({path.name})"]
        if key in report.notes:
            lines += ["", report.notes[key]]
    if report.missing:
        lines += ["", "## Not drawn", ""]
        lines += [f"- {_TITLES[key]}: {why}." for key, why in report.missing.items()]
    return "\n".join(lines) + "\n"

