"""What an SQLite study costs per trial with no training, read through Optuna's cache or through hpsearch's.

Each round runs the same seeded 30-trial study (TPE, median pruner, two log-scale params, a user attr
written at the start and end of each trial, up to 10 reported epochs) on a fresh SQLite file read through
Optuna's ``_CachedStorage`` and through ``LocalTrialsCache``
(hpsearch/search/storages/optuna_private/rdb_cache.py), and in
memory: the in-memory study is the sampler's and pruner's own work, so each SQLite row less it is what the
storage costs. The rounds are interleaved, so this machine's drift hits every row alike; medians are printed.
``--url`` measures another database (e.g. postgresql://postgres@127.0.0.1/test), a new study in it each time.
Run: python scripts/bench_rdb_reads.py [--rounds 5] [--trials 30] [--url URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage

from hpsearch.search.storages import open_storage
from hpsearch.search.storages.optuna_private import LocalTrialsCache

EPOCHS = 10
READERS = {"memory": None, "rdb, Optuna's cache": _CachedStorage, "rdb, LocalTrialsCache": LocalTrialsCache}


def storage_work(storage: BaseStorage, trials: int) -> float:
    """Seconds per trial of a seeded study on ``storage`` whose objective is a formula, not training."""
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2))
    noise = random.Random(0)
    started = time.perf_counter()
    for number in range(trials):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
        trial.set_user_attr("hpsearch", {"config": {"lr": lr}, "seed": number})
        pruned = False
        for epoch in range(EPOCHS):
            trial.report(abs(lr - 1e-3) * 10 + 1 / (epoch + 1) + noise.random() * 0.01, epoch)
            if trial.should_prune():
                pruned = True
                break
        trial.set_user_attr("hpsearch", {"config": {"lr": lr}, "seed": number, "epochs": epoch + 1})
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, 1 / EPOCHS)
    seconds = (time.perf_counter() - started) / trials
    optuna.delete_study(study_name=study.study_name, storage=storage)  # leaves a shared database as it was
    return seconds


def one_round(trials: int, statements: Counter[str], url: str | None) -> dict[str, float]:
    seconds = {}
    for name, reader in READERS.items():
        with tempfile.TemporaryDirectory() as folder:
            if reader is None:
                seconds[name] = storage_work(InMemoryStorage(), trials)
                continue
            backend = open_storage(url or f"sqlite:///{Path(folder) / 'study.db'}")
            assert isinstance(backend, RDBStorage)
            sqlalchemy.event.listen(backend.engine, "after_cursor_execute",
                                    lambda *_, name=name: statements.update([name]))
            seconds[name] = storage_work(reader(backend), trials)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--url", help="an RDB storage URL to measure instead of a fresh SQLite file")
    args = parser.parse_args()
    if args.rounds < 1 or args.trials < 1:
        parser.error(f"--rounds and --trials must be >= 1, got {args.rounds} and {args.trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="Heartbeat of storage")  # this loop is not Study.optimize
    one_round(2, Counter(), args.url)  # warm-up: imports, TPE's first fit
    statements: Counter[str] = Counter()
    rounds = [one_round(args.trials, statements, args.url) for _ in range(args.rounds)]
    median = {name: statistics.median(r[name] for r in rounds) for name in READERS}
    print(f"{args.trials} trials of up to {EPOCHS} reported epochs, TPE and median pruner, no training; "
          f"medians of {args.rounds} interleaved rounds")
    print(f"{'storage':26} {'ms/trial':>9} {'storage ms/trial':>17} {'SQL statements/trial':>21}")
    for name in READERS:
        sql = f"{statements[name] / (args.rounds * args.trials):21.1f}" if name in statements else f"{'':>21}"
        print(f"{name:26} {1000 * median[name]:9.1f} {1000 * (median[name] - median['memory']):17.1f} {sql}")
    ours = median["rdb, LocalTrialsCache"] - median["memory"]
    optunas = median["rdb, Optuna's cache"] - median["memory"]
    database = "SQLite" if args.url is None else args.url.partition(":")[0]
    print(f"{database} storage cost per trial, LocalTrialsCache against Optuna's cache: {ours / optunas:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
