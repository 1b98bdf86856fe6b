"""Pruner name → Optuna pruner; steps are epochs."""

from __future__ import annotations

from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner, SuccessiveHalvingPruner

__all__ = ["make_pruner"]


def make_pruner(name: str, *, epochs: int, warmup: int | None = None) -> BasePruner:
    """The Optuna pruner named ``name``, its arguments fitted to trials that report once per epoch, stopping
    no trial before epoch ``warmup`` (default 1; at most ``epochs``): median's warm-up, the first rung of
    hyperband and asha.

    median: stop a trial whose epoch value is worse than the median of earlier trials at that epoch,
    once 5 trials have finished and after its first epoch. hyperband: successive halving over 1..epochs.
    asha: asynchronous successive halving, rungs at epochs 1, 3, 9, …: a trial goes on only when it is
    in the best third of the trials that reached its rung before it, so nothing waits (``--jobs`` and
    ``--batch`` alike). Not Optuna's defaults: ``min_resource=1``, as the "auto" estimate waits for a
    finished trial and lets the first ones run unpruned; ``reduction_factor=3``, hyperband's, so the two
    compare rung for rung; ``min_early_stopping_rate=0``, so the first rung is epoch 1, median's warm-up.
    """
    first = min(max(warmup or 1, 1), epochs)
    if name == "median":
        return MedianPruner(n_startup_trials=5, n_warmup_steps=first)
    if name == "hyperband":
        return HyperbandPruner(min_resource=first, max_resource=epochs)
    if name == "asha":
        return SuccessiveHalvingPruner(min_resource=first, reduction_factor=3, min_early_stopping_rate=0)
    if name == "none":
        return NopPruner()
    raise ValueError(f"unknown pruner {name!r}")  # StudySpec validated the name already
