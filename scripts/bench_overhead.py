"""Framework overhead of a study: its wall time against bare train() of the same configs, per storage.

Runs the default digits study (StudySpec() defaults, what `hpsearch run --strategy tpe` runs: TPE,
median pruner, 30 trials of 10 epochs of the MLP) on in-memory, SQLite and journal-file storage,
and after each study trains every trial's config again with train() alone, for as many epochs as
the trial ran. Overhead = (study wall time - sum of bare train() time) / sum of bare train() time,
from a storage's best (shortest) study and the best of the bare runs after its studies: other work on
the machine only ever slows a run down, and both minima are taken over as many runs (the best bare run
of all storages' runs, a minimum over three times as many, was biased low against it). The study time
includes opening the storage, as `hpsearch run` does. The last column pairs each study with the bare
run right after it.

A second estimate needs no second run: the time the study spent outside training (train() calls
less their reporter, which is where the storage is asked to prune), which drifts far less. A third is
the median of each study against the bare run right after it. The last lines judge the goals of
issue 15 (default storage <= 10%, SQLite <= 30%) by each of the three.
Then the quick pre-flight checks, warm, and scripts/bench_startup.py's rounds: start-up beyond the torch
baseline and the main job's own cost, so that every figure of issue 15 comes from one run.
Run: python scripts/bench_overhead.py [--repeats 3] [--trials 30] [--startup-rounds 3] [--pruner-warmup N] [--check]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import torch
from bench_startup import (  # this folder is on sys.path when run as a script
    compile_package,
    measure_rounds,
    print_startup,
)
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from hpsearch.engine.checks import QUICK_CHECKS, run_checks
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.engine.datasets import load_data
from hpsearch.engine.devices import resolve_device
from hpsearch.engine.training import EpochMetrics, Reporter, TrainResult, train
from hpsearch.search import objective
from hpsearch.search.records import read_trial
from hpsearch.search.runner import run_study
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages import DEFAULT_STORAGE, open_storage

GOAL = 10.0  # percent, with the default storage
SQLITE_GOAL = 30.0
STORAGES = ("memory", "sqlite", "journal")


@dataclass(frozen=True)
class Run:
    """One study, and the bare training of its trials' configs measured right after it."""

    storage: str
    study_s: float
    trained_s: float  # inside the study: train() calls less their reporter
    reporter_s: float  # inside the study: the reporters, where each epoch is reported and the pruner asked
    bare_s: float
    trials: int
    epochs: int
    work: str  # what the storage did per trial, where it can be counted
    configs: str  # the configs trained and the epochs each ran, to tell whether two runs did the same work

    @property
    def overhead(self) -> float:
        return 100 * (self.study_s - self.bare_s) / self.bare_s

    @property
    def framework_s(self) -> float:
        return self.study_s - self.trained_s


def storage_url(kind: str, folder: Path) -> str:
    return {"memory": "memory", "sqlite": f"sqlite:///{folder / 'study.db'}",
            "journal": f"journal:{folder / 'study.journal'}"}[kind]


def storage_kind(url: str) -> str:
    """Which row of the table a storage URL (DEFAULT_STORAGE) belongs to."""
    if url == "memory":
        return "memory"
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith("journal:") or url.endswith((".journal", ".log")):
        return "journal"
    return url


@contextmanager
def timed_training(seconds: list[float], reporting: list[float]) -> Iterator[None]:
    """Record, for each train() call of the objective, its time less the time spent in its reporter, and
    the time spent in its reporter."""
    untimed = objective.train

    def timed(config: TrainConfig, data: Data, *, reporter: Reporter, **kwargs: Any) -> TrainResult:
        in_reporter = 0.0

        def report(epoch: int, metrics: EpochMetrics) -> bool | None:
            nonlocal in_reporter
            started = time.perf_counter()
            try:
                return reporter(epoch, metrics)
            finally:
                in_reporter += time.perf_counter() - started

        started = time.perf_counter()
        try:
            return untimed(config, data, reporter=report, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started - in_reporter)
            reporting.append(in_reporter)

    objective.train = timed  # type: ignore[assignment]
    try:
        yield
    finally:
        objective.train = untimed


def timed_study(kind: str, spec: StudySpec, data: Data) -> tuple[float, float, float, list[FrozenTrial], str]:
    """Open a fresh storage of ``kind`` and run ``spec`` on it: (seconds, training seconds in it, reporting
    seconds in it, its trials, the storage's work per trial)."""
    with tempfile.TemporaryDirectory() as folder:
        url = storage_url(kind, Path(folder))
        counts: Counter[str] = Counter()
        trained: list[float] = []
        reporting: list[float] = []
        with timed_training(trained, reporting):
            started = time.perf_counter()
            storage = open_storage(url)
            if isinstance(storage, RDBStorage):
                # A few microseconds each, against about a millisecond per statement.
                engine = storage.engine
                sqlalchemy.event.listen(engine, "commit", lambda *_: counts.update(["commits"]))
                sqlalchemy.event.listen(engine, "after_cursor_execute", lambda *_: counts.update(["SQL statements"]))
            study = run_study(spec, storage, data=data)
            seconds = time.perf_counter() - started
        trials = study.get_trials(deepcopy=False)
        if kind == "sqlite":
            work = ", ".join(f"{count / len(trials):.1f} {name}" for name, count in counts.items())
        elif kind == "journal":
            with open(url.removeprefix("journal:"), "rb") as log:
                work = f"{sum(1 for _ in log) / len(trials):.1f} appended records"
        else:
            work = ""
    return seconds, sum(trained), sum(reporting), trials, work


def bare_seconds(trials: list[FrozenTrial], data: Data) -> float:
    """Sum of train() times of the trials' configs, each stopped after the epochs its trial ran."""
    total = 0.0
    for trial in trials:
        if read_trial(trial).history is None:
            raise RuntimeError(f"trial {trial.number} has no history ({trial.state.name}): cannot time it bare")
        config = TrainConfig.from_mapping(read_trial(trial).config)
        ran = len(read_trial(trial).history)
        started = time.perf_counter()
        # A reporter that stops the run, rather than epochs=ran, keeps any schedule the same.
        result = train(config, data, reporter=lambda epoch, _metrics, ran=ran: epoch >= ran)
        total += time.perf_counter() - started
        if len(result.history) != ran:
            raise RuntimeError(f"trial {trial.number} ran {ran} epochs, its config bare ran {len(result.history)}")
    return total


def measure(kind: str, spec: StudySpec, data: Data) -> Run:
    study_s, trained_s, reporter_s, trials, work = timed_study(kind, spec, data)
    bare_s = bare_seconds(trials, data)
    epochs = [len(read_trial(t).history) for t in trials]
    configs = json.dumps([[read_trial(t).config, n] for t, n in zip(trials, epochs, strict=True)], sort_keys=True)
    return Run(kind, study_s, trained_s, reporter_s, bare_s, len(trials), sum(epochs), work, configs)


def best_of(runs: list[Run], bare_s: float) -> Run:
    """The shortest study and framework time of a storage's repeats, against the given bare time."""
    study_s = min(r.study_s for r in runs)
    framework_s = min(r.framework_s for r in runs)
    reporter_s = min(r.reporter_s for r in runs)
    return Run(runs[0].storage, study_s, study_s - framework_s, reporter_s, bare_s, runs[0].trials, runs[0].epochs,
               runs[0].work, runs[0].configs)


def timed_checks(spec: StudySpec, data: Data) -> float:
    """Seconds of the quick pre-flight checks that ``hpsearch run`` makes before its first trial."""
    started = time.perf_counter()
    run_checks(spec.train, data, QUICK_CHECKS)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--startup-rounds", type=int, default=3,
                        help="rounds of scripts/bench_startup.py's start-up and main-job measurement (0: skip)")
    parser.add_argument("--pruner-warmup", type=int, default=None,
                        help="the median pruner's warm-up fixed at N epochs (default: learned, the trusted epoch)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when the default storage's overhead > {GOAL:g}%%")
    args = parser.parse_args()
    if args.repeats < 1 or args.trials < 1:
        parser.error(f"--repeats and --trials must be >= 1, got {args.repeats} and {args.trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = StudySpec(n_trials=args.trials, pruner_warmup=args.pruner_warmup)
    data = load_data(spec.train.dataset)

    # Warm-up, untimed: the first train() of a process, TPE's first fit, each storage's imports.
    train(spec.train, data)
    measure("memory", spec, data)
    for kind in STORAGES:
        timed_study(kind, spec.replace(n_trials=2), data)

    runs: dict[str, list[Run]] = {kind: [] for kind in STORAGES}
    for repeat in range(args.repeats):
        # Round-robin, the order rotated each repeat: this machine's speed drifts from minute to minute.
        for kind in STORAGES[repeat % len(STORAGES):] + STORAGES[:repeat % len(STORAGES)]:
            runs[kind].append(measure(kind, spec, data))
    # The studies are seeded, so each trains the same configs: every bare run then times the same
    # work. Only a nondeterministic device differs here.
    everything = [run for found in runs.values() for run in found]
    if len({run.configs for run in everything}) > 1:
        raise RuntimeError("the studies trained different configs, so their bare times cannot be compared")
    best = {kind: best_of(found, min(run.bare_s for run in found)) for kind, found in runs.items()}

    checks_s = min(timed_checks(spec, data) for _ in range(3))
    default = storage_kind(DEFAULT_STORAGE)
    warmup = "learned warm-up" if spec.pruner_warmup is None else f"warm-up {spec.pruner_warmup}"
    print(f"default digits study: {spec.strategy}, {spec.pruner} pruner ({warmup}), {args.trials} trials of up to "
          f"{spec.train.epochs} epochs; device {resolve_device(spec.train.device)}, torch threads "
          f"{torch.get_num_threads()}; best of {args.repeats} repeats, bare: best of the {args.repeats} after them")
    print(f"{'':18} {'':>8} {'':>9} {'bare':>8} {'':>9} {'':>7}  {'in the study:':>13} {'framework':>10} "
          f"{'':>9} {'report':>9}")
    print(f"{'storage':18} {'study s':>8} {'ms/trial':>9} {'train s':>8} {'overhead':>9} {'epochs':>7}  "
          f"{'train s':>13} {'ms/trial':>10} {'overhead':>9} {'ms/epoch':>9}  overhead in each repeat")
    for kind, run in best.items():
        name = f"{kind} (default)" if kind == default else kind
        every = " ".join(f"{r.overhead:.0f}%" for r in runs[kind])
        print(f"{name:18} {run.study_s:8.2f} {1000 * run.study_s / run.trials:9.1f} {run.bare_s:8.2f} "
              f"{run.overhead:8.1f}% {run.epochs:7}  {run.trained_s:13.2f} {1000 * run.framework_s / run.trials:10.1f} "
              f"{100 * run.framework_s / run.trained_s:8.1f}% {1000 * run.reporter_s / run.epochs:9.2f}  {every}")
    for kind, run in best.items():
        if run.work:
            print(f"{kind} per trial: {run.work}")
    ratios = ", ".join(f"{kind} {best[kind].study_s / best['memory'].study_s:.2f}x" for kind in STORAGES[1:])
    print(f"study wall time against in-memory: {ratios}")
    print("framework ms/trial: the study's time outside train(), plus its reporters; report ms/epoch: the reporter "
          "alone (the epoch's value stored, the pruner asked), per reported epoch")
    print(f"quick pre-flight checks on digits, warm: {checks_s:.2f} s   goal <= 0.3 s   "
          f"{'met' if checks_s <= 0.3 else 'MISSED'}")
    if args.startup_rounds > 0:
        compile_s = compile_package()
        print_startup(measure_rounds(args.startup_rounds, log=False), compile_s)
    if default not in best:
        print(f"default storage {DEFAULT_STORAGE} is not measured here")
        return 1 if args.check else 0
    # Three estimates of each goal: the best study against the best bare run after its studies, the median of
    # each study against the bare run right after it, and the study's time outside training, which drifts least.
    for kind, goal in ((default, GOAL), ("sqlite", SQLITE_GOAL)):
        run = best[kind]
        paired = statistics.median(r.overhead for r in runs[kind])
        in_study = 100 * run.framework_s / run.trained_s
        met = sum(estimate <= goal for estimate in (run.overhead, paired, in_study))
        print(f"overhead on {kind}: {run.overhead:.1f}% best against best, {paired:.1f}% paired median, "
              f"{in_study:.1f}% in the study   goal <= {goal:g}%   met by {met} of 3")
    return 1 if args.check and best[default].overhead > GOAL else 0

if __name__ == "__main__":
    sys.exit(main())
