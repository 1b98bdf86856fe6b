"""LR range test: sweep the learning rate geometrically over a few batches and read the loss curve.

The sweep itself is a training loop; the suggestions are pure functions of the curve, so they can
be tested on curves whose answers are known.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import TaskData, place
from hpsearch.engine.devices import resolve_device
from hpsearch.engine.step import Stepper
from hpsearch.engine.task import build_model
from hpsearch.engine.training import check_batch_size, config_data
from hpsearch.errors import ConfigError

__all__ = ["LRFinderResult", "Suggestions", "lr_range_test", "smooth", "suggest"]

logger = logging.getLogger(__name__)

# The sweep stops once the smoothed loss exceeds this many times its best, after MIN_STEPS steps.
DIVERGE_FACTOR = 4.0
MIN_STEPS = 5
# Points ignored at each end when looking for the steepest slope: the start is noisy, the end explodes.
SKIP_START, SKIP_END = 5, 3
# Smoothing of the curve the suggestions are read from (applied forwards and backwards).
SUGGEST_BETA = 0.5
SLOPE_SPAN = 3
# The valley's descent starts and ends this fraction of the total drop away from its levels.
DESCENT_MARGIN = 0.1
# The loss has blown up once the smoothed curve is above this many times its minimum for good.
BLOWUP_FACTOR = 2.0
# A collapse: the loss fell by at least COLLAPSE_MIN_DROP of where it started, then climbed back up by
# COLLAPSE_RETURN of that drop (a network that died at a high lr predicts the class prior again: the
# chance level it started from). Its blow-up is the last point within COLLAPSE_NEAR of the drop above the
# minimum before that climb. Such a curve never reaches BLOWUP_FACTOR when its minimum is above half its start.
COLLAPSE_MIN_DROP, COLLAPSE_RETURN, COLLAPSE_NEAR = 0.05, 0.9, 0.25
# "valley" varied least across seeds and batch sizes on digits (0.03 decades of spread, against 0.44
# for steepest and 0.29 for divergence; scripts/lr_find_stability.py) and passes the synthetic tests.
DEFAULT_METHOD = "valley"
# How far below the suggestion the search range (prior) reaches. One decade was too little on the MNIST-shaped
# task of scripts/compare_strategies.py: its suggestion is the fastest descent of one short sweep, and the lr
# that is best after 10 epochs there (2e-4 to 4e-4, before it overfits) lay 15x below it, outside the range.
PRIOR_DECADES_BELOW = 2


@dataclass(frozen=True)
class Suggestions:
    """Learning rates read off a curve; None where the curve does not show that feature."""

    steepest: float | None
    divergence: float | None
    valley: float | None
    blowup: float | None  # the LR at the lowest smoothed loss, after which the loss rises

    def pick(self, method: str = DEFAULT_METHOD) -> tuple[str, float] | None:
        """The chosen suggestion as (method, lr), falling back to the others when it is missing."""
        order = [method, *(m for m in ("valley", "divergence", "steepest") if m != method)]
        return next(((m, getattr(self, m)) for m in order if getattr(self, m) is not None), None)


@dataclass(frozen=True)
class LRFinderResult:
    """The sweep's curve, its suggestions, and where (if anywhere) it diverged."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: Suggestions
    suggestion: float | None
    method: str
    diverged_at: float | None
    reason: str | None

    def prior(self) -> tuple[float, float]:
        """A log-scale lr search range: PRIOR_DECADES_BELOW orders of magnitude below the suggestion up to
        just under the blow-up point; the whole swept range when the curve shows neither."""
        if self.suggestion is None or self.suggestions.blowup is None:
            return self.lrs[0], self.lrs[-1]
        high = 0.9 * self.suggestions.blowup
        return max(min(self.suggestion, high) / 10**PRIOR_DECADES_BELOW, self.lrs[0]), high

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite losses become None); ``prior`` is added for readers."""
        values = asdict(self)
        values["losses"] = [loss if math.isfinite(loss) else None for loss in self.losses]
        values["smoothed"] = [loss if math.isfinite(loss) else None for loss in self.smoothed]
        values["prior"] = list(self.prior())
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LRFinderResult:
        """The inverse of ``to_dict`` (as stored with a study)."""
        fields = {key: value for key, value in values.items() if key != "prior"}
        fields["suggestions"] = Suggestions(**fields["suggestions"])
        for key in ("losses", "smoothed"):
            fields[key] = [math.nan if loss is None else loss for loss in fields[key]]
        return cls(**fields)


def lr_range_test(
    config: TrainConfig,
    data: TaskData | None = None,
    device: torch.device | str | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    steps: int = 100,
    smoothing: float = 0.9,
    method: str = DEFAULT_METHOD,
    model: nn.Module | None = None,
) -> LRFinderResult:
    """Run the sweep with ``config``'s model, loss, optimizer, batch size and weight decay; ``config.lr`` is
    ignored.

    A ``model`` passed in is trained during the sweep and restored afterwards, so the caller gets it
    back unchanged.
    """
    _check_arguments(start_lr, end_lr, steps, smoothing, method)
    device = resolve_device(config.device) if device is None else torch.device(device)
    data = config_data(config, device) if data is None else place(data, device, config.feed, config.num_workers)
    check_batch_size(config.batch_size, data)
    torch.manual_seed(config.seed)
    if model is None:
        model = build_model(config, data)
        saved = None
    else:
        saved = copy.deepcopy(model.state_dict())
    model.to(device)
    try:
        lrs, losses, diverged_at = _sweep(model, config.replace(lr=start_lr), data, start_lr, end_lr, steps,
                                          smoothing)
    finally:
        if saved is not None:
            model.load_state_dict(saved)
    return _result(lrs, losses, diverged_at, smoothing, method)


def smooth(losses: list[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average, as the sweep computes it step by step."""
    average, smoothed = 0.0, []
    for step, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta**step))
    return smoothed


def suggest(lrs: list[float], losses: list[float]) -> Suggestions:
    """Read suggestions off a curve of (lr, loss) points from a geometric sweep.

    The curve is smoothed lightly forwards and backwards (SUGGEST_BETA), so that features stay at
    the LR where they happened: the sweep's one-sided EMA would report them about
    beta/(1-beta) steps late, a factor of several in LR.
    """
    return _read_curve(lrs, losses)[0]


def _read_curve(lrs: list[float], losses: list[float]) -> tuple[Suggestions, float | None]:
    """The suggestions, and the lr at which the curve left its minimum for good (blew up or collapsed back
    to its starting level), None when it never did."""
    # A non-finite loss (the sweep stops at the first) is the highest of blow-ups, not a point to drop: dropped, a
    # loss that went from its lowest straight to inf or NaN would read as a curve that never blew up.
    values = np.array([loss if math.isfinite(loss) else math.inf for _, loss in zip(lrs, losses, strict=True)])
    if len(values) < SKIP_START + SKIP_END + 2 * SLOPE_SPAN + 1 or not math.isfinite(values[0]):
        return Suggestions(None, None, None, None), None
    log_lrs = np.log10(lrs)
    # Cap the explosion at the level where the sweep stops (4x the best of its EMA): smoothing
    # backwards would otherwise smear a loss of 1e6 over a decade of the curve before it.
    values = np.minimum(values, DIVERGE_FACTOR * np.minimum.accumulate(smooth(list(values))))
    curve = np.array(smooth(smooth(list(values), SUGGEST_BETA)[::-1], SUGGEST_BETA)[::-1])
    last_near, left = _blowup(curve)
    # Slope over a baseline of 2*SLOPE_SPAN steps: a derivative amplifies noise, a wider baseline tames it.
    # Only up to the blow-up: no suggestion lies past the point where the loss left its minimum.
    slope = np.full(len(curve), np.inf)
    inner = np.arange(max(SKIP_START, SLOPE_SPAN), min(last_near + 1, len(curve) - max(SKIP_END, SLOPE_SPAN)))
    slope[inner] = ((curve[inner + SLOPE_SPAN] - curve[inner - SLOPE_SPAN])
                    / (log_lrs[inner + SLOPE_SPAN] - log_lrs[inner - SLOPE_SPAN]))
    steepest = int(np.argmin(slope))
    blowup = float(10 ** log_lrs[last_near]) if left is not None else None
    start, end = _descent(curve[:last_near + 1])
    suggestions = Suggestions(
        steepest=float(10 ** log_lrs[steepest]) if slope[steepest] < 0 else None,
        divergence=blowup / 10 if blowup is not None else None,
        valley=float(10 ** ((log_lrs[start] + log_lrs[end]) / 2)) if end - start >= 2 else None,
        blowup=blowup,
    )
    return suggestions, float(10 ** log_lrs[left]) if left is not None else None


def _blowup(curve: np.ndarray) -> tuple[int, int | None]:
    """The index of the last point still near the minimum, and of the first after it that left the minimum for
    good (None, with the last index, when the curve never did): above BLOWUP_FACTOR times the minimum, or back
    at its starting level after a real fall (a collapse; see COLLAPSE_RETURN)."""
    lowest = int(np.argmin(curve))
    # The last crossing, not the first: it skips the noisy spikes of a plateau that a first-crossing rule would take.
    above = curve > BLOWUP_FACTOR * curve[lowest]
    rises = np.flatnonzero(~above[:-1] & above[1:])
    if len(rises):
        return int(rises[-1]), int(rises[-1]) + 1
    start_level = float(np.median(curve[:SKIP_START]))
    drop = start_level - float(curve[lowest])
    if drop < COLLAPSE_MIN_DROP * abs(start_level):
        return len(curve) - 1, None
    back = np.flatnonzero(curve[lowest:] >= curve[lowest] + COLLAPSE_RETURN * drop)
    if not len(back):
        return len(curve) - 1, None
    returned = lowest + int(back[0])
    near = np.flatnonzero(curve[:returned] <= curve[lowest] + COLLAPSE_NEAR * drop)
    return int(near[-1]), returned


def _sweep(model: nn.Module, config: TrainConfig, data: TaskData, start_lr: float, end_lr: float, steps: int,
           beta: float) -> tuple[list[float], list[float], float | None]:
    """Train one batch per LR with the engine's own step, cycling reshuffled data, until the end or a blow-up."""
    stepper = Stepper(model, config, torch.device(data.device))
    optimizer = stepper.optimizer
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=(end_lr / start_lr) ** (1 / (steps - 1)))
    generator = data.generator(config.seed)
    batches = _full_batches(data, config.batch_size, generator)
    lrs: list[float] = []
    losses: list[float] = []
    average, best = 0.0, math.inf
    model.train()
    for step in range(1, steps + 1):
        x, y = next(batches)
        lr = optimizer.param_groups[0]["lr"]
        loss, _ = stepper.step(x, y)
        scheduler.step()
        value = loss.item()  # every step: the sweep must react to a blow-up at once
        lrs.append(lr)
        losses.append(value)
        if not math.isfinite(value):
            return lrs, losses, lr
        average = beta * average + (1 - beta) * value
        smoothed = average / (1 - beta**step)
        best = min(best, smoothed)
        if step > MIN_STEPS and smoothed > DIVERGE_FACTOR * best:
            return lrs, losses, lr
    return lrs, losses, None


def _full_batches(data: TaskData, batch_size: int, generator: torch.Generator,
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Full batches for ever, reshuffling each pass (a short last batch would be a noisier point)."""
    while True:
        for x, y in data.train_batches(batch_size, generator):
            if len(x) == batch_size:
                yield x, y


def _result(lrs: list[float], losses: list[float], diverged_at: float | None, beta: float,
            method: str) -> LRFinderResult:
    suggestions, left_at = _read_curve(lrs, losses)
    picked = suggestions.pick(method)
    reason = None
    if diverged_at is None and left_at is not None:
        # The sweep's own stop (DIVERGE_FACTOR on its EMA) missed it: a collapse back to the starting level, or a
        # climb to BLOWUP_FACTOR short of DIVERGE_FACTOR. It is divergence all the same.
        diverged_at = left_at
        reason = (f"the loss rose away from its lowest for good by lr {left_at:.3g} (back to where it started, or "
                  f"to {BLOWUP_FACTOR:g}x its lowest): taken as divergence, the search range stops below lr "
                  f"{suggestions.blowup:.3g}")
        logger.warning(reason)
    elif diverged_at is None:
        reason = "the loss never diverged over the swept range: the search range is the whole sweep"
        logger.warning(reason)
    if picked is None:
        reason = "the loss never fell over the swept range: no suggestion"
        logger.warning(reason)
    return LRFinderResult(lrs=lrs, losses=losses, smoothed=smooth(losses, beta), suggestions=suggestions,
                          suggestion=picked[1] if picked else None, method=picked[0] if picked else method,
                          diverged_at=diverged_at, reason=reason)


def _descent(curve: np.ndarray) -> tuple[int, int]:
    """First and last index of the main descent: from where the curve leaves its starting level
    (by DESCENT_MARGIN of the drop) to where it comes within that margin of its minimum."""
    lowest = int(np.argmin(curve))
    top = float(curve[: lowest + 1].max())
    drop = top - float(curve[lowest])
    if drop <= 0:
        return lowest, lowest
    high_points = np.flatnonzero(curve[: lowest + 1] >= top - DESCENT_MARGIN * drop)
    low_points = np.flatnonzero(curve[: lowest + 1] <= curve[lowest] + DESCENT_MARGIN * drop)
    return int(high_points[-1]), int(low_points[0])


def _check_arguments(start_lr: float, end_lr: float, steps: int, smoothing: float, method: str) -> None:
    if not (start_lr > 0 and math.isfinite(end_lr) and start_lr < end_lr):
        raise ConfigError(f"start_lr must be > 0 and below end_lr, got start_lr={start_lr:g} end_lr={end_lr:g}")
    if steps < 10:
        raise ConfigError(f"steps must be >= 10, got {steps}")
    if not 0 <= smoothing < 1:
        raise ConfigError(f"smoothing must be in [0, 1), got {smoothing}")
    if method not in ("steepest", "divergence", "valley"):
        raise ConfigError(f"method must be steepest, divergence or valley, got {method!r}")
