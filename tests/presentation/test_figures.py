"""Figures in two steps: the data of each plot (points, labels, scales, titles, cautions, boxes) without pixels,
and each drawing on the ax it is given."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pytest
from matplotlib.patches import Rectangle
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from hpsearch.engine.lr_finder import LRFinderResult, Suggestions
from hpsearch.errors import HPSearchError
from hpsearch.presentation.figures import (
    StageRange,
    history_data,
    importances_data,
    landscape_data,
    learning_curves_data,
    lr_range_test_data,
    plot_history,
    plot_importances,
    plot_landscape,
    plot_learning_curves,
    plot_lr_range_test,
    plot_trial_curve,
    trial_curve_data,
    write_trial_curve,
)

LOG = FloatDistribution(1e-6, 1.0, log=True)


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def trial(state: TrialState = TrialState.COMPLETE, value: float | None = None, curve: tuple[float, ...] = (),
          **params: float) -> FrozenTrial:
    """A finished trial: its params on log ranges, its reported values at epochs 1, 2, ..."""
    return optuna.trial.create_trial(state=state, value=value, params=params,
                                     distributions={name: LOG for name in params},
                                     intermediate_values=dict(enumerate(curve, start=1)))


PRUNED, FAILED = TrialState.PRUNED, TrialState.FAIL


@pytest.fixture
def trials() -> list[FrozenTrial]:
    """Complete trials of values 0.5, 0.3, 0.4 (numbers 0, 2, 3), a pruned one with a curve (1), one pruned
    before any epoch (4) and a failed one (5)."""
    return [trial(value=0.5, curve=(0.7, 0.5), lr=1e-3, weight_decay=1e-4),
            trial(PRUNED, curve=(0.9, 0.8), lr=1e-1, weight_decay=1e-2),
            trial(value=0.3, curve=(0.6, 0.3), lr=3e-3, weight_decay=1e-5),
            trial(value=0.4, curve=(0.5, 0.4), lr=1e-2, weight_decay=1e-3),
            trial(PRUNED, lr=2e-1, weight_decay=1e-1),
            trial(FAILED, lr=5e-1)]


@pytest.mark.parametrize(("maximize", "steps", "better"), [
    (False, ((0, 0.5), (2, 0.3), (3, 0.3), (5, 0.3)), "lower"),
    (True, ((0, 0.5), (2, 0.5), (3, 0.5), (5, 0.5)), "higher"),
])
def test_history_has_complete_and_pruned_trials_at_their_place_and_the_best_so_far_to_the_last_trial(
        trials: list[FrozenTrial], maximize: bool, steps: tuple[tuple[int, float], ...], better: str) -> None:
    data = history_data(trials, "val_loss", maximize)
    assert data.complete == ((0, 0.5), (2, 0.3), (3, 0.4))
    assert data.pruned == ((1, 0.8),)  # its last reported value; the one without a curve has none to show
    assert data.best_so_far == steps
    assert (data.xlabel, data.ylabel, data.yscale) == ("trial (in the order started)", "val_loss", "linear")
    assert data.title == f"Optimization history: val_loss ({better} is better)" and data.legend


@pytest.mark.parametrize(("values", "scale"), [((0.5, 0.06), "linear"), ((0.5, 0.04), "log"), ((0.5, -1.0), "linear")])
def test_a_metric_spanning_more_than_a_decade_gets_a_log_axis(values: tuple[float, ...], scale: str) -> None:
    data = history_data([trial(value=value) for value in values], "val_loss", False)
    assert data.yscale == scale


def test_history_of_no_trial_has_nothing_to_draw_and_no_legend() -> None:
    data = history_data([], "val_loss", False)
    assert (data.complete, data.pruned, data.best_so_far, data.legend) == ((), (), (), False)
    assert plot_history([], "val_loss", False).axes[0].get_legend() is None


def test_history_draws_on_the_ax_it_is_given(trials: list[FrozenTrial]) -> None:
    figure, ax = plt.subplots()
    assert plot_history(trials, "val_loss", False, ax=ax) is figure
    assert len(ax.collections) == 2 and len(ax.lines) == 1  # complete and pruned dots; the best-so-far line
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "complete", "best so far", "pruned (last reported)"]
    assert plt.get_fignums() == [figure.number]  # no figure of its own


def test_landscape_places_trials_that_searched_both_and_names_the_best(trials: list[FrozenTrial]) -> None:
    stages = [StageRange("1-coarse", (1e-5, 1e-1), (1e-6, 1e-1)), StageRange("2-fine", (1e-3, 1e-2), (1e-5, 1e-3)),
              StageRange("3-fine", (1e-3, 1e-2), (1e-5, 1e-3))]
    data = landscape_data(trials, "val_loss", False, stages)
    assert data.complete == ((1e-3, 1e-4, 0.5), (3e-3, 1e-5, 0.3), (1e-2, 1e-3, 0.4))
    assert data.unfinished == ((1e-1, 1e-2), (2e-1, 1e-1))  # the failed trial searched no weight decay
    assert data.best == (3e-3, 1e-5) and data.best_label == "best: lr 0.003, wd 1e-05"
    assert [(box.lr, box.other, box.label) for box in data.boxes] == [
        ((1e-5, 1e-1), (1e-6, 1e-1), "range of 1-coarse"),
        ((1e-3, 1e-2), (1e-5, 1e-3), "range of 2-fine and 3-fine (the same)")]
    assert (data.xscale, data.yscale, data.xlabel, data.ylabel) == (
        "log", "log", "learning rate (log)", "weight decay (log)")
    assert data.title == "Learning rate and weight decay: val_loss of each trial"
    assert data.colorbar_label == "val_loss (brighter is better)" and data.legend


def test_landscape_against_a_linear_parameter_has_a_linear_axis_named_after_it() -> None:
    linear = FloatDistribution(0.0, 0.2)
    trials = [optuna.trial.create_trial(value=value, params={"lr": lr, "label_smoothing": smoothing},
                                        distributions={"lr": LOG, "label_smoothing": linear})
              for lr, smoothing, value in [(1e-3, 0.1, 0.9), (1e-2, 0.05, 0.8)]]
    data = landscape_data(trials, "val_acc", True, other="label_smoothing")
    assert (data.yscale, data.ylabel) == ("linear", "label smoothing")
    assert data.best_label == "best: lr 0.001, label_smoothing 0.1" and data.maximize


def test_landscape_draws_on_the_ax_it_is_given_with_a_colour_bar_beside_it(trials: list[FrozenTrial]) -> None:
    figure, ax = plt.subplots()
    stages = [StageRange("1-coarse", (1e-5, 1e-1), (1e-6, 1e-1))]
    assert plot_landscape(trials, "val_loss", False, stages, ax=ax) is figure
    assert len(ax.collections) == 3  # pruned or failed, complete, the best's star
    assert [patch.get_label() for patch in ax.patches if isinstance(patch, Rectangle)] == ["range of 1-coarse"]
    assert len(figure.axes) == 2 and (ax.get_xscale(), ax.get_yscale()) == ("log", "log")


@pytest.mark.parametrize(("metric", "ylabel"), [("val_loss", "validation loss"), ("accuracy", "accuracy")])
def test_learning_curves_are_each_reporting_trial_the_best_labelled(trials: list[FrozenTrial], metric: str,
                                                                    ylabel: str) -> None:
    data = learning_curves_data(trials, metric, False)
    assert [(curve.epochs, curve.values, curve.kind) for curve in data.curves] == [
        ((1, 2), (0.7, 0.5), "complete"), ((1, 2), (0.9, 0.8), "other"), ((1, 2), (0.6, 0.3), "best"),
        ((1, 2), (0.5, 0.4), "complete")]
    assert [curve.label for curve in data.curves] == ["", "", f"best: {metric} 0.3", ""]
    assert (data.xlabel, data.ylabel, data.yscale) == ("epoch", ylabel, "linear")
    assert data.title == f"Learning curves: {metric} per epoch"


def test_learning_curves_draw_on_the_ax_they_are_given(trials: list[FrozenTrial]) -> None:
    figure, ax = plt.subplots()
    assert plot_learning_curves(trials, "val_loss", False, ax=ax) is figure
    assert len(ax.lines) == 4 + 2  # a line per curve, and the legend's two samples
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "best: val_loss 0.3", "complete", "pruned, failed or stopped"]


@pytest.mark.parametrize(("caution", "title"), [
    ("", "Parameter importances (6 complete trials of 3 epochs)"),
    ("too few to trust: fewer than 20 complete trials",
     "Parameter importances (6 complete trials of 3 epochs)\ntoo few to trust: fewer than 20 complete trials"),
])
def test_importances_keep_their_rank_and_carry_the_caution_in_the_title(caution: str, title: str) -> None:
    data = importances_data({"lr": 0.7, "weight_decay": 0.2, "dropout": 0.1}, "val_loss",
                            "6 complete trials of 3 epochs", caution)
    assert (data.names, data.shares, data.xlim) == (("lr", "weight_decay", "dropout"), (0.7, 0.2, 0.1), (0, 1.0))
    assert (data.title, data.caution) == (title, caution)
    assert data.xlabel == "importance for val_loss (fANOVA, sums to 1)"


def test_importances_draw_on_the_ax_they_are_given_the_most_important_on_top() -> None:
    figure, ax = plt.subplots()
    assert plot_importances({"lr": 0.7, "weight_decay": 0.3}, "val_loss", ax=ax) is figure
    assert len(ax.patches) == 2 and [text.get_text() for text in ax.texts] == [" 0.30", " 0.70"]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["weight_decay", "lr"]


def epoch(number: int, train: float, val: float, acc: float | None) -> dict[str, float | None]:
    return {"epoch": number, "train_loss": train, "val_loss": val, "val_acc": acc}


def test_a_classifiers_curve_has_its_accuracy_a_regressions_has_none() -> None:
    data = trial_curve_data([epoch(1, 2.0, 1.5, None), epoch(2, 0.1, 0.2, 0.9)], "s, trial 3")  # type: ignore[list-item]
    assert (data.epochs, data.train_loss, data.val_loss) == ((1, 2), (2.0, 0.1), (1.5, 0.2))
    assert data.val_acc is not None and math.isnan(data.val_acc[0]) and data.val_acc[1] == 0.9
    assert (data.yscale, data.title, data.ylabel) == ("log", "s, trial 3", "loss")  # 2.0 down to 0.1: a log axis
    regression = trial_curve_data([epoch(1, 1.0, 1.5, None)], "r")  # type: ignore[list-item]
    assert regression.val_acc is None and regression.yscale == "linear"


@pytest.mark.parametrize(("acc", "axes", "labels"), [
    (0.9, 2, ["train loss", "val loss", "val acc"]),
    (None, 1, ["train loss", "val loss"]),
])
def test_a_trial_curve_draws_on_the_ax_it_is_given(acc: float | None, axes: int, labels: list[str]) -> None:
    figure, ax = plt.subplots()
    history = [epoch(1, 1.0, 0.9, acc), epoch(2, 0.8, 0.7, acc)]
    assert plot_trial_curve(history, "t", ax=ax) is figure  # type: ignore[arg-type]
    assert len(ax.lines) == 2 and len(figure.axes) == axes  # accuracy on a second axis
    assert [text.get_text() for text in ax.get_legend().get_texts()] == labels


def test_write_trial_curve_saves_a_png_and_names_a_missing_folder(tmp_path: Path) -> None:
    history = [epoch(1, 1.0, 0.9, 0.5), epoch(2, 0.8, 0.7, 0.6)]
    write_trial_curve(history, "study, trial 0", tmp_path / "curve.png")  # type: ignore[arg-type]
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []  # saved and released
    with pytest.raises(HPSearchError, match="folder does not exist"):
        write_trial_curve(history, "t", tmp_path / "nope" / "curve.png")  # type: ignore[arg-type]


@pytest.fixture
def lr_test() -> LRFinderResult:
    """A sweep whose smoothed loss dips to 0.5 and blows up at the end (NaN)."""
    return LRFinderResult(lrs=[1e-5, 1e-4, 1e-3, 1e-2, 1e-1], losses=[2.3, 2.2, 1.0, 0.6, math.inf],
                          smoothed=[2.3, 2.25, 1.5, 0.5, math.nan],
                          suggestions=Suggestions(steepest=1e-3, divergence=None, valley=3e-3, blowup=1e-2),
                          suggestion=3e-3, method="valley", diverged_at=1e-1, reason=None)


def test_lr_range_test_marks_each_suggestion_the_chosen_one_and_the_range_it_gives(lr_test: LRFinderResult) -> None:
    data = lr_range_test_data(lr_test)
    assert [(m.method, m.lr, m.chosen, m.label) for m in data.markers] == [
        ("steepest", 1e-3, False, "steepest 0.001"), ("valley", 3e-3, True, "valley 0.003")]
    assert data.search_range == lr_test.prior() == pytest.approx((3e-5, 9e-3))
    assert data.search_range_label == "search range 3e-05..0.009"
    assert data.ylim == pytest.approx((0.45, 2.3 * 1.1))  # the finite smoothed losses only
    assert (data.xscale, data.xlabel, data.ylabel, data.title) == (
        "log", "learning rate", "training loss", "LR range test")


def test_lr_range_test_draws_on_the_ax_it_is_given(lr_test: LRFinderResult) -> None:
    figure, ax = plt.subplots()
    assert plot_lr_range_test(lr_test, ax=ax) is figure
    assert len(ax.lines) == 2 + 2  # raw and smoothed loss, a line per suggestion
    assert ax.get_legend().get_texts()[-1].get_text() == "search range 3e-05..0.009"


def test_the_plot_data_is_frozen(trials: list[FrozenTrial]) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        history_data(trials, "val_loss", False).title = "x"  # type: ignore[misc]
