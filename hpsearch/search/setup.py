"""One setup for every trial loop (sequential, batched, each worker): what a study needs before its trials.

Both loops, and every worker, start the same way: interrupted trials queued again, the trials of dead
workers failed (their retries queued), the sampler seeded, the pruner set. Written once so that the
loops cannot drift apart (they had: the batched loop reseeded a grid, whose order must stay fixed).
"""

from __future__ import annotations

import warnings

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import fail_stale_trials

from hpsearch.search.budget import budget, requeue_interrupted
from hpsearch.search.pruners import make_pruner
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages.optuna_private import read_trials_locally
from hpsearch.search.strategies import make_sampler

__all__ = ["WORKER_SEED_STRIDE", "fail_stale_trials_quietly", "prepare_study", "sampler_seed"]

# Seeds of different workers are this far apart, so that two never draw the same random points.
WORKER_SEED_STRIDE = 7919


def sampler_seed(spec: StudySpec, finished: int, worker: int = 0) -> int:
    """A resumed study, and each worker, get a seed of their own so that random picks do not repeat;
    except a grid, whose seed orders the grid and so must be the same in every worker and run."""
    return spec.seed if spec.strategy == "grid" else spec.seed + finished + WORKER_SEED_STRIDE * worker


def prepare_study(study: optuna.Study, spec: StudySpec, worker: int = 0) -> int:
    """Requeue interrupted trials, fail dead workers' trials, seed the sampler and set the pruner; returns the
    number of finished trials the study holds. An RDB study reads its finished trials through a cache that
    one count keeps honest (the median pruner reads them every epoch)."""
    read_trials_locally(study)
    requeue_interrupted(study)
    fail_stale_trials_quietly(study)
    finished = budget(study).finished
    study.sampler = make_sampler(spec.strategy, spec.space, seed=sampler_seed(spec, finished, worker),
                                 grid_points=spec.grid_points, n_trials=spec.total_trials)
    epochs = spec.train.epochs if spec.objective is None else None  # an objective's steps are its own
    study.pruner = make_pruner(spec.pruner, epochs=epochs, warmup=spec.pruner_warmup)
    return finished


def fail_stale_trials_quietly(study: optuna.Study) -> None:
    """Optuna's fail_stale_trials without its experimental-feature warning (heartbeats are used on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fail_stale_trials(study)
