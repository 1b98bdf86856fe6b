"""One setup for the sequential and the batched loop: the same seeds, pruner and requeued trials."""

from __future__ import annotations

import pytest

from hpsearch.search.setup import sampler_seed
from hpsearch.search.spec import StudySpec


@pytest.mark.parametrize(("finished", "worker"), [(0, 0), (5, 0), (0, 3), (7, 2)])
def test_a_grid_keeps_its_seed_in_every_worker_and_run(finished: int, worker: int) -> None:
    assert sampler_seed(StudySpec(strategy="grid", seed=4), finished, worker) == 4


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_other_samplers_get_a_seed_per_resume_and_worker(strategy: str) -> None:
    """The first run's first worker takes the spec's seed; a resume moves it on by the trials finished; each worker
    is 7919 seeds (a prime) from the one before."""
    spec = StudySpec(strategy=strategy, seed=4)
    assert sampler_seed(spec, 0, 0) == 4
    assert sampler_seed(spec, 5, 0) == 9
    assert sampler_seed(spec, 5, 2) == 15_847  # 4 + 5 + 2 x 7919


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_no_two_workers_or_resumes_draw_from_the_same_seed(strategy: str) -> None:
    """Eight workers, each resumed after every count of finished trials up to a thousand: all seeds differ, so no
    two of them draw the same random points."""
    spec = StudySpec(strategy=strategy, seed=4)
    seeds = [sampler_seed(spec, finished, worker) for worker in range(8) for finished in range(1000)]
    assert len(set(seeds)) == len(seeds)
