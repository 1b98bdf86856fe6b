"""Coarse-to-fine: the LR range test seeds the lr range, then each stage narrows every range to
the span of the best trials before it. Pure functions of specs and trials; the runner runs them."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpsearch.lr_finder import LRFinderResult
from hpsearch.search.space import ParamSpec, SearchSpace
from hpsearch.spec import StudySpec

__all__ = ["coarse_spec", "fine_spec", "narrow", "stage_name", "with_lr_prior"]

_SLIVER = 0.005  # decades on a log scale, a fraction of the range otherwise


def stage_name(study: str, stage: int) -> str:
    """``NAME/1-coarse``, ``NAME/2-fine``, …: one Optuna study per stage, grouped by the prefix."""
    return f"{study}/{stage}-{'coarse' if stage == 1 else 'fine'}"


def with_lr_prior(spec: StudySpec, lr_test: LRFinderResult) -> StudySpec:
    """``spec`` with its lr range taken from the LR range test (log scale). A test whose curve
    showed no blow-up or suggested nothing says little about the range: the spec's own lr range stays."""
    if lr_test.suggestions.blowup is None or lr_test.suggestion is None:
        return spec
    low, high = lr_test.prior()
    return spec.replace(space=spec.space.replace(ParamSpec("lr", low, high, log=True)))


def coarse_spec(spec: StudySpec, lr_test: LRFinderResult) -> StudySpec:
    """Stage 1: the LR prior, the other ranges as given, a short budget of fewer epochs."""
    plan = spec.coarse_to_fine
    epochs = plan.coarse_epochs or max(1, spec.train.epochs // 3)
    return with_lr_prior(spec, lr_test).replace(
        name=stage_name(spec.study_name, 1), strategy=plan.coarse_sampler, n_trials=plan.coarse_trials,
        lr_find=False, train=spec.train.replace(epochs=epochs))


def fine_spec(spec: StudySpec, stage: int, previous: SearchSpace, trials: list[FrozenTrial],
              direction: StudyDirection) -> StudySpec:
    """Stage ``stage`` (2 or more): TPE over ranges narrowed around the previous stage's best trials."""
    plan = spec.coarse_to_fine
    return spec.replace(name=stage_name(spec.study_name, stage), strategy="tpe", n_trials=plan.fine_trials,
                        lr_find=False, space=narrow(previous, trials, direction, keep=plan.keep, margin=plan.margin))


def narrow(space: SearchSpace, trials: list[FrozenTrial], direction: StudyDirection, *, keep: int,
           margin: float) -> SearchSpace:
    """Each range shrunk to the span of the ``keep`` best complete trials plus ``margin`` (decades on a
    log scale, a fraction of the range otherwise), never beyond the range it had; choices cut to
    those the best trials used. With no complete trial the space stays as it was."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = sorted(complete, key=lambda t: t.value, reverse=direction == StudyDirection.MAXIMIZE)[:keep]
    if not best:
        return space
    return SearchSpace(tuple(_narrow_param(p, [t.params[p.name] for t in best if p.name in t.params], margin)
                             for p in space.params))


def _narrow_param(param: ParamSpec, values: list[Any], margin: float) -> ParamSpec:
    if not values:
        return param
    if param.choices is not None:
        return ParamSpec(param.name, choices=tuple(c for c in param.choices if c in values))
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
    return dataclasses.replace(param, low=max(low, param.low), high=min(high, param.high))
