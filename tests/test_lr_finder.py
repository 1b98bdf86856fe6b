from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hpsearch.cli import app
from hpsearch.config import TrainConfig
from hpsearch.data import Data
from hpsearch.errors import ConfigError
from hpsearch.lr_finder import lr_range_test, smooth, suggest
from hpsearch.models import MLP

LRS = list(np.geomspace(1e-7, 1.0, 100))
# Known features of the synthetic curve, in log10(lr): the loss falls from 2.3 to 0.5 between
# FALL_START and FALL_END (steepest in the middle), stays flat, and blows up from BLOWUP on.
FALL_START, FALL_END, BLOWUP = -4.0, -2.4, -1.2


def synthetic_curve(noise: float = 0.0, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    losses = []
    for lr in LRS:
        x = math.log10(lr)
        if x < FALL_START:
            loss = 2.3
        elif x < FALL_END:
            loss = 0.5 + 1.8 * (1 + math.cos(math.pi * (x - FALL_START) / (FALL_END - FALL_START))) / 2
        else:
            loss = 0.5
        if x > BLOWUP:
            loss += math.expm1(12 * (x - BLOWUP))
        losses.append(loss * (1 + noise * rng.standard_normal()))
    return losses


def within(found: float | None, truth: float, factor: float = 1.5) -> bool:
    return found is not None and truth / factor <= found <= truth * factor


@pytest.mark.parametrize("noise", [0.0, 0.02])
def test_suggestions_land_within_1_5x_of_the_known_points(noise: float) -> None:
    found = suggest(LRS, synthetic_curve(noise))
    middle = 10 ** ((FALL_START + FALL_END) / 2)
    assert within(found.steepest, middle), found
    assert within(found.valley, middle), found
    assert within(found.blowup, 10**BLOWUP), found
    assert within(found.divergence, 10**BLOWUP / 10), found


def test_smoothing_is_a_bias_corrected_ema() -> None:
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    assert smooth([1.0, 3.0], beta=0.5) == pytest.approx([1.0, (0.25 * 1 + 0.5 * 3) / 0.75])


def test_the_sweep_stops_early_on_divergence_and_suggests_a_sane_range(digits: Data) -> None:
    result = lr_range_test(TrainConfig(), digits)
    assert result.diverged_at is not None and len(result.lrs) < 100
    assert result.lrs[0] == pytest.approx(1e-7)
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:], strict=False))
    assert result.method == "valley" and result.suggestion is not None
    low, high = result.prior()
    assert low < result.suggestion < high < result.diverged_at
    assert 1e-4 < result.suggestion < 1e-1  # where AdamW trains this MLP on digits


def test_the_model_it_was_given_comes_back_unchanged(digits: Data) -> None:
    torch.manual_seed(0)
    model = MLP(digits.input_dim, 10, (256, 128))
    before = {key: value.clone() for key, value in model.state_dict().items()}
    lr_range_test(TrainConfig(), digits, model=model, steps=30)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_range_that_never_diverges_warns_and_keeps_the_whole_range(
    digits: Data, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = lr_range_test(TrainConfig(), digits, start_lr=1e-7, end_lr=1e-5, steps=20)
    assert result.diverged_at is None and len(result.lrs) == 20
    assert "never diverged" in caplog.text
    assert result.prior() == (pytest.approx(1e-7), pytest.approx(1e-5))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr must be > 0 and below end_lr, got start_lr=1 end_lr=0.1"),
        ({"start_lr": 0.0}, "start_lr must be > 0"),
        ({"steps": 9}, "steps must be >= 10, got 9"),
        ({"smoothing": 1.0}, "smoothing must be in [0, 1), got 1.0"),
        ({"method": "best"}, "method must be steepest, divergence or valley, got 'best'"),
    ],
)
def test_bad_arguments_are_config_errors(digits: Data, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        lr_range_test(TrainConfig(), digits, **options)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_cli_lr_find_plots_and_prints_json(tmp_path: Path) -> None:
    plot = tmp_path / "lr.png"
    result = CliRunner().invoke(app, ["lr-find", "--steps", "60", "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert len(record["lrs"]) == len(record["losses"]) == len(record["smoothed"])
    assert record["prior"][0] < record["prior"][1]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["lr-find", "--steps", "5"])
    assert bad.exit_code == 2 and bad.stderr.strip() == "error: steps must be >= 10, got 5"
