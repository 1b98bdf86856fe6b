"""Grid, random, TPE and coarse-to-fine at the same budget of trial-epochs, over seeds and datasets.

Budget is counted in epochs actually trained (a pruned trial counts the epochs it ran; the LR range
test counts its batches as a fraction of an epoch). For each run the best validation loss so far is
recorded against the budget spent. Prints median and interquartile range at 25%, 50% and 100% of
the budget, Mann-Whitney U p-values (coarse-to-fine below TPE, one-sided), and the share of the
budget at which coarse-to-fine's median first reaches TPE's median final value; saves the
best-so-far curves. Run: python scripts/compare_strategies.py [--seeds 10] [--budget 300] [--plot F]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend must be chosen first
import numpy as np
import optuna
from scipy.stats import mannwhitneyu

from hpsearch import StudySpec, TrainConfig, load_data, run_study
from hpsearch.lr_finder import lr_range_test
from hpsearch.spec import CoarseToFine

STRATEGIES = ("grid", "random", "tpe", "coarse-to-fine")
FRACTIONS = (0.25, 0.5, 1.0)
# noise=10 makes the 784-dimensional clusters overlap: the best lr then matters (val loss 0.76 at
# 3e-4 against 1.9 at 1e-4 and 1.9 at 1e-2 after 5 epochs), unlike the default noise where all is separable.
DATASETS = {"digits": "digits", "mnist-shaped": "synthetic:n=6000,d=784,classes=10,noise=10"}


class BudgetTracker:
    """Optuna callback: adds each trial's epochs to the budget spent, records best-so-far, stops at the budget."""

    def __init__(self, budget: float, spent: float = 0.0) -> None:
        self.budget = budget
        self.spent = spent
        self.best = math.inf
        self.curve: list[tuple[float, float]] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.spent += len(trial.user_attrs.get("history", []))
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
            self.best = min(self.best, trial.value)
        self.curve.append((self.spent, self.best))
        if self.spent >= self.budget:
            study.stop()

    def best_at(self, budget: float) -> float:
        """Best value reached having spent at most ``budget`` trial-epochs."""
        values = [best for spent, best in self.curve if spent <= budget]
        return min(values) if values else math.inf


def run_one(strategy: str, dataset: str, seed: int, budget: float, epochs: int) -> BudgetTracker:
    data = load_data(dataset)
    train = TrainConfig(dataset=dataset, epochs=epochs, seed=seed)
    if strategy != "coarse-to-fine":
        tracker = BudgetTracker(budget)
        spec = StudySpec(name=strategy, strategy=strategy, seed=seed, n_trials=10_000, grid_points=5, train=train)
        run_study(spec, "memory", data=data, callbacks=[tracker])
        return tracker
    # The LR range test is part of the budget: its batches as a share of an epoch's batches.
    steps_per_epoch = math.ceil(data.n_train / train.batch_size)
    test_steps = len(lr_range_test(train, data).lrs)
    tracker = BudgetTracker(budget, spent=test_steps / steps_per_epoch)
    coarse_epochs = max(1, epochs // 3)
    coarse_trials = 12
    fine_trials = max(1, round((budget - tracker.spent - coarse_trials * coarse_epochs) / (2 * epochs)))
    plan = CoarseToFine(stages=3, coarse_trials=coarse_trials, coarse_epochs=coarse_epochs, fine_trials=fine_trials)
    spec = StudySpec(name="c2f", strategy="coarse-to-fine", seed=seed, coarse_to_fine=plan, train=train)
    run_study(spec, "memory", data=data, callbacks=[tracker])
    return tracker


def iqr_text(values: list[float]) -> str:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"{median:.4f} [{q1:.4f}, {q3:.4f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=float, default=300.0, help="trial-epochs per run")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--plot", default="compare_strategies.png")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    names = args.datasets.split(",")
    figure, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
    started = time.monotonic()
    for ax, name in zip(axes[0], names, strict=True):
        runs = {s: [run_one(s, DATASETS[name], seed, args.budget, args.epochs) for seed in range(args.seeds)]
                for s in STRATEGIES}
        print(f"\n{name} ({DATASETS[name]}): best val_loss, median [IQR] over {args.seeds} seeds, "
              f"budget {args.budget:g} trial-epochs")
        print(f"{'strategy':>15} " + " ".join(f"{f'{int(f * 100)}% budget':>26}" for f in FRACTIONS))
        at = {s: {f: [r.best_at(f * args.budget) for r in runs[s]] for f in FRACTIONS} for s in STRATEGIES}
        for strategy in STRATEGIES:
            print(f"{strategy:>15} " + " ".join(f"{iqr_text(at[strategy][f]):>26}" for f in FRACTIONS))
        pvalues = [mannwhitneyu(at["coarse-to-fine"][f], at["tpe"][f], alternative="less").pvalue for f in FRACTIONS]
        print(f"{'p (c2f < tpe)':>15} " + " ".join(f"{p:>26.3g}" for p in pvalues))
        target = float(np.median(at["tpe"][1.0]))
        grid = np.linspace(0, args.budget, 201)
        medians = {s: [np.median([r.best_at(b) for r in runs[s]]) for b in grid] for s in STRATEGIES}
        reached = next((b for b, m in zip(grid, medians["coarse-to-fine"], strict=True) if m <= target), None)
        share = f"{reached / args.budget:.0%} of the budget" if reached is not None else "not within the budget"
        print(f"coarse-to-fine median reaches TPE's final median {target:.4f} at {share} (goal: <= 50%)")
        for strategy in STRATEGIES:
            ax.plot(grid, medians[strategy], label=strategy)
        ax.set_yscale("log")
        ax.set_xlabel("budget spent (trial-epochs)")
        ax.set_ylabel("best val_loss so far (median over seeds)")
        ax.set_title(name)
        ax.legend()
    figure.savefig(args.plot, dpi=120, bbox_inches="tight")
    print(f"\nplot: {args.plot}; {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
