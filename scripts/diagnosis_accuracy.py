"""How far the trial labels and the update/weight check can be trusted, on runs whose fate is known by construction.

Per task (digits and synthetic clusters with the built-in MLP, image-shaped digits with examples/cnn_digits.py's
CNN) a small search (a log grid of lrs, one seed) finds the best lr by final val_loss. Around it the corpus is
trained with the real engine, each run with a fate set by its lr: ``good`` (the best lr: OK), ``too low`` (a
thousandth of it: STUCK), ``too high`` (a hundred times it: DIVERGING, or STUCK when the run collapsed to the
chance level: not stopped by the engine and its final accuracy within two standard errors of the largest class's
share, judged here without the diagnosis code), and on the two MLP tasks ``overfit`` (the best lr, no weight
decay, a small training subset trained long: OVERFITTING). Prints each label's precision and recall, with and
without the task's chance level (without it is the diagnosis before the chance rule), and per task the
update/weight check at the best lr and at ten times it. Goals: every label >= 90% precision and recall; the
check quiet at the best lr on every task and warning at 10x.
Run: python scripts/diagnosis_accuracy.py [--seeds 3] [--epochs 6] [--overfit-epochs 40] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from hpsearch import TrainConfig
from hpsearch.engine.checks import PASS, check_update_ratio
from hpsearch.engine.data import Data, TaskData
from hpsearch.engine.diagnosis import LABELS, diagnose
from hpsearch.engine.task import load_task_data
from hpsearch.engine.training import TrainResult, train

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cnn_digits.py"
TASKS = {
    "digits": TrainConfig(dataset="digits", batch_size=64),
    "synthetic": TrainConfig(dataset="synthetic:n=2000,d=32,classes=4,noise=3", batch_size=64),
    "cnn": TrainConfig(model=f"{EXAMPLE}:net", dataset=f"{EXAMPLE}:load", batch_size=64),
}
OVERFIT_TASKS = ("digits", "synthetic")
GRID = [10 ** (e / 2) for e in range(-8, -1)]  # 1e-4 .. 0.1
LOW, HIGH, OVERFIT_SUBSET = 1e-3, 100.0, 64


@dataclass(frozen=True)
class Run:
    task: str
    fate: str
    truth: str
    label: str
    label_without_chance: str


def search(config: TrainConfig, data: TaskData, grid: list[float]) -> float:
    """The lr of the grid with the lowest final val_loss of a completed run (seed 0)."""
    values = {}
    for lr in grid:
        result = train(config.replace(lr=lr), data)
        if result.status == "completed" and math.isfinite(result.val_loss):
            values[lr] = result.val_loss
    return min(values, key=values.__getitem__)


def collapsed(result: TrainResult, data: TaskData) -> bool:
    """Not stopped by the engine and its final accuracy within two standard errors of the largest class's share."""
    if result.status != "completed" or not isinstance(data, Data):
        return False
    share = float(torch.bincount(data.y_val.long()).max()) / data.n_val
    return result.val_acc <= share + 2 * math.sqrt(share * (1 - share) / data.n_val)


def labelled(task: str, fate: str, truth: str, result: TrainResult) -> Run:
    history = result.to_dict()["history"]
    return Run(task, fate, truth, diagnose(history, result.status, result.chance).label,
               diagnose(history, result.status).label)


def corpus(task: str, config: TrainConfig, data: TaskData, best: float, seeds: int, epochs: int,
           overfit_epochs: int) -> list[Run]:
    runs = []
    for seed in range(seeds):
        base = config.replace(seed=seed, epochs=epochs)
        runs.append(labelled(task, "good", "OK", train(base.replace(lr=best), data)))
        runs.append(labelled(task, "too low", "STUCK", train(base.replace(lr=best * LOW), data)))
        high = train(base.replace(lr=best * HIGH), data)
        runs.append(labelled(task, "too high", "STUCK" if collapsed(high, data) else "DIVERGING", high))
        if task in OVERFIT_TASKS:
            small = base.replace(lr=best, weight_decay=0.0, subset=OVERFIT_SUBSET, epochs=overfit_epochs)
            runs.append(labelled(task, "overfit", "OVERFITTING", train(small, load_task_data(small))))
    return runs


def scores(runs: list[Run], attribute: str) -> dict[str, tuple[float, float, int]]:
    """Per label that is true or given for some run: precision, recall and how many runs have it as truth."""
    given = Counter(getattr(r, attribute) for r in runs)
    truth = Counter(r.truth for r in runs)
    right = Counter(r.truth for r in runs if getattr(r, attribute) == r.truth)
    return {label: (right[label] / given[label] if given[label] else math.nan,
                    right[label] / truth[label] if truth[label] else math.nan, truth[label])
            for label in LABELS if given[label] or truth[label]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", type=int, default=3, help="runs per fate and task")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--overfit-epochs", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="one seed, three grid lrs, few epochs: a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    grid, seeds, epochs, overfit_epochs = GRID, args.seeds, args.epochs, args.overfit_epochs
    if args.quick:
        grid, seeds, epochs, overfit_epochs = GRID[3:6], 1, 3, 15
    runs, checks = [], {}
    for task in args.tasks:
        config = TASKS[task].replace(epochs=epochs)
        data = load_task_data(config)
        best = search(config, data, grid)
        checks[task] = (best, *(check_update_ratio(config.replace(lr=lr), data) for lr in (best, 10 * best)))
        runs += corpus(task, config, data, best, seeds, epochs, overfit_epochs)
    print(f"{'task':>10} {'fate':>9} {'truth':>12} {'label':>12} {'without chance':>15}")
    for run in runs:
        print(f"{run.task:>10} {run.fate:>9} {run.truth:>12} {run.label:>12} {run.label_without_chance:>15}")
    worst = 1.0
    print(f"\n{'label':>12} {'runs':>5} {'precision':>10} {'recall':>7}   {'without chance rule':>19}")
    before = scores(runs, "label_without_chance")
    for label, (precision, recall, n) in scores(runs, "label").items():
        old = before.get(label, (math.nan, math.nan, n))
        worst = min(worst, precision if math.isfinite(precision) else 0.0, recall if math.isfinite(recall) else 0.0)
        print(f"{label:>12} {n:>5} {precision:>10.0%} {recall:>7.0%}   {old[0]:>9.0%} {old[1]:>9.0%}")
    print(f"\n{'task':>10} {'best lr':>8} {'check at best':>14} {'at 10x':>7}   largest ratios at best")
    quiet = loud = 0
    for task, (best, at_best, at_ten) in checks.items():
        quiet += at_best.outcome == PASS
        loud += at_ten.outcome != PASS
        ratios = at_best.measured.split(': ', 1)[1]
        print(f"{task:>10} {best:>8.2g} {at_best.outcome:>14} {at_ten.outcome:>7}   {ratios}")
    print(f"\nlowest label precision or recall: {worst:.0%} (goal >= 90%); update/weight check quiet at the best lr "
          f"on {quiet} of {len(checks)} tasks, warning at 10x on {loud} of {len(checks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
