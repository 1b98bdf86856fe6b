"""Trials per minute with 1, 2 and 4 worker processes (`hpsearch run --jobs N`) on SQLite and
PostgreSQL, and the storage's share of each trial's time.

Each configuration runs the same short study (random search on digits, the reference MLP) in real
processes. Throughput counts from the first trial's start to the last trial's end, so the one-off
start of the processes (importing torch) is left out. The storage's share of a trial is the time
it spends outside its epochs' training (both read from the storage: Optuna's timestamps and the
`history` user attr) less the same time for the same study on Optuna's in-memory storage, run in
this process first (model set-up and sampling cost that much without any storage).

    python scripts/bench_workers.py [--trials 24] [--epochs 5] [--workers 1,2,4] [--dataset digits]

Prints a table and the key ratio: 2 workers against 1 (goal >= 1.6x on two cores), and the largest
storage share (goal <= 10%). PostgreSQL is skipped, with a note, when none runs on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

import hpsearch
from hpsearch import StudySpec, TrainConfig
from hpsearch.search.records import read_trial
from hpsearch.search.storages import open_storage

POSTGRES = "postgresql://postgres@127.0.0.1:5432"


@dataclass(frozen=True)
class Row:
    storage: str
    workers: int
    trials: int
    span: float
    overhead: float  # median seconds of a trial outside its epochs' training

    @property
    def per_minute(self) -> float:
        return 60 * self.trials / self.span


def trial_overheads(trials: list[FrozenTrial]) -> tuple[float, float]:
    """Median seconds of a trial outside its epochs' training, and median trial wall seconds."""
    walls = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    training = [sum(epoch["seconds"] for epoch in read_trial(t).history) for t in trials]
    outside = [wall - seconds for wall, seconds in zip(walls, training, strict=True)]
    return statistics.median(outside), statistics.median(walls)


def run_study(url: str, workers: int, trials: int, epochs: int, dataset: str) -> Row:
    """One `hpsearch run --jobs` study; throughput and per-trial overhead read back from the storage."""
    name = f"bench-{workers}"
    command = [sys.executable, "-m", "hpsearch", "run", "--strategy", "random", "--pruner", "none", "--study", name,
               "--n-trials", str(trials), "--epochs", str(epochs), "--jobs", str(workers), "--storage", url, "--quiet",
               "--dataset", dataset]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=None))
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert len(done) == trials, f"{len(done)} of {trials} trials completed"
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return Row(storage=url.partition(":")[0], workers=workers, trials=trials, span=span,
               overhead=trial_overheads(done)[0])


def memory_reference(trials: int, epochs: int, dataset: str) -> tuple[float, float]:
    """The same study in this process on Optuna's in-memory storage: a trial's overhead outside its
    epochs without any storage to write to (model and optimizer set-up, sampling), and its wall time."""
    spec = StudySpec(name="reference", strategy="random", pruner="none", n_trials=trials,
                     train=TrainConfig(epochs=epochs, dataset=dataset))
    study = hpsearch.run_study(spec, "memory")
    return trial_overheads(study.get_trials(states=(TrialState.COMPLETE,)))


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'bench.db'}"


@contextmanager
def postgres_url() -> Iterator[str | None]:
    try:
        import psycopg

        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=5)
    except Exception as exc:  # no driver or no server: the table says so
        print(f"note: PostgreSQL skipped ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r})")
        yield None
        return
    name = f"hpsearch_bench_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{POSTGRES}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--dataset", default="digits", help="any --dataset of hpsearch, e.g. synthetic:n=6000,d=784")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bare_overhead, bare_wall = memory_reference(args.trials, args.epochs, args.dataset)
    rows: list[Row] = []
    for storage in (sqlite_url, postgres_url):
        with storage() as url:
            if url is None:
                continue
            for workers in counts:
                rows.append(run_study(url, workers, args.trials, args.epochs, args.dataset))
                row = rows[-1]
                print(f"  {row.storage} x{workers}: {row.per_minute:.1f} trials/min", file=sys.stderr)

    def share(row: Row) -> float:
        """The storage's share of a trial: its overhead beyond the in-memory one, over the trial's time."""
        storage_seconds = max(0.0, row.overhead - bare_overhead)
        return storage_seconds / (bare_wall + storage_seconds)

    print(f"\n{args.trials} trials of {args.epochs} epochs ({args.dataset}, MLP 256-128), random search, no pruning;"
          f" in memory a trial takes {1000 * bare_wall:.0f} ms, {1000 * bare_overhead:.0f} ms of it outside its epochs"
          "\n")
    print(f"{'storage':<12}{'workers':>8}{'span s':>9}{'trials/min':>12}{'vs 1':>7}{'overhead ms':>13}"
          f"{'storage share':>15}")
    for row in rows:
        one = next((r for r in rows if r.storage == row.storage and r.workers == 1), row)
        print(f"{row.storage:<12}{row.workers:>8}{row.span:>9.1f}{row.per_minute:>12.1f}"
              f"{row.per_minute / one.per_minute:>6.2f}x{1000 * row.overhead:>13.1f}{100 * share(row):>14.1f}%")
    print()
    for storage in dict.fromkeys(r.storage for r in rows):
        by_workers = {r.workers: r for r in rows if r.storage == storage}
        if 1 in by_workers and 2 in by_workers:
            ratio = by_workers[2].per_minute / by_workers[1].per_minute
            print(f"key ratio ({storage}): 2 workers / 1 worker = {ratio:.2f}x trials per minute (goal >= 1.6x)")
    print(f"largest storage share: {100 * max(share(r) for r in rows):.1f}% of a trial (goal <= 10%)")


if __name__ == "__main__":
    main()
