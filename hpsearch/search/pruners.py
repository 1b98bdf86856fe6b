"""Pruner name → Optuna pruner; steps are epochs."""

from __future__ import annotations

from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner

__all__ = ["make_pruner"]


def make_pruner(name: str, *, epochs: int) -> BasePruner:
    """median: stop a trial whose epoch value is worse than the median of earlier trials at that epoch,
    once 5 trials have finished and after its first epoch. hyperband: successive halving over 1..epochs."""
    if name == "median":
        return MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "hyperband":
        return HyperbandPruner(min_resource=1, max_resource=epochs)
    if name == "none":
        return NopPruner()
    raise ValueError(f"unknown pruner {name!r}")  # StudySpec validated the name already
