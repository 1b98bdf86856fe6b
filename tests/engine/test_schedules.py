from __future__ import annotations

from itertools import pairwise

import pytest

from hpsearch.engine.schedules import SCHEDULES, lr_multipliers

TOTAL, PER_EPOCH = 100, 10


def curve(schedule: str, **options: float) -> list[float]:
    return lr_multipliers(schedule, total_steps=TOTAL, steps_per_epoch=PER_EPOCH, **options)


def test_constant_stays_at_the_peak() -> None:
    assert curve("constant") == [1.0] * TOTAL


def test_step_decays_by_gamma_every_step_size_epochs() -> None:
    multipliers = curve("step", step_size=3, gamma=0.5)
    assert multipliers[29] == 1.0
    assert multipliers[30] == pytest.approx(0.5)
    assert multipliers[60] == pytest.approx(0.25)


def test_cosine_decays_monotonically_to_the_floor() -> None:
    multipliers = curve("cosine", min_lr_ratio=0.1)
    assert multipliers[0] == 1.0
    assert all(a >= b for a, b in pairwise(multipliers))
    assert multipliers[-1] == pytest.approx(0.1)
    assert multipliers[TOTAL // 2] == pytest.approx(0.55, abs=0.02)


def test_warmup_cosine_rises_linearly_then_decays_to_the_floor() -> None:
    multipliers = curve("warmup-cosine", warmup=0.1, min_lr_ratio=0.1)
    assert multipliers[0] < 0.01
    assert multipliers[5] == pytest.approx(0.5, abs=0.01)
    assert multipliers[10] == pytest.approx(1.0)
    assert max(multipliers) == pytest.approx(1.0)
    assert multipliers[-1] == pytest.approx(0.1)


def test_wsd_warms_up_holds_then_decays_over_the_last_fraction() -> None:
    multipliers = curve("wsd", warmup=0.1, decay_fraction=0.2, min_lr_ratio=0.1)
    assert multipliers[0] < 0.01
    assert multipliers[10:80] == pytest.approx([1.0] * 70)
    assert multipliers[80] == pytest.approx(1.0)
    assert 0.1 < multipliers[90] < 1.0
    assert multipliers[-1] == pytest.approx(0.1)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_works_without_warmup(schedule: str) -> None:
    multipliers = curve(schedule, warmup=0.0)
    assert len(multipliers) == TOTAL
    assert multipliers[0] == pytest.approx(1.0)
