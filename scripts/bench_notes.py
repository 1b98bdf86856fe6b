"""Cost of the trial notes: the time each finished trial's optuna-dashboard note takes to write, per storage.

Runs the default digits study (StudySpec() defaults but for --trials and --epochs) through hpsearch.run_study, which
writes each trial's note (hpsearch.presentation.dashboard.write_trial_note) as the trial finishes, on the
journal-file storage (the default) and on SQLite, and times every note written. The note's share is its time over
the trials' own training seconds: what the notes add to a study.
Run: python scripts/bench_notes.py [--trials 30] [--epochs 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

import hpsearch.presentation.run
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.datasets import load_data
from hpsearch.presentation.dashboard import write_trial_note
from hpsearch.search.records import read_trial
from hpsearch.search.spec import StudySpec

STORAGES = {"journal": "journal:{folder}/study.journal", "sqlite": "sqlite:///{folder}/study.db"}


def note_seconds(url: str, spec: StudySpec) -> tuple[list[float], float]:
    """Run ``spec`` on ``url``: the seconds of each trial note written, and the trials' training seconds."""
    spent: list[float] = []

    def timed(study: optuna.Study, trial: FrozenTrial, metric: str) -> None:
        started = time.perf_counter()
        write_trial_note(study, trial, metric)
        spent.append(time.perf_counter() - started)

    hpsearch.presentation.run.write_trial_note = timed  # type: ignore[assignment]
    try:
        study = hpsearch.presentation.run.run_study(spec, url, data=load_data(spec.train.dataset))
    finally:
        hpsearch.presentation.run.write_trial_note = write_trial_note
    return spent, sum(read_trial(t).seconds or 0.0 for t in study.trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = StudySpec(name="notes", n_trials=args.trials, train=TrainConfig(epochs=args.epochs))
    print(f"{'storage':<8} {'notes':>5} {'median ms':>9} {'max ms':>7} {'training s':>10} {'share':>6}")
    for kind, template in STORAGES.items():
        with tempfile.TemporaryDirectory() as folder:
            spent, trained = note_seconds(template.format(folder=Path(folder)), spec)
        share = 100 * sum(spent) / trained
        print(f"{kind:<8} {len(spent):>5} {1000 * statistics.median(spent):>9.2f} {1000 * max(spent):>7.2f} "
              f"{trained:>10.1f} {share:>5.2f}%")
        print(f"trial notes on {kind}: {share:.2f}% of the training time")


if __name__ == "__main__":
    main()
