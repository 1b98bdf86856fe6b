"""How many full-length trials inside a band of learning rates a search needs before its median best value
reaches a target: the bound under scripts/compare_strategies.py's share of the budget.

On digits one config's final val_loss moves with the seed more than it differs between good configs, so a
study's best value is the luckiest of its full-length trials near the best lr. This draws trials at random
inside a band (lr log-uniform over ``--lr LOW HIGH``, weight decay log-uniform over the default space), each
trained in full with its study's seed as every trial of a study is, and prints the median best over seeds after
n trials: what a search would reach that knew the band from its first trial and never left it. The key ratio:
the fewest trials whose median best reaches ``--target``, and their trial-epochs as a share of ``--budget``.
Run: python scripts/best_of_n.py [--dataset digits] [--lr 0.008 0.02] [--trials 15] [--seeds 40] [--target T]
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch

from hpsearch import TrainConfig, load_data
from hpsearch.engine.training import train
from hpsearch.search.space import DEFAULT_SPACE


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draws(dataset: str, lr_band: tuple[float, float], trials: int, seeds: range, epochs: int) -> np.ndarray:
    """Final val_loss of ``trials`` random configs in the band per seed (seeds x trials); a diverged or
    non-finite run counts as inf, as a search would never keep it as its best."""
    data = load_data(dataset)
    decay = next(p for p in DEFAULT_SPACE.params if p.name == "weight_decay")
    assert decay.low is not None and decay.high is not None
    values = np.full((len(seeds), trials), math.inf)
    for row, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        for column in range(trials):
            config = TrainConfig(dataset=dataset, epochs=epochs, seed=seed, lr=log_uniform(rng, *lr_band),
                                 weight_decay=log_uniform(rng, decay.low, decay.high))
            result = train(config, data)
            if result.status == "completed" and math.isfinite(result.val_loss):
                values[row, column] = result.val_loss
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--lr", nargs=2, type=float, default=[0.008, 0.02], metavar=("LOW", "HIGH"),
                        help="the band of learning rates every trial is drawn from (log-uniform)")
    parser.add_argument("--trials", type=int, default=15, help="full-length trials per seed")
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--budget", type=float, default=300.0, help="trial-epochs the share is of")
    parser.add_argument("--target", type=float, default=None,
                        help="a best value to reach, e.g. TPE's median final value from compare_strategies.py")
    args = parser.parse_args()
    low, high = args.lr
    if not 0 < low < high:
        parser.error(f"--lr: needs 0 < LOW < HIGH, got {low:g} {high:g}")
    values = draws(args.dataset, (low, high), args.trials, range(args.seeds), args.epochs)
    best = np.minimum.accumulate(values, axis=1)
    print(f"{args.dataset}: best val_loss after n full-length trials with lr in [{low:g}, {high:g}], "
          f"median [IQR] over {args.seeds} seeds")
    print(f"{'n':>4} {'trial-epochs':>13} {'best val_loss':>28}")
    for n in range(1, args.trials + 1):
        column = best[:, n - 1]
        method = "linear" if np.isfinite(column).all() else "nearest"  # interpolating next to inf gives nan
        q1, median, q3 = np.percentile(column, [25, 50, 75], method=method)
        print(f"{n:>4} {n * args.epochs:>13} {f'{median:.4f} [{q1:.4f}, {q3:.4f}]':>28}")
    if args.target is not None:
        reached = np.flatnonzero(np.median(best, axis=0) <= args.target)
        if reached.size:
            n = int(reached[0]) + 1
            print(f"median best reaches {args.target:.4f} after {n} full-length trials in the band: "
                  f"{n * args.epochs} trial-epochs, {n * args.epochs / args.budget:.0%} of a {args.budget:g} budget")
        else:
            print(f"median best reaches {args.target:.4f}: not within {args.trials} full-length trials in the band")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)  # one thread: each run is small, and two scripts may share this machine
    sys.exit(main())
