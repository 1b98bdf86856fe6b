"""Strategy name → Optuna sampler."""

from __future__ import annotations

from optuna.samplers import BaseSampler, GridSampler, RandomSampler, TPESampler

from hpsearch.search.space import SearchSpace

__all__ = ["make_sampler"]

# TPE samples at random until it has this many trials to model (Optuna's default is 10; our
# default budget of 30 trials leaves it 20 guided ones).
TPE_STARTUP_TRIALS = 10


def make_sampler(strategy: str, space: SearchSpace, *, seed: int, grid_points: int = 5) -> BaseSampler:
    """A seeded sampler: grid (log-spaced points per parameter), random, or multivariate TPE."""
    if strategy == "grid":
        return GridSampler(space.grid(grid_points), seed=seed)
    if strategy == "random":
        return RandomSampler(seed=seed)
    if strategy == "tpe":
        # constant_liar: trials running in other workers count as bad, so workers spread out; with
        # one process nothing is running at a sample and it changes nothing.
        return TPESampler(seed=seed, multivariate=True, n_startup_trials=TPE_STARTUP_TRIALS, constant_liar=True)
    raise ValueError(f"unknown strategy {strategy!r}")  # StudySpec validated the name already
