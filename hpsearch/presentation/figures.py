"""Figures, each drawn from a small data object onto an optional ``ax`` and returned as a Figure.

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

__all__ = ["StageRange", "plot_history", "plot_importances", "plot_landscape", "plot_learning_curves",
           "plot_lr_range_test", "plot_trial_curve", "save_figure", "write_trial_curve"]

_MARKERS = {"steepest": "tab:orange", "divergence": "tab:red", "valley": "tab:green"}


def plot_lr_range_test(result: LRFinderResult, ax: Axes | None = None) -> Figure:
    """Raw and smoothed loss against the learning rate (log axis), the suggestions marked."""
    if ax is None:
        figure, ax = plt.subplots(figsize=(7, 4.5))
    else:
        figure = ax.get_figure()  # type: ignore[assignment]
    ax.plot(result.lrs, result.losses, color="0.75", linewidth=0.8, label="loss")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", label="smoothed loss")
    for method, color in _MARKERS.items():
        lr = getattr(result.suggestions, method)
        if lr is not None:
            style = "-" if method == result.method else ":"
            ax.axvline(lr, color=color, linestyle=style, label=f"{method} {lr:.2g}")
    low, high = result.prior()
    ax.axvspan(low, high, color="tab:blue", alpha=0.08, label=f"search range {low:.2g}..{high:.2g}")
    ax.set_xscale("log")
    finite = [loss for loss in result.smoothed if math.isfinite(loss)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 3 * finite[0]) * 1.1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("LR range test")
    ax.legend(fontsize="small")
    return figure  # type: ignore[return-value]


@dataclass(frozen=True)
class StageRange:
    """The box one coarse-to-fine stage searched: its lr range and the range of the parameter drawn against it
    (weight decay, or what plot_landscape's ``other`` names)."""

    label: str
    lr: tuple[float, float]
    other: tuple[float, float]


def plot_history(trials: Sequence[FrozenTrial], metric: str, maximize: bool) -> Figure:
    """Each trial's value in the order they ran, pruned ones at their last reported value, and the
    best so far."""
    figure, ax = plt.subplots(figsize=(7, 4.5))
    done = [(i, t.value) for i, t in enumerate(trials) if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [(i, _last_value(t)) for i, t in enumerate(trials)
              if t.state == TrialState.PRUNED and t.intermediate_values]
    if done:
        ax.scatter(*zip(*done, strict=True), color="tab:blue", s=22, label="complete", zorder=3)
        best, steps = None, []
        for i, value in done:
            best = value if best is None or (value > best if maximize else value < best) else best
            steps.append((i, best))
        xs, ys = zip(*steps, strict=True)
        ax.step([*xs, len(trials) - 1], [*ys, ys[-1]], where="post", color="tab:red", label="best so far")
    if pruned:
        ax.scatter(*zip(*pruned, strict=True), marker="x", color="0.55", s=22, label="pruned (last reported)")
    _log_if_wide(ax, [v for _, v in done + pruned], "y")
    ax.set_xlabel("trial (in the order started)")
    ax.set_ylabel(metric)
    ax.set_title(f"Optimization history: {metric} ({'higher' if maximize else 'lower'} is better)")
    if done or pruned:
        ax.legend(fontsize="small")
    return figure


def plot_landscape(trials: Sequence[FrozenTrial], metric: str, maximize: bool,
                   stages: Sequence[StageRange] = (), other: str = "weight_decay") -> Figure:
    """Every trial at its lr and ``other`` parameter (weight decay, or what the study searched with lr), coloured
    by value; pruned trials hollow, the best starred, and coarse-to-fine stages as boxes (stages that searched the
    same box share one, labelled with each). The legend sits under the axes, off the trials."""
    figure, ax = plt.subplots(figsize=(7, 5.5))
    placed = [t for t in trials if {"lr", other} <= set(t.params)]
    done = [t for t in placed if t.state == TrialState.COMPLETE and t.value is not None]
    others = [t for t in placed if t not in done]
    name = "wd" if other == "weight_decay" else other
    if others:
        ax.scatter([t.params["lr"] for t in others], [t.params[other] for t in others], facecolors="none",
                   edgecolors="0.55", s=30, label="pruned or failed")
    if done:
        values = [t.value for t in done]
        points = ax.scatter([t.params["lr"] for t in done], [t.params[other] for t in done], c=values,
                            cmap="viridis" if maximize else "viridis_r", s=40, edgecolors="k", linewidths=0.3,
                            label="complete")
        figure.colorbar(points, ax=ax, label=f"{metric} (brighter is better)")
        best = (max if maximize else min)(done, key=lambda t: t.value)
        ax.scatter([best.params["lr"]], [best.params[other]], marker="*", s=260, color="tab:red",
                   edgecolors="k", label=f"best: lr {best.params['lr']:.3g}, {name} {_short(best.params[other])}")
    boxes: dict[tuple[tuple[float, float], tuple[float, float]], list[str]] = {}
    for stage in stages:  # a stage whose box equals another's would hide under it: one box names both
        boxes.setdefault((stage.lr, stage.other), []).append(stage.label)
    for index, ((lr, span), labels) in enumerate(boxes.items()):
        ax.add_patch(Rectangle((lr[0], span[0]), lr[1] - lr[0], span[1] - span[0], fill=False,
                               edgecolor=plt.get_cmap("tab10")(index % 10), linestyle="--", linewidth=1.2,
                               label=f"range of {' and '.join(labels)}" + (" (the same)" if len(labels) > 1 else "")))
    log = _searched_on_log_scale(placed, other)
    ax.set_xscale("log")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("learning rate (log)")
    ax.set_ylabel(other.replace("_", " ") + (" (log)" if log else ""))
    ax.set_title(f"Learning rate and {other.replace('_', ' ')}: {metric} of each trial")
    if placed or stages:
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return figure


def _searched_on_log_scale(trials: Sequence[FrozenTrial], name: str) -> bool:
    """Whether the trials searched ``name`` on a log scale (weight decay is, when no trial says)."""
    distribution = next((t.distributions[name] for t in trials if name in t.distributions), None)
    return bool(getattr(distribution, "log", name == "weight_decay"))


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_learning_curves(trials: Sequence[FrozenTrial], metric: str, maximize: bool) -> Figure:
    """Each trial's reported value per epoch: complete ones in colour, pruned ones faded, the best bold."""
    figure, ax = plt.subplots(figsize=(7, 4.5))
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = (max if maximize else min)(done, key=lambda t: t.value) if done else None
    values: list[float] = []
    for trial in trials:
        if not trial.intermediate_values:
            continue
        epochs, reported = zip(*sorted(trial.intermediate_values.items()), strict=True)
        values += reported
        if trial is best:
            ax.plot(epochs, reported, color="tab:red", linewidth=2.2, marker=".", zorder=4,
                    label=f"best: {metric} {trial.value:.4g}")
        elif trial.state == TrialState.COMPLETE:
            ax.plot(epochs, reported, color="tab:blue", alpha=0.6, linewidth=1, marker=".", markersize=4)
        else:
            ax.plot(epochs, reported, color="0.5", alpha=0.35, linewidth=0.8, marker=".", markersize=4)
    ax.plot([], [], color="tab:blue", alpha=0.6, marker=".", label="complete")
    ax.plot([], [], color="0.5", alpha=0.35, marker=".", label="pruned, failed or stopped")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _log_if_wide(ax, values, "y")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric.removeprefix('val_')}" if metric.startswith("val_") else metric)
    ax.set_title(f"Learning curves: {metric} per epoch")
    ax.legend(fontsize="small")
    return figure


def plot_importances(importances: Mapping[str, float], metric: str, basis: str = "", caution: str = "") -> Figure:
    """Horizontal bars of each parameter's share of the variation in the metric (``basis``: which trials;
    ``caution``: why not to trust them, a second title line)."""
    figure, ax = plt.subplots(figsize=(7, 0.6 * len(importances) + 1.8))
    names = list(importances)[::-1]
    shares = [importances[name] for name in names]
    ax.barh(names, shares, color="tab:blue")
    for y, share in enumerate(shares):
        ax.text(share, y, f" {share:.2f}", va="center", fontsize="small")
    ax.set_xlim(0, max(1.0, max(shares, default=0) * 1.15))
    ax.set_xlabel(f"importance for {metric} (fANOVA, sums to 1)")
    ax.set_title("Parameter importances" + (f" ({basis})" if basis else "") + (f"\n{caution}" if caution else ""))
    return figure


def plot_trial_curve(history: Sequence[Mapping[str, float]], title: str) -> Figure:
    """One trial's training and validation loss per epoch, validation accuracy (of a classifier) on a second
    axis."""
    figure, ax = plt.subplots(figsize=(6, 4))
    epochs = [m["epoch"] for m in history]
    ax.plot(epochs, [m["train_loss"] for m in history], color="tab:blue", marker=".", label="train loss")
    ax.plot(epochs, [m["val_loss"] for m in history], color="tab:orange", marker=".", label="val loss")
    _log_if_wide(ax, [m[k] for m in history for k in ("train_loss", "val_loss")], "y")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lines = ax.get_legend_handles_labels()
    if any(m.get("val_acc") is not None for m in history):  # a regression has no accuracy
        accuracy = ax.twinx()
        accuracy.plot(epochs, [math.nan if m["val_acc"] is None else m["val_acc"] for m in history],
                      color="tab:green", linestyle="--", label="val acc")
        accuracy.set_ylabel("validation accuracy")
        accuracy.set_ylim(0, 1)
        more = accuracy.get_legend_handles_labels()
        lines = (lines[0] + more[0], lines[1] + more[1])
    ax.legend(lines[0], lines[1], fontsize="small", loc="center right")
    ax.set_title(title)
    return figure


def _last_value(trial: FrozenTrial) -> float:
    return trial.intermediate_values[max(trial.intermediate_values)]


def _log_if_wide(ax: Axes, values: Sequence[float], axis: str) -> None:
    """A log axis when positive values span more than a decade, where a linear one would hide the small."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def save_figure(figure: Figure, path: str | Path) -> None:
    """Write ``figure`` to ``path`` (format from the suffix) and release it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise HPSearchError(f"folder does not exist (--plot {path})")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def write_trial_curve(history: Sequence[Mapping[str, float]], title: str, path: str | Path) -> None:
    """One trial's learning curve as a PNG at ``path``: the artifact writer the search layer is handed
    (hpsearch.presentation.run.CURVE_WRITER names it)."""
    save_figure(plot_trial_curve(history, title), path)
