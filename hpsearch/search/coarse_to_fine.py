"""Coarse-to-fine: the LR range test seeds the lr range, then each stage narrows every range to
the span of the best trials before it, and starts from the earlier trials inside its ranges.
Pure functions of specs and trials; the runner runs them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from hpsearch.engine.lr_finder import LRFinderResult
from hpsearch.search.records import RECORD_ATTR, is_carried, read_trial
from hpsearch.search.space import ParamSpec, SearchSpace
from hpsearch.search.spec import StudySpec
from hpsearch.search.trusted_epoch import trusted_epoch
from hpsearch.status import Status

__all__ = ["carried_trials", "coarse_spec", "fine_spec", "first_trials", "narrow", "ranked", "stage_label",
           "stage_name", "stopped_before", "with_lr_prior"]

_SLIVER = 0.005  # decades on a log scale, a fraction of the range otherwise


def stage_name(study: str, stage: int) -> str:
    """``NAME/1-coarse``, ``NAME/2-fine``, …: one Optuna study per stage, grouped by the prefix."""
    return f"{study}/{stage}-{'coarse' if stage == 1 else 'fine'}"


def stage_label(study_name: str) -> str:
    """``2-fine`` of ``NAME/2-fine``: how tables and plots tell a family's stages apart."""
    return study_name.rpartition("/")[2]


def with_lr_prior(spec: StudySpec, lr_test: LRFinderResult) -> StudySpec:
    """``spec`` with its lr range taken from the LR range test (log scale). A test whose curve
    showed no blow-up or suggested nothing says little about the range: the spec's own lr range stays."""
    if lr_test.suggestions.blowup is None or lr_test.suggestion is None:
        return spec
    low, high = lr_test.prior()
    return spec.replace(space=spec.space.replace(ParamSpec("lr", low, high, log=True)))


# Pruners that stop trials at rungs of their own, so the coarse stage may train full length under them.
_RUNG_PRUNERS = ("asha", "hyperband")
# The first trials of a study with an LR range test: its suggestion and a neighbour each side (this factor
# apart), with the weight decay practical recipes start from where the space searches it.
LR_NEIGHBOUR_FACTOR = 3.0
RECIPE_WEIGHT_DECAY = 1e-2


def coarse_spec(spec: StudySpec, lr_test: LRFinderResult | None) -> StudySpec:
    """Stage 1: the LR prior (when an LR range test ran: not for the user's objective), the other ranges as given,
    trials cut short by the coarse pruner (or by fewer epochs)."""
    plan = spec.stage_plan
    full = plan.coarse_pruner in _RUNG_PRUNERS
    epochs = plan.coarse_epochs or (spec.train.epochs if full else max(1, spec.train.epochs // 3))
    return (with_lr_prior(spec, lr_test) if lr_test is not None else spec).replace(
        name=stage_name(spec.study_name, 1), strategy=plan.coarse_sampler, n_trials=plan.coarse_trials,
        pruner=plan.coarse_pruner, lr_find=False, train=spec.train.replace(epochs=epochs))


def first_trials(lr_test: LRFinderResult, space: SearchSpace) -> list[dict[str, Any]]:
    """Params to enqueue first in a study that ran the LR range test: its suggested lr and a neighbour each
    side, inside the LR prior and the space's lr range, each with the recipes' weight decay when the
    space searches weight decay and holds it. None when the test suggested nothing or its loss never blew
    up: such a curve says little about where the lr should be (with_lr_prior keeps the range then too), and
    on the MNIST-shaped task of scripts/compare_strategies.py its suggestion started the search among
    learning rates that overfit."""
    if lr_test.suggestion is None or lr_test.suggestions.blowup is None:
        return []
    params = {p.name: p for p in space.params}
    low, high = lr_test.prior()
    lrs = [lr_test.suggestion, lr_test.suggestion / LR_NEIGHBOUR_FACTOR, lr_test.suggestion * LR_NEIGHBOUR_FACTOR]
    lrs = [min(max(lr, low), high) for lr in lrs]
    if "lr" in params:
        lrs = [lr for lr in lrs if params["lr"].holds(lr)]
    decay = params.get("weight_decay")
    extra = {"weight_decay": RECIPE_WEIGHT_DECAY} if decay is not None and decay.holds(RECIPE_WEIGHT_DECAY) else {}
    return [{"lr": lr, **extra} for lr in dict.fromkeys(lrs)]


def fine_spec(spec: StudySpec, stage: int, previous: StudySpec, trials: list[FrozenTrial],
              direction: StudyDirection) -> StudySpec:
    """Stage ``stage`` (2 or more): TPE whose pruner stops no trial before the trusted epoch of the stage
    before (the first from which its trials ranked as they finished), over ranges narrowed around that
    stage's best trials at that epoch; or over its ranges as they were, when its pruner stopped trials before their
    ranking could be trusted, so that the best trials it kept were chosen by misleading early epochs."""
    plan = spec.stage_plan
    trusted = trusted_epoch(trials)
    misled = trusted is not None and stopped_before(trials, trusted)
    space = previous.space if misled else narrow(previous.space, trials, direction, keep=plan.keep, margin=plan.margin,
                                                 at_epoch=trusted, within=spec.space)
    return spec.replace(name=stage_name(spec.study_name, stage), strategy="tpe", n_trials=plan.fine_trials,
                        pruner=plan.fine_pruner, pruner_warmup=trusted or spec.pruner_warmup, lr_find=False,
                        space=space)


def stopped_before(trials: Sequence[FrozenTrial], epoch: int) -> bool:
    """Whether the stage's pruner stopped one of its own ``trials`` before ``epoch``. Read from what the trials
    record, not from the pruner's settings: a median pruner that learns its warm-up, or any pruner that happened
    to stop nothing early, kept its trials by no misleading epoch. Carried trials ran in a stage before, and a
    diverged trial was stopped by its own loss."""
    return any(t.state == TrialState.PRUNED and not is_carried(t) and read_trial(t).status == Status.PRUNED
               and t.last_step is not None and t.last_step < epoch for t in trials)


def ranked(trials: Sequence[FrozenTrial], direction: StudyDirection, at_epoch: int | None = None) -> list[FrozenTrial]:
    """Finished trials best first. With ``at_epoch``, those that reached it by their value there (a common epoch,
    so every trial that trained that far is judged alike), then the rest as below.

    Otherwise each is compared at an epoch both reached: the complete ones by value, then the pruned ones by
    how far they got and their value there (as Optuna's TPE ranks them). So a trial stopped early by a
    pruner never outranks one that trained on, however good its first epochs."""
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    there = [t for t in finished if at_epoch is not None and at_epoch in t.intermediate_values]
    rest = [t for t in finished if at_epoch is None or at_epoch not in t.intermediate_values]
    complete = [t for t in rest if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [t for t in rest if t.state == TrialState.PRUNED and t.intermediate_values]

    def how_far_and_how_good(trial: FrozenTrial) -> tuple[int, float]:
        last = max(trial.intermediate_values)
        return -last, sign * trial.intermediate_values[last]

    return (sorted(there, key=lambda t: sign * t.intermediate_values[at_epoch])  # type: ignore[index]
            + sorted(complete, key=lambda t: sign * t.value)  # type: ignore[operator]
            + sorted(pruned, key=how_far_and_how_good))


def narrow(space: SearchSpace, trials: list[FrozenTrial], direction: StudyDirection, *, keep: int,
           margin: float, at_epoch: int | None = None, within: SearchSpace | None = None) -> SearchSpace:
    """Each range set to the span of the ``keep`` best trials (ranked, at ``at_epoch`` when given) plus
    ``margin`` (decades on a log scale, a fraction of the range otherwise), never beyond the range it had, or
    with ``within``, never beyond that space's range (so a range can move past an edge its best trials
    reached); choices cut to those the best trials used. With no finished trial the space stays as it was."""
    best = ranked(trials, direction, at_epoch)[:keep]
    if not best:
        return space
    bounds = {p.name: p for p in (within or space).params}
    return SearchSpace(tuple(_narrow_param(p, [t.params[p.name] for t in best if p.name in t.params], margin,
                                           bounds.get(p.name, p))
                             for p in space.params))


def _narrow_param(param: ParamSpec, values: list[Any], margin: float, bounds: ParamSpec) -> ParamSpec:
    if not values:
        return param
    if param.choices is not None:
        return dataclasses.replace(param, choices=tuple(c for c in param.choices if c in values))
    assert param.low is not None and param.high is not None
    # A margin of at least a sliver, so that one best value with no margin still leaves a range.
    if param.log:
        widen = max(margin, _SLIVER)
        low, high = 10 ** (math.log10(min(values)) - widen), 10 ** (math.log10(max(values)) + widen)
    else:
        widen = max(margin, _SLIVER) * (param.high - param.low)
        low, high = min(values) - widen, max(values) + widen
    if param.kind is int:  # outward to whole numbers, so that the stored range still holds the best values
        low, high = math.floor(low), math.ceil(high)
    hard_low = bounds.low if bounds.low is not None else param.low
    hard_high = bounds.high if bounds.high is not None else param.high
    return dataclasses.replace(param, low=max(low, hard_low), high=min(high, hard_high))


def carried_trials(earlier: Sequence[tuple[str, Sequence[FrozenTrial]]], spec: StudySpec) -> list[FrozenTrial]:
    """The earlier stages' trials (``(study name, trials)`` each) whose params all lie in ``spec``'s
    ranges, as finished trials for the new stage to hold, so that its sampler models from its first
    trial instead of sampling at random (and its pruner compares against them).

    A trial that trained as many epochs as the stage does and completed is carried as COMPLETE; one of
    fewer epochs (the coarse stage's) or one that was pruned, as PRUNED with the epochs it reported,
    which is how Optuna's TPE ranks a trial known only part of the way: below every complete one, by
    its last value. Each is marked with where it came from (TrialRecord.carried_from).
    """
    params = {p.name: p for p in spec.space.params}
    own = spec.objective is not None  # the user's objective: its length is its own, its undeclared params its own
    carried = []
    for study_name, trials in earlier:
        for trial in trials:
            if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or is_carried(trial):
                continue  # a carried trial is carried from where it first ran, once
            if not trial.params or not all(params[name].holds(value) if name in params else own
                                           for name, value in trial.params.items()):
                continue
            stored = read_trial(trial)
            trained = own or (stored.config or {}).get("epochs") == spec.train.epochs
            full = trial.state == TrialState.COMPLETE and trained
            if not full and not trial.intermediate_values:
                continue  # nothing for a sampler to rank it by
            record = dataclasses.replace(stored, carried_from=f"{study_name} trial {trial.number}")
            carried.append(create_trial(
                state=TrialState.COMPLETE if full else TrialState.PRUNED, value=trial.value if full else None,
                params=dict(trial.params), distributions={name: params[name].distribution() if name in params
                                                          else trial.distributions[name] for name in trial.params},
                intermediate_values=dict(trial.intermediate_values), user_attrs={RECORD_ATTR: record.to_dict()}))
    return carried
