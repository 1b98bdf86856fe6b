"""Figures in two steps, as Optuna's matplotlib plots: compute a small frozen dataclass of what to draw, then draw
it on an optional ``ax`` and return the Figure.

The data (points, labels, axis scales, titles, cautions, stage boxes) is what a test asserts on, without pixels;
the drawing is thin. Each ``plot_*`` name composes the two (``plot_history(...) == draw_history(history_data(...))``)
for callers that want the figure only.

The study figures are drawn here rather than by ``optuna.visualization.matplotlib`` where Optuna's
leave out what a reader needs: its history and intermediate-value plots skip or do not tell apart
pruned trials, and its contour plot interpolates a surface between a few trials instead of showing
them on log axes. Parameter importances come from ``optuna.importance``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # files only: no display here, and none needed on a training server

import matplotlib.pyplot as plt  # after use(): the backend must be chosen first
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState

from hpsearch.engine.lr_finder import LRFinderResult
from hpsearch.errors import HPSearchError

__all__ = [
    "HistoryData", "ImportancesData", "LRMarker", "LRRangeTestData", "LandscapeData", "LearningCurve",
    "LearningCurvesData", "StageBox", "StageRange", "TrialCurveData",
    "draw_history", "draw_importances", "draw_landscape", "draw_learning_curves", "draw_lr_range_test",
    "draw_trial_curve", "history_data", "importances_data", "landscape_data", "learning_curves_data",
    "lr_range_test_data", "plot_history", "plot_importances", "plot_landscape", "plot_learning_curves",
    "plot_lr_range_test", "plot_trial_curve", "save_figure", "trial_curve_data", "write_trial_curve",
]

Scale = Literal["linear", "log"]
Point = tuple[float, Any]  # (x, y); y is a parameter's value on the landscape, which may be a category

_MARKERS = {"steepest": "tab:orange", "divergence": "tab:red", "valley": "tab:green"}


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``figsize`` with one axes."""
    if ax is None:
        return plt.subplots(figsize=figsize)
    return ax.get_figure(), ax  # type: ignore[return-value]


def _scale(values: Sequence[float]) -> Scale:
    """Log when positive values span more than a decade, where a linear axis would hide the small ones."""
    finite = [v for v in values if math.isfinite(v)]
    return "log" if finite and min(finite) > 0 and max(finite) / min(finite) > 10 else "linear"


# --- LR range test ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LRMarker:
    """One suggestion of the LR range test, drawn as a vertical line (solid for the one the test chose)."""

    method: str
    lr: float
    chosen: bool

    @property
    def label(self) -> str:
        return f"{self.method} {self.lr:.2g}"


@dataclass(frozen=True)
class LRRangeTestData:
    """The sweep's raw and smoothed loss per lr, its suggestions and the search range it gives."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    markers: tuple[LRMarker, ...]
    search_range: tuple[float, float]
    ylim: tuple[float, float] | None  # the smoothed curve's span, cut at 3x its start so a blow-up keeps the dip
    title: str = "LR range test"
    xlabel: str = "learning rate"
    ylabel: str = "training loss"
    xscale: Scale = "log"

    @property
    def search_range_label(self) -> str:
        return f"search range {self.search_range[0]:.2g}..{self.search_range[1]:.2g}"


def lr_range_test_data(result: LRFinderResult) -> LRRangeTestData:
    """What the LR range test figure shows of ``result``."""
    markers = tuple(LRMarker(method, lr, method == result.method) for method in _MARKERS
                    if (lr := getattr(result.suggestions, method)) is not None)
    finite = [loss for loss in result.smoothed if math.isfinite(loss)]
    ylim = (min(finite) * 0.9, min(max(finite), 3 * finite[0]) * 1.1) if finite else None
    return LRRangeTestData(tuple(result.lrs), tuple(result.losses), tuple(result.smoothed), markers,
                           result.prior(), ylim)


def draw_lr_range_test(data: LRRangeTestData, ax: Axes | None = None) -> Figure:
    """Raw and smoothed loss against the learning rate (log axis), the suggestions marked."""
    figure, ax = _axes(ax, (7, 4.5))
    ax.plot(data.lrs, data.losses, color="0.75", linewidth=0.8, label="loss")
    ax.plot(data.lrs, data.smoothed, color="tab:blue", label="smoothed loss")
    for marker in data.markers:
        ax.axvline(marker.lr, color=_MARKERS[marker.method], linestyle="-" if marker.chosen else ":",
                   label=marker.label)
    ax.axvspan(*data.search_range, color="tab:blue", alpha=0.08, label=data.search_range_label)
    ax.set_xscale(data.xscale)
    if data.ylim is not None:
        ax.set_ylim(*data.ylim)
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(data.ylabel)
    ax.set_title(data.title)
    ax.legend(fontsize="small")
    return figure


def plot_lr_range_test(result: LRFinderResult, ax: Axes | None = None) -> Figure:
    """Raw and smoothed loss against the learning rate (log axis), the suggestions marked."""
    return draw_lr_range_test(lr_range_test_data(result), ax)


# --- optimization history --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryData:
    """Each trial's value at its place in the order started, and the best so far as a step line."""

    complete: tuple[Point, ...]
    pruned: tuple[Point, ...]  # at the last value each reported
    best_so_far: tuple[Point, ...]  # the step line's corners, drawn "post", carried on to the last trial
    yscale: Scale
    xlabel: str
    ylabel: str
    title: str

    @property
    def legend(self) -> bool:
        return bool(self.complete or self.pruned)


def history_data(trials: Sequence[FrozenTrial], metric: str, maximize: bool) -> HistoryData:
    """What the optimization history shows of ``trials`` (in the order they started)."""
    done = [(i, t.value) for i, t in enumerate(trials) if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [(i, _last_value(t)) for i, t in enumerate(trials)
              if t.state == TrialState.PRUNED and t.intermediate_values]
    steps: list[Point] = []
    best: float | None = None
    for i, value in done:
        best = value if best is None or (value > best if maximize else value < best) else best
        steps.append((i, best))
    if steps:
        steps.append((len(trials) - 1, steps[-1][1]))
    return HistoryData(tuple(done), tuple(pruned), tuple(steps), _scale([v for _, v in done + pruned]),
                       "trial (in the order started)", metric,
                       f"Optimization history: {metric} ({'higher' if maximize else 'lower'} is better)")


def draw_history(data: HistoryData, ax: Axes | None = None) -> Figure:
    """Complete trials as dots, pruned ones as crosses, the best so far as a red step line."""
    figure, ax = _axes(ax, (7, 4.5))
    if data.complete:
        ax.scatter(*zip(*data.complete, strict=True), color="tab:blue", s=22, label="complete", zorder=3)
        ax.step(*zip(*data.best_so_far, strict=True), where="post", color="tab:red", label="best so far")
    if data.pruned:
        ax.scatter(*zip(*data.pruned, strict=True), marker="x", color="0.55", s=22, label="pruned (last reported)")
    ax.set_yscale(data.yscale)
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(data.ylabel)
    ax.set_title(data.title)
    if data.legend:
        ax.legend(fontsize="small")
    return figure


def plot_history(trials: Sequence[FrozenTrial], metric: str, maximize: bool, ax: Axes | None = None) -> Figure:
    """Each trial's value in the order they ran, pruned ones at their last reported value, and the
    best so far."""
    return draw_history(history_data(trials, metric, maximize), ax)


# --- landscape -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageRange:
    """The box one coarse-to-fine stage searched: its lr range and the range of the parameter drawn against it
    (weight decay, or what plot_landscape's ``other`` names)."""

    label: str
    lr: tuple[float, float]
    other: tuple[float, float]


@dataclass(frozen=True)
class StageBox:
    """One dashed box on the landscape: the range one or more stages searched, labelled with them all."""

    lr: tuple[float, float]
    other: tuple[float, float]
    label: str


@dataclass(frozen=True)
class LandscapeData:
    """Trials at their (lr, ``other``), complete ones with the value that colours them, and the stage boxes."""

    other: str
    complete: tuple[tuple[float, Any, float], ...]  # (lr, other, value)
    unfinished: tuple[Point, ...]  # pruned or failed: hollow
    best: Point | None
    best_label: str
    boxes: tuple[StageBox, ...]
    maximize: bool  # the colour map runs so that brighter is better
    colorbar_label: str
    xscale: Scale
    yscale: Scale
    xlabel: str
    ylabel: str
    title: str
    legend: bool


def landscape_data(trials: Sequence[FrozenTrial], metric: str, maximize: bool, stages: Sequence[StageRange] = (),
                   other: str = "weight_decay") -> LandscapeData:
    """What the landscape shows: the trials that searched lr and ``other``, the best, and one box per distinct
    range the stages searched (stages that searched the same box share it, labelled with each)."""
    placed = [t for t in trials if {"lr", other} <= set(t.params)]
    done = [t for t in placed if t.state == TrialState.COMPLETE and t.value is not None]
    best = (max if maximize else min)(done, key=lambda t: t.value) if done else None
    name = "wd" if other == "weight_decay" else other
    shared: dict[tuple[tuple[float, float], tuple[float, float]], list[str]] = {}
    for stage in stages:  # a stage whose box equals another's would hide under it: one box names both
        shared.setdefault((stage.lr, stage.other), []).append(stage.label)
    boxes = tuple(StageBox(lr, span, f"range of {' and '.join(labels)}" + (" (the same)" if len(labels) > 1 else ""))
                  for (lr, span), labels in shared.items())
    log = _searched_on_log_scale(placed, other)
    words = other.replace("_", " ")
    return LandscapeData(
        other=other,
        complete=tuple((t.params["lr"], t.params[other], t.value) for t in done),
        unfinished=tuple((t.params["lr"], t.params[other]) for t in placed if t not in done),
        best=(best.params["lr"], best.params[other]) if best else None,
        best_label=f"best: lr {best.params['lr']:.3g}, {name} {_short(best.params[other])}" if best else "",
        boxes=boxes, maximize=maximize, colorbar_label=f"{metric} (brighter is better)",
        xscale="log", yscale="log" if log else "linear",
        xlabel="learning rate (log)", ylabel=words + (" (log)" if log else ""),
        title=f"Learning rate and {words}: {metric} of each trial", legend=bool(placed or stages))


def draw_landscape(data: LandscapeData, ax: Axes | None = None) -> Figure:
    """Trials coloured by value with a colour bar, pruned ones hollow, the best starred, the stages' boxes dashed;
    the legend under the axes, off the trials."""
    figure, ax = _axes(ax, (7, 5.5))
    if data.unfinished:
        ax.scatter(*zip(*data.unfinished, strict=True), facecolors="none", edgecolors="0.55", s=30,
                   label="pruned or failed")
    if data.complete:
        lrs, others, values = zip(*data.complete, strict=True)
        points = ax.scatter(lrs, others, c=values, cmap="viridis" if data.maximize else "viridis_r", s=40,
                            edgecolors="k", linewidths=0.3, label="complete")
        figure.colorbar(points, ax=ax, label=data.colorbar_label)
    if data.best is not None:
        ax.scatter(*zip(data.best, strict=True), marker="*", s=260, color="tab:red", edgecolors="k",
                   label=data.best_label)
    for index, box in enumerate(data.boxes):
        ax.add_patch(Rectangle((box.lr[0], box.other[0]), box.lr[1] - box.lr[0], box.other[1] - box.other[0],
                               fill=False, edgecolor=plt.get_cmap("tab10")(index % 10), linestyle="--",
                               linewidth=1.2, label=box.label))
    ax.set_xscale(data.xscale)
    ax.set_yscale(data.yscale)
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(data.ylabel)
    ax.set_title(data.title)
    if data.legend:
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return figure


def plot_landscape(trials: Sequence[FrozenTrial], metric: str, maximize: bool, stages: Sequence[StageRange] = (),
                   other: str = "weight_decay", ax: Axes | None = None) -> Figure:
    """Every trial at its lr and ``other`` parameter (weight decay, or what the study searched with lr), coloured
    by value; pruned trials hollow, the best starred, and coarse-to-fine stages as boxes (stages that searched the
    same box share one, labelled with each). The legend sits under the axes, off the trials."""
    return draw_landscape(landscape_data(trials, metric, maximize, stages, other), ax)


def _searched_on_log_scale(trials: Sequence[FrozenTrial], name: str) -> bool:
    """Whether the trials searched ``name`` on a log scale (weight decay is, when no trial says)."""
    distribution = next((t.distributions[name] for t in trials if name in t.distributions), None)
    return bool(getattr(distribution, "log", name == "weight_decay"))


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# --- learning curves -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LearningCurve:
    """One trial's reported value per epoch; ``kind`` says how it is drawn."""

    epochs: tuple[int, ...]
    values: tuple[float, ...]
    kind: Literal["best", "complete", "other"]  # other: pruned, failed or stopped, drawn faded
    label: str = ""


@dataclass(frozen=True)
class LearningCurvesData:
    """Every trial's curve that reported an epoch, in the order the trials started."""

    curves: tuple[LearningCurve, ...]
    yscale: Scale
    xlabel: str
    ylabel: str
    title: str


def learning_curves_data(trials: Sequence[FrozenTrial], metric: str, maximize: bool) -> LearningCurvesData:
    """What the learning-curves figure shows of ``trials``: the best one's curve labelled with its value."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = (max if maximize else min)(done, key=lambda t: t.value) if done else None
    curves = []
    for trial in trials:
        if not trial.intermediate_values:
            continue
        epochs, reported = zip(*sorted(trial.intermediate_values.items()), strict=True)
        if trial is best:
            curves.append(LearningCurve(epochs, reported, "best", f"best: {metric} {trial.value:.4g}"))
        else:
            curves.append(LearningCurve(epochs, reported, "complete" if trial.state == TrialState.COMPLETE
                                        else "other"))
    ylabel = f"validation {metric.removeprefix('val_')}" if metric.startswith("val_") else metric
    return LearningCurvesData(tuple(curves), _scale([v for curve in curves for v in curve.values]), "epoch",
                              ylabel, f"Learning curves: {metric} per epoch")


_CURVE_STYLES: dict[str, dict[str, Any]] = {
    "best": {"color": "tab:red", "linewidth": 2.2, "marker": ".", "zorder": 4},
    "complete": {"color": "tab:blue", "alpha": 0.6, "linewidth": 1, "marker": ".", "markersize": 4},
    "other": {"color": "0.5", "alpha": 0.35, "linewidth": 0.8, "marker": ".", "markersize": 4},
}


def draw_learning_curves(data: LearningCurvesData, ax: Axes | None = None) -> Figure:
    """Complete trials in colour, the others faded, the best bold; the legend names the three."""
    figure, ax = _axes(ax, (7, 4.5))
    for curve in data.curves:
        ax.plot(curve.epochs, curve.values, label=curve.label or None, **_CURVE_STYLES[curve.kind])
    ax.plot([], [], color="tab:blue", alpha=0.6, marker=".", label="complete")
    ax.plot([], [], color="0.5", alpha=0.35, marker=".", label="pruned, failed or stopped")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yscale(data.yscale)
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(data.ylabel)
    ax.set_title(data.title)
    ax.legend(fontsize="small")
    return figure


def plot_learning_curves(trials: Sequence[FrozenTrial], metric: str, maximize: bool,
                         ax: Axes | None = None) -> Figure:
    """Each trial's reported value per epoch: complete ones in colour, pruned ones faded, the best bold."""
    return draw_learning_curves(learning_curves_data(trials, metric, maximize), ax)


# --- importances -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportancesData:
    """Each parameter's share, most important first, and the caution (if any) not to trust them."""

    names: tuple[str, ...]
    shares: tuple[float, ...]
    xlim: tuple[float, float]
    xlabel: str
    title: str  # with the caution as its second line
    caution: str


def importances_data(importances: Mapping[str, float], metric: str, basis: str = "",
                     caution: str = "") -> ImportancesData:
    """What the importances figure shows (``basis``: which trials; ``caution``: why not to trust them)."""
    names = tuple(importances)
    shares = tuple(importances[name] for name in names)
    return ImportancesData(
        names, shares, (0, max(1.0, max(shares, default=0) * 1.15)),
        f"importance for {metric} (fANOVA, sums to 1)",
        "Parameter importances" + (f" ({basis})" if basis else "") + (f"\n{caution}" if caution else ""), caution)


def draw_importances(data: ImportancesData, ax: Axes | None = None) -> Figure:
    """Horizontal bars, the most important on top, each with its share written at its end."""
    figure, ax = _axes(ax, (7, 0.6 * len(data.names) + 1.8))
    names, shares = data.names[::-1], data.shares[::-1]  # barh draws the first at the bottom
    ax.barh(names, shares, color="tab:blue")
    for y, share in enumerate(shares):
        ax.text(share, y, f" {share:.2f}", va="center", fontsize="small")
    ax.set_xlim(*data.xlim)
    ax.set_xlabel(data.xlabel)
    ax.set_title(data.title)
    return figure


def plot_importances(importances: Mapping[str, float], metric: str, basis: str = "", caution: str = "",
                     ax: Axes | None = None) -> Figure:
    """Horizontal bars of each parameter's share of the variation in the metric (``basis``: which trials;
    ``caution``: why not to trust them, a second title line)."""
    return draw_importances(importances_data(importances, metric, basis, caution), ax)


# --- one trial's curve -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialCurveData:
    """One trial's losses per epoch, and its validation accuracy where it is a classifier (None otherwise)."""

    epochs: tuple[float, ...]
    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    val_acc: tuple[float, ...] | None  # NaN at an epoch without one
    yscale: Scale
    title: str
    xlabel: str = "epoch"
    ylabel: str = "loss"
    acc_label: str = "validation accuracy"


def trial_curve_data(history: Sequence[Mapping[str, float]], title: str) -> TrialCurveData:
    """What one trial's curve shows of its ``history`` (one mapping of metrics per epoch)."""
    train, val = tuple(m["train_loss"] for m in history), tuple(m["val_loss"] for m in history)
    accuracy = None
    if any(m.get("val_acc") is not None for m in history):  # a regression has no accuracy
        accuracy = tuple(math.nan if m.get("val_acc") is None else m["val_acc"] for m in history)
    return TrialCurveData(tuple(m["epoch"] for m in history), train, val, accuracy, _scale(train + val), title)


def draw_trial_curve(data: TrialCurveData, ax: Axes | None = None) -> Figure:
    """Training and validation loss, validation accuracy on a second axis (0 to 1), one legend for all three."""
    figure, ax = _axes(ax, (6, 4))
    ax.plot(data.epochs, data.train_loss, color="tab:blue", marker=".", label="train loss")
    ax.plot(data.epochs, data.val_loss, color="tab:orange", marker=".", label="val loss")
    ax.set_yscale(data.yscale)
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(data.ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = ax.get_legend_handles_labels()
    if data.val_acc is not None:
        accuracy = ax.twinx()
        accuracy.plot(data.epochs, data.val_acc, color="tab:green", linestyle="--", label="val acc")
        accuracy.set_ylabel(data.acc_label)
        accuracy.set_ylim(0, 1)
        more, more_labels = accuracy.get_legend_handles_labels()
        handles, labels = handles + more, labels + more_labels
    ax.legend(handles, labels, fontsize="small", loc="center right")
    ax.set_title(data.title)
    return figure


def plot_trial_curve(history: Sequence[Mapping[str, float]], title: str, ax: Axes | None = None) -> Figure:
    """One trial's training and validation loss per epoch, validation accuracy (of a classifier) on a second
    axis."""
    return draw_trial_curve(trial_curve_data(history, title), ax)


def write_trial_curve(history: Sequence[Mapping[str, float]], title: str, path: str | Path) -> None:
    """Draw one trial's curve and save it to ``path``: the artifact writer handed down to the search layer, which
    draws nothing itself."""
    save_figure(plot_trial_curve(history, title), path)


def _last_value(trial: FrozenTrial) -> float:
    return trial.intermediate_values[max(trial.intermediate_values)]


def save_figure(figure: Figure, path: str | Path) -> None:
    """Write ``figure`` to ``path`` (format from the suffix) and release it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise HPSearchError(f"folder does not exist (--plot {path})")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
