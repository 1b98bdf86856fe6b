"""Figures, each drawn from a small data object onto an optional ``ax`` and returned as a Figure."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display here, and none needed on a training server

import matplotlib.pyplot as plt  # after use(): the backend must be chosen first
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hpsearch.errors import HPSearchError
from hpsearch.lr_finder import LRFinderResult

__all__ = ["plot_lr_range_test", "save_figure"]

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


def save_figure(figure: Figure, path: str | Path) -> None:
    """Write ``figure`` to ``path`` (format from the suffix) and release it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise HPSearchError(f"folder does not exist (--plot {path})")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
