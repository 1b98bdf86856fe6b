"""Learning-rate schedules stepped once per optimizer step, built from torch's schedulers."""

from __future__ import annotations

import functools

import torch
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
    StepLR,
)

from hpsearch.choices import SCHEDULES

__all__ = ["SCHEDULES", "build_scheduler", "lr_multipliers"]

# LinearLR cannot start from exactly zero; warmup starts at this fraction of the peak.
_WARMUP_START = 1e-3


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup: float = 0.05,
    min_lr_ratio: float = 0.1,
    step_size: int = 5,
    gamma: float = 0.1,
    decay_fraction: float = 0.2,
) -> LRScheduler:
    """A per-step scheduler for ``optimizer`` over ``total_steps``.

    - constant: the peak lr throughout.
    - step: multiply by ``gamma`` every ``step_size`` epochs.
    - cosine: cosine from the peak to ``min_lr_ratio`` times the peak.
    - warmup-cosine: linear warmup over ``warmup`` of the steps, then cosine to the floor.
    - wsd (warmup-stable-decay): warmup, hold the peak, then decay linearly to the floor over the
      last ``decay_fraction`` of the steps.
    """
    # Each decay ends one step early so that the last optimizer step runs at the floor.
    peak = optimizer.param_groups[0]["lr"]
    warmup_steps = round(warmup * total_steps)
    if schedule == "constant":
        return ConstantLR(optimizer, factor=1.0, total_iters=0)
    if schedule == "step":
        return StepLR(optimizer, step_size=step_size * steps_per_epoch, gamma=gamma)
    if schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(1, total_steps - 1), eta_min=min_lr_ratio * peak)
    if schedule == "warmup-cosine":
        cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps - 1), eta_min=min_lr_ratio * peak)
        return _after_warmup(optimizer, warmup_steps, [cosine], [])
    if schedule == "wsd":
        decay_steps = max(1, round(decay_fraction * total_steps))
        stable_steps = max(0, total_steps - warmup_steps - decay_steps)
        stable = ConstantLR(optimizer, factor=1.0, total_iters=stable_steps)
        decay = LinearLR(optimizer, start_factor=1.0, end_factor=max(min_lr_ratio, _WARMUP_START),
                         total_iters=max(1, decay_steps - 1))
        return _after_warmup(optimizer, warmup_steps, [stable, decay], [stable_steps])
    raise ValueError(f"unknown schedule {schedule!r}")  # TrainConfig validated the name already


def lr_multipliers(schedule: str, *, total_steps: int, steps_per_epoch: int, **options: float) -> list[float]:
    """The lr at each step as a fraction of the peak: the curve a schedule draws, for tests, plots and the
    batched engine (whose members take ``peak * multiplier`` instead of stepping a scheduler each)."""
    return list(_multipliers(schedule, total_steps, steps_per_epoch, tuple(sorted(options.items()))))


@functools.lru_cache(maxsize=64)
def _multipliers(schedule: str, total_steps: int, steps_per_epoch: int,
                 options: tuple[tuple[str, float], ...]) -> tuple[float, ...]:
    """Cached: the trials of one study share a schedule, and stepping torch's scheduler costs ~50 us a step."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = build_scheduler(optimizer, schedule, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                                **dict(options))  # type: ignore[arg-type]
    multipliers = []
    for _ in range(total_steps):
        multipliers.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return tuple(multipliers)


def _after_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, schedulers: list[LRScheduler],
                  milestones: list[int]) -> LRScheduler:
    """Chain a linear warmup of ``warmup_steps`` before ``schedulers`` (none when it is zero)."""
    if warmup_steps == 0:
        if len(schedulers) == 1:
            return schedulers[0]
        return SequentialLR(optimizer, schedulers, milestones)
    warm = LinearLR(optimizer, start_factor=_WARMUP_START, end_factor=1.0, total_iters=warmup_steps)
    shifted = [warmup_steps + m for m in milestones]
    return SequentialLR(optimizer, [warm, *schedulers], [warmup_steps, *shifted])
