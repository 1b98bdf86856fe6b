"""Grid, random, TPE (median and hyperband pruners) and coarse-to-fine at the same budget of trial-epochs,
over seeds and datasets.

Budget is counted in epochs actually trained (a pruned trial counts the epochs it ran; the LR range
test counts its batches as a fraction of an epoch). For each run the best validation loss so far is
recorded against the budget spent. Prints median and interquartile range at 25%, 50% and 100% of
the budget, and for each TPE baseline the Mann-Whitney U p-values (coarse-to-fine below it,
one-sided) and the share of the budget at which coarse-to-fine's median first reaches the
baseline's median final value, with a 90% bootstrap interval over the seeds (how much of that share is
seed luck); saves the best-so-far curves.
Variants of coarse-to-fine, to measure what each of its parts does: --coarse-pruner median (the coarse
stage of a third of the epochs, as before), --coarse-pruner / --fine-pruner asha, --fine-pruner median
(the fine stages' pruner before), --first-trials suggestion (the LR test's suggestion
alone, without its neighbours), --no-carry (fine stages that start from nothing), --no-trusted-epoch (fine
stages that prune from epoch 1 and narrow around the stage before's ranking however early it pruned),
--prior-decades 1 (the LR prior a decade below the suggestion, as before); --strategies runs a subset.
Run: python scripts/compare_strategies.py [--seeds 10] [--first-seed 0] [--budget 300] [--datasets NAME ...] [--plot F]
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend must be chosen first
import numpy as np
import optuna
from scipy.stats import bootstrap, mannwhitneyu

from hpsearch import StudySpec, TrainConfig, load_data, run_study
from hpsearch.engine import lr_finder
from hpsearch.engine.data import TaskData
from hpsearch.engine.lr_finder import lr_range_test
from hpsearch.errors import HPSearchError
from hpsearch.search import coarse_to_fine, runner
from hpsearch.search.records import read_record, read_trial
from hpsearch.search.spec import CoarseToFine

# Label → (strategy, pruner); coarse-to-fine is planned apart (run_coarse_to_fine).
STRATEGIES = {"grid": ("grid", "median"), "random": ("random", "median"), "tpe": ("tpe", "median"),
              "tpe-hyperband": ("tpe", "hyperband"), "coarse-to-fine": ("coarse-to-fine", "median")}
BASELINES = ("tpe", "tpe-hyperband")
FRACTIONS = (0.25, 0.5, 1.0)
# noise=10 makes the 784-dimensional clusters overlap: the best lr then matters (val loss 0.76 at
# 3e-4 against 1.9 at 1e-4 and 1.9 at 1e-2 after 5 epochs), unlike the default noise where all is separable.
DATASETS = {"digits": "digits", "mnist-shaped": "synthetic:n=6000,d=784,classes=10,noise=10"}
# The most batches the LR range test trains (lr_range_test's default, as run_study runs it); it stops
# sooner when the loss blows up. Only the plan of fine trials uses it: the budget counts the real batches.
LR_TEST_MAX_STEPS: int = inspect.signature(lr_range_test).parameters["steps"].default
ASHA_EPOCHS_PER_TRIAL = 2.5
FINE_EPOCH_SHARE = 0.3
NOT_REACHED = 1.5  # the share of the budget of a median that never reaches its target, for the bootstrap


class BudgetTracker:
    """Optuna callback: adds each trial's epochs to the budget spent, records best-so-far, stops at the budget.

    With ``lr_test_steps_per_epoch`` the LR range test that run_study ran before the first trial is
    counted too, as its batches over an epoch's, read from the record stored with the first study: the
    test then runs once, inside run_study, and is still paid for before any trial's epochs.
    """

    def __init__(self, budget: float, lr_test_steps_per_epoch: int | None = None) -> None:
        self.budget = budget
        self.spent = 0.0
        self.best = math.inf
        self.curve: list[tuple[float, float]] = []
        self._lr_test_steps_per_epoch = lr_test_steps_per_epoch

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self._lr_test_steps_per_epoch is not None:
            self.spent += lr_test_batches(study) / self._lr_test_steps_per_epoch
            self._lr_test_steps_per_epoch = None
        self.spent += len(read_trial(trial).history or [])
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
            self.best = min(self.best, trial.value)
        self.curve.append((self.spent, self.best))
        if self.spent >= self.budget:
            study.stop()

    def best_at(self, budget: float) -> float:
        """Best value reached having spent at most ``budget`` trial-epochs."""
        values = [best for spent, best in self.curve if spent <= budget]
        return min(values) if values else math.inf


def lr_test_batches(study: optuna.Study) -> int:
    """Batches the LR range test stored with ``study`` trained (one per swept lr)."""
    stored = read_record(study).lr_range_test
    if stored is None:
        raise HPSearchError(f"study {study.study_name!r} holds no LR range test to count")
    return len(stored["lrs"])


def run_one(label: str, dataset: str, data: TaskData, seed: int, args: argparse.Namespace) -> BudgetTracker:
    """One run of the strategy labelled ``label`` on a fresh in-memory storage, to the budget."""
    budget, epochs = args.budget, args.epochs
    train = TrainConfig(dataset=dataset, epochs=epochs, seed=seed)
    strategy, pruner = STRATEGIES[label]
    if strategy == "coarse-to-fine":
        return run_coarse_to_fine(train, data, seed, budget, epochs, args.coarse_pruner, args.fine_pruner)
    tracker = BudgetTracker(budget)
    spec = StudySpec(name=label, strategy=strategy, pruner=pruner, seed=seed, n_trials=10_000, grid_points=5,
                     train=train)
    run_study(spec, "memory", data=data, callbacks=[tracker])
    return tracker


def run_coarse_to_fine(train: TrainConfig, data: TaskData, seed: int, budget: float, epochs: int,
                       coarse_pruner: str, fine_pruner: str) -> BudgetTracker:
    """Coarse-to-fine with its fine stages sized to fill what the LR test and the coarse stage leave."""
    # The LR range test is part of the budget: its batches as a share of an epoch's batches.
    steps_per_epoch = math.ceil(data.n_train / train.batch_size)
    tracker = BudgetTracker(budget, lr_test_steps_per_epoch=steps_per_epoch)
    coarse_trials = 12
    # Under asha or hyperband most coarse trials stop after an epoch or three and a few go on to full
    # length: about ASHA_EPOCHS_PER_TRIAL epochs a trial. Otherwise the coarse trials train a third of the epochs.
    asha = coarse_pruner in ("asha", "hyperband")  # pruners with rungs: full-length coarse trials
    coarse_epochs = 0 if asha else max(1, epochs // 3)
    coarse_cost = coarse_trials * (ASHA_EPOCHS_PER_TRIAL if asha else coarse_epochs)
    # Planned before the test runs, so with its most batches: fine stages never planned past the budget.
    lr_test_epochs = LR_TEST_MAX_STEPS / steps_per_epoch
    # Fine stages of the default size until the budget is spent (the tracker stops the run there): as many
    # as would fit if their pruned trials trained FINE_EPOCH_SHARE of the epochs, so that none is left unused.
    fine_trials = CoarseToFine().fine_trials
    left = max(budget - lr_test_epochs - coarse_cost, 0.0)
    stages = 1 + max(2, math.ceil(left / (fine_trials * epochs * FINE_EPOCH_SHARE)))
    plan = CoarseToFine(stages=stages, coarse_trials=coarse_trials, coarse_epochs=coarse_epochs,
                        fine_trials=fine_trials, coarse_pruner=coarse_pruner, fine_pruner=fine_pruner)
    spec = StudySpec(name="c2f", strategy="coarse-to-fine", seed=seed, coarse_to_fine=plan, train=train)
    run_study(spec, "memory", data=data, callbacks=[tracker])
    return tracker


def iqr_text(values: list[float]) -> str:
    """Median [IQR]; "-" for a run with no finished trial yet (inf), which ranks worst."""
    # Interpolating between inf and a value gives nan (and a warning): take the nearest rank then.
    method = "linear" if all(math.isfinite(v) for v in values) else "nearest"
    q1, median, q3 = (f"{q:.4f}" if math.isfinite(q) else "-" for q in np.percentile(values, [25, 50, 75],
                                                                                        method=method))
    return f"{median} [{q1}, {q3}]"


def dataset_label(name: str) -> tuple[str, str]:
    """(label, dataset name): a default's label gives its dataset; any other name labels itself."""
    return (name, DATASETS[name]) if name in DATASETS else (name, name)


def print_table(at: dict[str, dict[float, list[float]]]) -> None:
    """Median [IQR] of the best value per strategy at each share of the budget, then the p-value rows."""
    print(f"{'strategy':>26} " + " ".join(f"{f'{int(f * 100)}% budget':>26}" for f in FRACTIONS))
    for label in at:
        print(f"{label:>26} " + " ".join(f"{iqr_text(at[label][f]):>26}" for f in FRACTIONS))
    if "coarse-to-fine" not in at:
        return
    for baseline in (b for b in BASELINES if b in at):
        pvalues = [mannwhitneyu(at["coarse-to-fine"][f], at[baseline][f], alternative="less").pvalue
                   for f in FRACTIONS]
        print(f"{f'p (c2f < {baseline})':>26} " + " ".join(f"{p:>26.3g}" for p in pvalues))


def print_key_ratios(at: dict[str, dict[float, list[float]]], curves: dict[str, np.ndarray],
                     grid: np.ndarray, budget: float) -> None:
    """For each TPE baseline: the share of the budget at which coarse-to-fine's median first reaches the
    baseline's median final value, with a 90% bootstrap interval over the seeds of both (how much of it
    is seed luck), and the p-value of coarse-to-fine below it at the whole budget."""
    for baseline in (b for b in BASELINES if b in at and "coarse-to-fine" in at):
        finals = np.asarray(at[baseline][1.0])
        share = reach_share(curves["coarse-to-fine"], finals, grid, budget)
        interval = bootstrap(
            (np.arange(len(curves["coarse-to-fine"])), np.arange(len(finals))),
            lambda runs, others, finals=finals: reach_share(curves["coarse-to-fine"][runs], finals[others], grid,
                                                            budget),
            vectorized=False, paired=False, confidence_level=0.9, n_resamples=999, method="percentile",
            random_state=0).confidence_interval
        text = " - ".join(share_text(x) for x in (interval.low, interval.high))
        pvalue = mannwhitneyu(at["coarse-to-fine"][1.0], at[baseline][1.0], alternative="less").pvalue
        print(f"coarse-to-fine median reaches {baseline}'s final median {float(np.median(finals)):.4f}: "
              f"{share_text(share, ' of the budget')} (90% bootstrap interval over seeds: {text}; goal: <= 50%); "
              f"p (c2f < {baseline}) at 100%: {pvalue:.3g}")


def reach_share(curves: np.ndarray, finals: np.ndarray, grid: np.ndarray, budget: float) -> float:
    """The share of the budget at which the median of ``curves`` (runs x grid) first reaches the median of
    ``finals``; NOT_REACHED when it never does."""
    reached = np.flatnonzero(np.median(curves, axis=0) <= np.median(finals))
    return float(grid[reached[0]] / budget) if reached.size else NOT_REACHED


def share_text(share: float, unit: str = "") -> str:
    return "not within the budget" if share >= NOT_REACHED else f"{share:.0%}{unit}"


def compare(label: str, dataset: str, data: TaskData, args: argparse.Namespace, ax: plt.Axes) -> None:
    """Every strategy over the seeds on one dataset: print its table and key ratios, draw its curves on ``ax``."""
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs = {s: [run_one(s, dataset, data, seed, args) for seed in seeds] for s in args.strategies}
    print(f"\n{label} ({dataset}): best val_loss, median [IQR] over {args.seeds} seeds from {args.first_seed}, "
          f"budget {args.budget:g} trial-epochs")
    at = {s: {f: [r.best_at(f * args.budget) for r in runs[s]] for f in FRACTIONS} for s in args.strategies}
    print_table(at)
    grid = np.linspace(0, args.budget, 201)
    curves = {s: np.array([[r.best_at(b) for b in grid] for r in runs[s]]) for s in args.strategies}
    print_key_ratios(at, curves, grid, args.budget)
    for strategy in args.strategies:
        ax.plot(grid, np.median(curves[strategy], axis=0), label=strategy)
    ax.set_yscale("log")
    ax.set_xlabel("budget spent (trial-epochs)")
    ax.set_ylabel("best val_loss so far (median over seeds)")
    ax.set_title(label)
    ax.legend()


def load_datasets(parser: argparse.ArgumentParser, names: list[str], data_dir: str | None,
                  ) -> list[tuple[str, str, TaskData]]:
    """(label, dataset, data) for each name, loaded once before any run: a bad name stops the script at once."""
    loaded = []
    for label, dataset in map(dataset_label, names):
        try:
            loaded.append((label, dataset, load_data(dataset, data_dir=data_dir)))
        except HPSearchError as exc:
            parser.error(f"--datasets {label}: {exc}")
    return loaded


class OncePerMessage(logging.Filter):
    """Lets each distinct message through once (until ``seen`` is cleared): the LR test's warnings say the same of
    a dataset on every run.
    Written here because logging, unlike warnings, has no "once" action."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def _variants(args: argparse.Namespace) -> None:
    """The parts of coarse-to-fine turned off for a measurement, by replacing the runner's functions."""
    if args.first_trials == "suggestion":
        original = runner.first_trials
        runner.first_trials = lambda lr_test, space: [  # type: ignore[assignment]
            {"lr": p["lr"]} for p in original(lr_test, space)[:1]]
    if args.no_carry:
        runner.carried_trials = lambda earlier, spec: []  # type: ignore[assignment]
    if args.no_trusted_epoch:
        coarse_to_fine.trusted_epoch = lambda trials: None  # type: ignore[assignment]
    lr_finder.PRIOR_DECADES_BELOW = args.prior_decades


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run are first-seed .. first-seed + seeds - 1: another set tells seed luck apart")
    parser.add_argument("--budget", type=float, default=300.0, help="trial-epochs per run")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), metavar="NAME",
                        help=f"datasets (digits, mnist, npz:PATH, synthetic:..., ...); default {' '.join(DATASETS)}, "
                             f"where mnist-shaped is {DATASETS['mnist-shaped']}")
    parser.add_argument("--data-dir", default=None, help="folder of the files of mnist, fashion-mnist, cifar10")
    parser.add_argument("--plot", default="compare_strategies.png")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES), metavar="S",
                        help=f"a subset of {' '.join(STRATEGIES)}")
    parser.add_argument("--coarse-pruner", default="hyperband", choices=["asha", "hyperband", "median"],
                        help="coarse-to-fine's coarse stage: hyperband (default) or asha at full length, or median "
                             "at a third of the epochs (as before)")
    parser.add_argument("--first-trials", default="neighbours", choices=["neighbours", "suggestion"],
                        help="what the LR test enqueues first: its suggestion and a neighbour each side, or "
                             "the suggestion alone")
    parser.add_argument("--fine-pruner", default="hyperband", choices=["median", "hyperband", "asha"],
                        help="the pruner of coarse-to-fine's fine stages (default hyperband, the library's)")
    parser.add_argument("--no-carry", action="store_true", help="fine stages start from no earlier trial")
    parser.add_argument("--no-trusted-epoch", action="store_true",
                        help="fine stages prune from epoch 1 and always narrow (the trusted epoch unused)")
    parser.add_argument("--prior-decades", type=float, default=lr_finder.PRIOR_DECADES_BELOW,
                        help="how many decades below the LR test's suggestion its prior reaches")
    args = parser.parse_args()
    _variants(args)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    once = OncePerMessage()
    logging.getLogger(lr_finder.__name__).addFilter(once)
    datasets = load_datasets(parser, args.datasets, args.data_dir)
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    started = time.monotonic()
    for ax, (label, dataset, data) in zip(axes[0], datasets, strict=True):
        once.seen.clear()  # each dataset's warnings once
        compare(label, dataset, data, args, ax)
    figure.savefig(args.plot, dpi=120, bbox_inches="tight")
    print(f"\nplot: {args.plot}; {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
