from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpsearch.cli import app
from hpsearch.engine import lr_finder
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.engine.lr_finder import lr_range_test, smooth, suggest
from hpsearch.engine.models import MLP
from hpsearch.errors import ConfigError

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


def collapse_curve(noise: float = 0.0, seed: int = 0) -> list[float]:
    """A network that dies at a high lr (issue 27's CNN on 3 classes): the loss sits at log 3 up to 1e-2, falls to
    0.955 by 0.17, then climbs back to the chance level by 0.6 and stays there; never 2x its lowest."""
    rng = np.random.default_rng(seed)
    chance, lowest = math.log(3), 0.955
    losses = []
    for lr in LRS:
        x = math.log10(lr)
        if x < -2:
            loss = chance
        elif x < math.log10(0.17):
            loss = chance - (chance - lowest) * (x + 2) / (math.log10(0.17) + 2)
        elif x < math.log10(0.6):
            loss = lowest + (1.104 - lowest) * (x - math.log10(0.17)) / (math.log10(0.6) - math.log10(0.17))
        else:
            loss = 1.104
        losses.append(loss * (1 + noise * rng.standard_normal()))
    return losses


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_a_loss_that_climbs_back_to_its_start_is_a_divergence_with_no_suggestion_past_it(noise: float) -> None:
    found = suggest(LRS, collapse_curve(noise))
    assert found.blowup is not None and 0.05 < found.blowup < 0.6, found
    suggested = [lr for lr in (found.steepest, found.valley, found.divergence) if lr is not None]
    assert suggested and max(suggested) <= found.blowup, found


COLLAPSING_TASK = ("--dataset", "synthetic:n=2000,d=32,classes=3,noise=6", "--model", "mlp")


def test_a_real_collapse_is_divergence_in_the_warning_the_printed_range_and_the_json(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The MLP on a hard 3-class task: the loss falls from log 3 to ~0.93, then the net dies and the loss climbs
    back to log 3 (never 4x its lowest, the sweep's own stop)."""
    with caplog.at_level(logging.WARNING):
        as_json = CliRunner().invoke(app, ["lr-find", *COLLAPSING_TASK, "--json"])
    assert as_json.exit_code == 0, as_json.stderr
    record = json.loads(as_json.stdout)
    low, high = record["prior"]
    assert record["diverged_at"] is not None and high < record["diverged_at"] < 1.0, record["diverged_at"]
    assert high < 0.9 * record["suggestions"]["blowup"] * 1.0001 and low < record["suggestion"] < high
    assert "never diverged" not in caplog.text and "taken as divergence" in caplog.text
    assert record["reason"] in caplog.text
    shown = CliRunner().invoke(app, ["lr-find", *COLLAPSING_TASK])
    assert shown.exit_code == 0, shown.stderr
    assert f"search range {low:.3g} to {high:.3g}" in " ".join(shown.stdout.split())
    assert f"diverged at lr {record['diverged_at']:.3g}" in " ".join(shown.stdout.split())


# The search range's documented rule (docs/strategies.md): two orders of magnitude below the suggestion, up to just
# under the blow-up (the last lr at the lowest loss, after which the loss rises: above it, and above every lr the
# sweep took before it, nothing is cut off); the whole sweep when the curve never blew up.
SWEEP_STEP = LRS[1] / LRS[0]  # the factor between two lrs of the default sweep
DESCENT_MIDDLE = 10 ** ((FALL_START + FALL_END) / 2)  # the valley: the middle of the main descent
BREAK = int(np.searchsorted(np.log10(LRS), BLOWUP))  # where the hand-made loss leaves its lowest level


def handmade_sweep(end: float | None) -> tuple[list[float], list[float], float | None]:
    """What the sweep records on the noiseless synthetic curve cut off at its blow-up: flat at 2.3, the descent to
    0.5, flat, and at LRS[BREAK] a loss of ``end`` where the sweep stops (the 4x stop, or the first non-finite loss);
    with ``end`` None, the flat level to the end of the sweep: a curve that never blew up."""
    losses = [0.5 if math.log10(lr) >= FALL_END else loss for lr, loss in zip(LRS, synthetic_curve(), strict=True)]
    if end is None:
        return LRS, losses, None
    return LRS[:BREAK + 1], [*losses[:BREAK], end], LRS[BREAK]


def documented_range(lrs: list[float], suggestion: float, blowup: float) -> tuple[float, tuple[float, float]]:
    """The rule's low end, and the open interval its high end lies in ("just under the blow-up")."""
    before = max(lr for lr in lrs if lr < blowup)
    return suggestion / 100, (before, blowup)


@pytest.mark.parametrize("end", [50.0, math.inf, math.nan], ids=["jumps-to-50", "turns-inf", "turns-nan"])
def test_the_search_range_of_a_handmade_curve_follows_the_documented_rule(
    monkeypatch: pytest.MonkeyPatch, end: float
) -> None:
    monkeypatch.setattr(lr_finder, "_sweep", lambda *args: handmade_sweep(end))
    shown = CliRunner().invoke(app, ["lr-find", "--json"])
    assert shown.exit_code == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["suggestions"]["blowup"] == pytest.approx(LRS[BREAK - 1])
    assert DESCENT_MIDDLE / SWEEP_STEP <= record["suggestion"] <= DESCENT_MIDDLE * SWEEP_STEP
    low, (above, below) = documented_range(LRS, record["suggestion"], LRS[BREAK - 1])
    assert record["prior"][0] == pytest.approx(low, rel=1e-12)
    assert above < record["prior"][1] < below


def test_the_search_range_of_a_curve_that_never_blew_up_is_the_whole_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lr_finder, "_sweep", lambda *args: handmade_sweep(None))
    shown = CliRunner().invoke(app, ["lr-find", "--json"])
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["prior"] == pytest.approx([1e-7, 1.0], rel=1e-12)


def test_the_search_range_of_a_real_sweep_follows_the_documented_rule() -> None:
    """AdamW on a small MLP over digits, whose loss blows up within the sweep."""
    shown = CliRunner().invoke(app, ["lr-find", "--hidden", "32", "--steps", "50", "--json"])
    assert shown.exit_code == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["suggestion"] is not None and record["suggestions"]["blowup"] is not None
    low, (above, below) = documented_range(record["lrs"], record["suggestion"], record["suggestions"]["blowup"])
    assert low > record["lrs"][0]  # not cut at the sweep's start, which the rule leaves unsaid
    assert record["prior"][0] == pytest.approx(low, rel=1e-12)
    assert above < record["prior"][1] < below


def searched_lr_range(tmp_path: Path) -> tuple[float, float]:
    """The lr range that ``run --lr-find --lr-range 1e-4 0.1`` searched (its one trial's distribution)."""
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    done = CliRunner().invoke(app, ["run", "--lr-find", "--lr-range", "1e-4", "0.1", "--n-trials", "1", "--epochs", "1",
                                    "--hidden", "8", "--no-check", "--quiet", "--storage", storage, "--study", "lr"])
    assert done.exit_code == 0, done.stderr
    [trial] = optuna.load_study(study_name="lr", storage=storage).get_trials(states=(TrialState.COMPLETE,))
    return trial.distributions["lr"].low, trial.distributions["lr"].high


def test_run_lr_find_searches_the_documented_range_of_a_loss_that_turned_nan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(lr_finder, "_sweep", lambda *args: handmade_sweep(math.nan))
    searched_low, searched_high = searched_lr_range(tmp_path)
    low, (above, below) = documented_range(LRS, DESCENT_MIDDLE, LRS[BREAK - 1])
    assert low / SWEEP_STEP <= searched_low <= low * SWEEP_STEP and above < searched_high < below


def test_run_lr_find_keeps_the_given_lr_range_when_the_loss_never_blew_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(lr_finder, "_sweep", lambda *args: handmade_sweep(None))
    assert searched_lr_range(tmp_path) == (1e-4, 0.1)
