"""What went wrong, in plain words: the label of one run from its curves (hpsearch.search.advice turns the
stored trials' labels into counts and advice on the ranges).

Labels, tried in this order, the first rule that fires wins: DIVERGING (the run blew up, or its training
loss climbs well above its best), STUCK (training loss barely moved, or the run ended at the chance level:
a training loss no better than predicting the class shares, or a validation accuracy no better than
predicting one class, whatever it fell from), OSCILLATING (training loss went up again in several epochs,
by more than noise), OVERFITTING (the training data is memorized, its loss near zero, while the validation
loss stays well above it; or validation loss rose well above its best, by more than noise, while training
loss kept falling), else OK. So a curve with two problems gets the earlier label (one that climbs and
overfits is DIVERGING, one that oscillates and overfits is OSCILLATING), and within a label the rule named
is the earlier one in this list. A run of one epoch that did not blow up is OK: too short to judge.
Each comes with the rule and the numbers that fired it. The chance rule needs the task's chance level
(hpsearch.engine.task.chance_level); without it (a custom loss, a history alone) that rule is skipped.

A run that is not hpsearch's loop (the user's Optuna objective) leaves only the one curve it reported, whatever it
measures: diagnose_reported labels that from its own scale, once there are MIN_REPORTS points of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

from hpsearch.status import Status

if TYPE_CHECKING:
    from hpsearch.engine.task import ChanceLevel

__all__ = ["LABELS", "MIN_REPORTS", "Diagnosis", "diagnose", "diagnose_reported"]

LABELS = ("DIVERGING", "STUCK", "OSCILLATING", "OVERFITTING", "OK")
STUCK_IMPROVEMENT = 0.05  # training loss fell by less than this share of its first value
CLIMB_FACTOR = 1.5  # the last training loss over its best: diverging
# The floors below are shares of the loss's scale: the chance loss when known (what an untrained model scores), else
# the first epoch's mean training loss. An epoch whose training loss rose by more than OSCILLATION_RISE of itself and
# by more than OSCILLATION_FLOOR of the scale counts as a rise: an lr that overshoots makes the loss jump on its own
# scale, while a loss already ~0 (a memorized training set, 0.0020 -> 0.0022) moves 5% from batch noise alone.
OSCILLATION_RISE, OSCILLATION_FLOOR = 0.05, 0.01
# Overfitting: the last validation loss over OVERFIT_FACTOR x its best, and above it by more than OVERFIT_FLOOR of
# the scale, while training loss kept falling. The floor keeps the label for a rise that matters against what the
# run learned: a validation loss of 0.07 that ends at 0.09 while the accuracy still climbs is the epoch-to-epoch
# noise of a few hundred validation samples, not a model that stopped generalizing.
OVERFIT_FACTOR, OVERFIT_FLOOR = 1.2, 0.05
# Overfitting is also the textbook gap (Goodfellow et al., Deep Learning, 5.2): a model that memorized its training
# data, the last training loss under MEMORIZED of the scale, while the validation loss stays above it by more than
# OVERFIT_FLOOR of the scale. A small training set trained long shows this without the validation loss climbing
# (with Adam the gradients vanish once the training loss is ~0); a run that fits its data and generalizes (a CNN on
# digits: training loss 0.006, validation 0.027, chance log(10) = 2.3) has a gap of noise.
MEMORIZED = 0.02
# At the chance level: a last training loss above (1 - CHANCE_LOSS_SHARE) x the chance loss, or a last validation
# accuracy within CHANCE_ACCURACY_SHARE of the way from the chance accuracy to 100%.
CHANCE_LOSS_SHARE, CHANCE_ACCURACY_SHARE = 0.05, 0.1
# A reported curve (diagnose_reported) is judged from this many points: fewer say nothing about its shape.
MIN_REPORTS = 3
# Of a reported curve's gain (its first value to its best): given back by the end, over GIVEN_BACK_SHARE of it, it
# worsened after its best; lost, over SETBACK_SHARE of it, in each of two or more steps, it swung.
GIVEN_BACK_SHARE, SETBACK_SHARE = 0.5, 0.2


@dataclass(frozen=True)
class Diagnosis:
    label: str
    rule: str

    def to_dict(self) -> dict[str, str]:
        return {"label": self.label, "rule": self.rule}


def diagnose(history: Sequence[Mapping[str, float | None]], status: str = Status.COMPLETED,
             chance: ChanceLevel | None = None) -> Diagnosis:
    """The label of one run from its per-epoch ``train_loss``, ``val_loss`` and ``val_acc``, its status and
    the task's ``chance`` level (None: unknown, the chance rule is skipped)."""
    # A stored history holds None where a loss was not finite.
    train, val = _series(history, "train_loss"), _series(history, "val_loss")
    if status == Status.DIVERGED or not all(math.isfinite(v) for v in train + val):
        return Diagnosis("DIVERGING", "the run diverged (non-finite or exploding loss)")
    if len(train) < 2:
        return Diagnosis("OK", "one epoch: too short to judge")
    best = min(train)
    if train[-1] > CLIMB_FACTOR * best:
        return Diagnosis("DIVERGING", f"training loss climbed to {train[-1]:.3g}, over {CLIMB_FACTOR}x its best "
                                      f"{best:.3g}")
    if train[-1] > (1 - STUCK_IMPROVEMENT) * train[0]:
        return Diagnosis("STUCK", f"training loss moved from {train[0]:.3g} to {train[-1]:.3g}, less than "
                                  f"{STUCK_IMPROVEMENT:.0%}")
    at_chance = _at_chance(train[-1], _series(history, "val_acc")[-1], chance)
    if at_chance:
        return Diagnosis("STUCK", at_chance)
    scale = chance.loss if chance is not None and chance.loss else train[0]
    rises = sum(after > (1 + OSCILLATION_RISE) * before and after - before > OSCILLATION_FLOOR * scale
                for before, after in pairwise(train))
    if rises >= 2:
        return Diagnosis("OSCILLATING", f"training loss rose by over {OSCILLATION_RISE:.0%} (and over "
                                        f"{OSCILLATION_FLOOR * scale:.3g}) in {rises} of {len(train) - 1} epochs")
    overfitting = _overfitting(train, val, scale)
    if overfitting:
        return Diagnosis("OVERFITTING", overfitting)
    return Diagnosis("OK", "loss fell steadily")


def _overfitting(train: list[float], val: list[float], scale: float) -> str | None:
    """Why a run overfits, from its losses and the ``scale`` its floors are measured against, or None."""
    best_val = min(val)
    if train[-1] < MEMORIZED * scale and val[-1] - train[-1] > OVERFIT_FLOOR * scale:
        return (f"training loss fell to {train[-1]:.3g}, under {MEMORIZED:.0%} of {scale:.3g} (memorized), while "
                f"validation loss stayed at {val[-1]:.3g}")
    if (val[-1] > OVERFIT_FACTOR * best_val and val[-1] - best_val > OVERFIT_FLOOR * scale
            and train[-1] < train[val.index(best_val)]):
        return (f"validation loss rose to {val[-1]:.3g} from its best {best_val:.3g} at epoch "
                f"{val.index(best_val) + 1} while training loss kept falling")
    return None


def _series(history: Sequence[Mapping[str, float | None]], key: str) -> list[float]:
    """One metric per epoch, NaN where it is missing or was stored as None (not finite, or no accuracy)."""
    return [math.nan if (value := epoch.get(key)) is None else float(value) for epoch in history]


def _at_chance(train_loss: float, val_acc: float, chance: ChanceLevel | None) -> str | None:
    """Why a run that ended with ``train_loss`` and ``val_acc`` learned nothing, or None when it beats chance."""
    if chance is None:
        return None
    if chance.loss is not None and chance.loss > 0 and train_loss > (1 - CHANCE_LOSS_SHARE) * chance.loss:
        return (f"at the chance level: training loss ended at {train_loss:.3g}, within {CHANCE_LOSS_SHARE:.0%} of "
                f"{chance.loss:.3g}, what predicting the class shares (or the mean) scores")
    if chance.accuracy is not None and math.isfinite(val_acc):
        ceiling = chance.accuracy + CHANCE_ACCURACY_SHARE * (1 - chance.accuracy)
        if val_acc <= ceiling:
            return (f"at the chance level: validation accuracy ended at {val_acc:.1%}, at most {ceiling:.1%} "
                    f"(predicting the largest class scores {chance.accuracy:.1%})")
    return None


def diagnose_reported(values: Sequence[float], maximize: bool) -> Diagnosis | None:
    """The label of a curve a run reported (one value per step, higher better when ``maximize``), measured against
    its own gain, as nothing else is known of it: DIVERGING when a value was not finite or it ended worse than it
    began, STUCK when it never bettered its first value, OVERFITTING when it gave back most of its gain after its
    best (a validation curve's sign of it), OSCILLATING when it lost a good part of its gain in several steps, else
    OK. None below MIN_REPORTS values."""
    if len(values) < MIN_REPORTS:
        return None
    bad = next((v for v in values if not math.isfinite(v)), None)
    if bad is not None:
        return Diagnosis("DIVERGING", f"it reported {bad}")
    loss = [-v if maximize else v for v in values]  # lower is better from here on
    first, best, last = loss[0], min(loss), loss[-1]
    at = loss.index(best)
    shown = (values[0], values[at], values[-1])  # as reported
    if last > first:
        return Diagnosis("DIVERGING", f"it ended at {shown[2]:.4g}, worse than its first report {shown[0]:.4g}")
    gain = first - best
    if gain <= 0:
        return Diagnosis("STUCK", f"it never bettered its first report {shown[0]:.4g} in {len(values)} reports")
    if last - best > GIVEN_BACK_SHARE * gain:
        return Diagnosis("OVERFITTING", f"it fell back from its best {shown[1]:.4g} at report {at + 1} to "
                                        f"{shown[2]:.4g}, over {GIVEN_BACK_SHARE:.0%} of its gain")
    setbacks = sum(after - before > SETBACK_SHARE * gain for before, after in pairwise(loss))
    if setbacks >= 2:
        return Diagnosis("OSCILLATING", f"it lost over {SETBACK_SHARE:.0%} of its gain in {setbacks} of "
                                        f"{len(values) - 1} steps")
    return Diagnosis("OK", f"it went from {shown[0]:.4g} to its best {shown[1]:.4g}")
