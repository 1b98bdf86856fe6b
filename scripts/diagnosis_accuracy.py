"""How far the trial labels and the update/weight check can be trusted, on runs whose fate is known by construction.

Per task (digits and synthetic clusters with the built-in MLP, image-shaped digits with examples/cnn_digits.py's
CNN) a small search (a log grid of lrs, seed 0, AdamW) finds the best lr and the epoch of its best val_loss. Around
it the corpus is trained with the real engine, per seed, each run with a fate set by how it was made and judged
here without the diagnosis code:
- ``good``: the best lr trained to the epoch where the search's val_loss was best (a practitioner stops there) -> OK;
- ``too low``: a thousandth of the best lr -> STUCK;
- ``too high``: the lowest lr of a ladder from 10x the best lr (steps of sqrt(10)) at which the run diverged (the
  engine stopped it) -> DIVERGING, or collapsed to the chance level (completed with a final accuracy within two
  standard errors of the largest class's share) -> STUCK; the ladder's lrs below it, neither, are not in the corpus;
- ``overfit``: the best lr, no weight decay, a small training subset trained until it is memorized -> OVERFITTING.
No fate makes an oscillating run, so OSCILLATING is reported by precision only: any run given it is a false alarm.
Prints each label's runs, precision and recall (and without the chance rule, the diagnosis before it), and the
update/weight check at the best lr and at ten times it, per task, with AdamW and (digits, CNN) SGD with momentum.
Goals: every label >= 90% precision and recall; the check quiet at the best lr of every task and warning at 10x.
Run: python scripts/diagnosis_accuracy.py [--seeds 5] [--epochs 6] [--quick]
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
from hpsearch.engine.checks import PASS, CheckResult, check_update_ratio
from hpsearch.engine.data import Data, TaskData
from hpsearch.engine.diagnosis import LABELS, diagnose
from hpsearch.engine.task import load_task_data
from hpsearch.engine.training import TrainResult, train
from hpsearch.status import Status

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cnn_digits.py"
TASKS = {
    "digits": TrainConfig(dataset="digits", batch_size=64),
    "synthetic": TrainConfig(dataset="synthetic:n=2000,d=32,classes=4,noise=3", batch_size=64),
    "cnn": TrainConfig(model=f"{EXAMPLE}:net", dataset=f"{EXAMPLE}:load", batch_size=64),
}
# The optimizers the update/weight check is measured with: AdamW on every task, SGD with momentum on digits and the CNN.
SGD = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0}
CHECKED = [(task, "adamw", {}) for task in TASKS] + [("digits", "sgd", SGD), ("cnn", "sgd", SGD)]
GRID = [10 ** (e / 2) for e in range(-8, -1)]  # 1e-4 .. 0.1, AdamW
SGD_GRID = [10 ** (e / 2) for e in range(-6, 1)]  # 1e-3 .. 1
LOW = 1e-3  # too low: this share of the best lr
LADDER = [10 ** (e / 2) for e in range(2, 9)]  # too high: 10x .. 10,000x the best lr
# Overfit: this many training samples in batches of OVERFIT_BATCH for OVERFIT_EPOCHS epochs (hundreds of steps:
# the subset's training loss reaches ~0, memorized, while the validation loss climbs from its best).
OVERFIT_SUBSET, OVERFIT_BATCH, OVERFIT_EPOCHS = 64, 16, 60
NO_FATE = ("OSCILLATING",)


@dataclass(frozen=True)
class Run:
    task: str
    fate: str
    lr: float
    truth: str
    label: str
    label_without_chance: str


@dataclass(frozen=True)
class Best:
    lr: float
    epoch: int  # the epoch of the best val_loss at that lr
    val_loss: dict[float, float]  # the lowest val_loss of each lr of the search (inf: diverged)


def search(config: TrainConfig, data: TaskData, grid: list[float]) -> Best:
    """The lr of the grid whose run (seed 0) reached the lowest val_loss, and the epoch it did."""
    lowest, epochs = {}, {}
    for lr in grid:
        result = train(config.replace(lr=lr), data)
        losses = [m.val_loss for m in result.history]
        finite = result.status == Status.COMPLETED and all(math.isfinite(v) for v in losses)
        lowest[lr] = min(losses) if finite else math.inf
        epochs[lr] = losses.index(lowest[lr]) + 1 if finite else 0
    best = min(lowest, key=lowest.__getitem__)
    if not math.isfinite(lowest[best]):
        raise SystemExit(f"no lr of {grid} trained {config.dataset} to a finite val_loss")
    return Best(best, epochs[best], lowest)


def collapsed(result: TrainResult, data: TaskData) -> bool:
    """Completed, and its final accuracy within two standard errors of the largest class's share."""
    if result.status != Status.COMPLETED or not isinstance(data, Data):
        return False
    share = float(torch.bincount(data.y_val.long()).max()) / data.n_val
    return result.val_acc <= share + 2 * math.sqrt(share * (1 - share) / data.n_val)


def labelled(task: str, fate: str, truth: str, result: TrainResult) -> Run:
    history = result.to_dict()["history"]
    return Run(task, fate, result.config.lr, truth, diagnose(history, result.status, result.chance).label,
               diagnose(history, result.status).label)


def too_high(task: str, config: TrainConfig, data: TaskData, best: float) -> Run | None:
    """The first lr up the ladder at which the run diverged or collapsed, or None when none did."""
    for factor in LADDER:
        result = train(config.replace(lr=best * factor), data)
        if result.status == Status.DIVERGED:
            return labelled(task, "too high", "DIVERGING", result)
        if collapsed(result, data):
            return labelled(task, "too high", "STUCK", result)
    return None


def corpus(task: str, config: TrainConfig, data: TaskData, best: Best, seeds: int, overfit_epochs: int,
           ) -> list[Run]:
    runs = []
    for seed in range(seeds):
        base = config.replace(seed=seed)
        good = base.replace(lr=best.lr, epochs=max(2, best.epoch))
        runs.append(labelled(task, "good", "OK", train(good, data)))
        runs.append(labelled(task, "too low", "STUCK", train(base.replace(lr=best.lr * LOW), data)))
        high = too_high(task, base, data, best.lr)
        if high is not None:
            runs.append(high)
        small = base.replace(lr=best.lr, weight_decay=0.0, subset=OVERFIT_SUBSET, batch_size=OVERFIT_BATCH,
                             epochs=overfit_epochs)
        runs.append(labelled(task, "overfit", "OVERFITTING", train(small, load_task_data(small))))
    return runs


def scores(runs: list[Run], attribute: str) -> dict[str, tuple[int, int, float, float]]:
    """Per label that is true or given for some run: runs with it as truth, runs given it, precision, recall."""
    given = Counter(getattr(r, attribute) for r in runs)
    truth = Counter(r.truth for r in runs)
    right = Counter(r.truth for r in runs if getattr(r, attribute) == r.truth)
    return {label: (truth[label], given[label], right[label] / given[label] if given[label] else math.nan,
                    right[label] / truth[label] if truth[label] else math.nan)
            for label in LABELS if given[label] or truth[label] or label in NO_FATE}


def percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"


def print_labels(runs: list[Run]) -> float:
    """The per-label table; returns the lowest precision or recall (a label never given has no precision)."""
    print(f"\n{'label':>12} {'runs':>5} {'given':>6} {'precision':>10} {'recall':>7}   without chance rule")
    before = scores(runs, "label_without_chance")
    worst = 1.0
    for label, (n, given, precision, recall) in scores(runs, "label").items():
        _, _, old_precision, old_recall = before.get(label, (n, 0, math.nan, math.nan))
        worst = min([worst] + [v for v in (precision, recall) if not math.isnan(v)])
        print(f"{label:>12} {n:>5} {given:>6} {percent(precision):>10} {percent(recall):>7}   "
              f"{percent(old_precision):>9} {percent(old_recall):>7}")
    return worst


def print_checks(checks: dict[tuple[str, str], tuple[Best, CheckResult, CheckResult]]) -> tuple[int, int]:
    """The check's table: its outcome at the best lr and at 10x, and the search's lowest val_loss at each (whether
    10x is worse at all: '-' where 10x was not in the grid)."""
    print(f"\n{'task':>10} {'optimizer':>9} {'best lr':>8} {'val_loss':>8} {'at 10x':>7} {'check':>6} {'at 10x':>7}   "
          f"largest ratios at best; at 10x")
    quiet = loud = 0
    for (task, optimizer), (best, at_best, at_ten) in checks.items():
        quiet += at_best.outcome == PASS
        loud += at_ten.outcome != PASS
        ratios = [r.measured.split(": ", 1)[1].split(";")[0] for r in (at_best, at_ten)]
        ten = next((f"{v:.3f}" for lr, v in best.val_loss.items() if math.isclose(lr, 10 * best.lr)), "-")
        print(f"{task:>10} {optimizer:>9} {best.lr:>8.2g} {best.val_loss[best.lr]:>8.3f} {ten:>7} "
              f"{at_best.outcome:>6} {at_ten.outcome:>7}   {ratios[0]}; {ratios[1]}")
    return quiet, loud


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", type=int, default=5, help="runs per fate and task")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the search and of the too low/high runs")
    parser.add_argument("--quick", action="store_true", help="one seed, three grid lrs, few epochs: a smoke run")
    args = parser.parse_args()
    # One thread: these models are too small to gain from more, and on a shared machine more threads spin and wait
    # (the same run took 10x longer with two threads beside other jobs).
    torch.set_num_threads(1)
    grid, sgd_grid, seeds, epochs, overfit_epochs = GRID, SGD_GRID, args.seeds, args.epochs, OVERFIT_EPOCHS
    if args.quick:
        grid, sgd_grid, seeds, epochs, overfit_epochs = GRID[3:6], SGD_GRID[3:6], 1, 3, 20
    runs, checks = [], {}
    for task in args.tasks:
        config = TASKS[task].replace(epochs=epochs)
        data = load_task_data(config)
        best = search(config, data, grid)
        runs += corpus(task, config, data, best, seeds, overfit_epochs)
        for _, optimizer, options in (c for c in CHECKED if c[0] == task):
            tuned = config.replace(**options)
            found = best if optimizer == "adamw" else search(tuned, data, sgd_grid)
            checks[task, optimizer] = (found, *(check_update_ratio(tuned.replace(lr=x), data)
                                                for x in (found.lr, 10 * found.lr)))
    print(f"{'task':>10} {'fate':>9} {'lr':>8} {'truth':>12} {'label':>12} {'without chance':>15}")
    for run in runs:
        print(f"{run.task:>10} {run.fate:>9} {run.lr:>8.2g} {run.truth:>12} {run.label:>12} "
              f"{run.label_without_chance:>15}")
    worst = print_labels(runs)
    quiet, loud = print_checks(checks)
    print(f"\nlowest label precision or recall: {worst:.0%} (goal >= 90%); update/weight check quiet at the best lr "
          f"in {quiet} of {len(checks)} task/optimizer cases, warning at 10x in {loud} of {len(checks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
