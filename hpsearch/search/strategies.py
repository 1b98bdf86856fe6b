"""Strategy name → Optuna sampler."""

from __future__ import annotations

from optuna.samplers import BaseSampler, GridSampler, RandomSampler, TPESampler

from hpsearch.search.space import SearchSpace

__all__ = ["make_sampler", "tpe_startup_trials"]

# TPE samples at random until it has this many finished trials to model (Optuna's default is 10; our
# default budget of 30 trials leaves it 20 guided ones). A smaller study gets a third of its trials.
TPE_STARTUP_TRIALS = 10
MIN_STARTUP_TRIALS = 2


def tpe_startup_trials(n_trials: int) -> int:
    """TPE's random start-up for a study of ``n_trials``: a third of them, from 2 to 10. A fixed 10 left a
    9-trial coarse-to-fine stage random throughout; finished trials it holds (carried over) count too."""
    return max(MIN_STARTUP_TRIALS, min(TPE_STARTUP_TRIALS, n_trials // 3))


def make_sampler(strategy: str, space: SearchSpace, *, seed: int, grid_points: int = 5,
                 n_trials: int = 3 * TPE_STARTUP_TRIALS) -> BaseSampler:
    """A seeded sampler: grid (log-spaced points per parameter), random, or multivariate TPE with a
    start-up sized to the study's ``n_trials``."""
    if strategy == "grid":
        return GridSampler(space.grid(grid_points), seed=seed)
    if strategy == "random":
        return RandomSampler(seed=seed)
    if strategy == "tpe":
        # constant_liar: trials running in other workers count as bad, so workers spread out; with
        # one process nothing is running at a sample and it changes nothing.
        return TPESampler(seed=seed, multivariate=True, n_startup_trials=tpe_startup_trials(n_trials),
                           constant_liar=True)
    raise ValueError(f"unknown strategy {strategy!r}")  # StudySpec validated the name already
