"""One setup for the sequential and the batched loop: the same seeds, pruner and requeued trials."""

from __future__ import annotations

import pytest

from hpsearch.search.setup import WORKER_SEED_STRIDE, sampler_seed
from hpsearch.search.spec import StudySpec


@pytest.mark.parametrize(("finished", "worker"), [(0, 0), (5, 0), (0, 3), (7, 2)])
def test_a_grid_keeps_its_seed_in_every_worker_and_run(finished: int, worker: int) -> None:
    assert sampler_seed(StudySpec(strategy="grid", seed=4), finished, worker) == 4


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_other_samplers_get_a_seed_per_resume_and_worker(strategy: str) -> None:
    spec = StudySpec(strategy=strategy, seed=4)
    assert sampler_seed(spec, 0, 0) == 4
    assert sampler_seed(spec, 5, 0) == 9
    assert sampler_seed(spec, 5, 2) == 9 + 2 * WORKER_SEED_STRIDE
