"""Time per trial-epoch: the sequential engine against K trials trained in lockstep (hpsearch.batched).

MNIST-shaped synthetic data (784 features, 10 classes), the reference MLP (784-256-128-10), AdamW,
batch 128; every trial has its own lr, weight decay and seed. Each row is the median of --rounds
rounds that time every engine in turn, after one warm-up epoch each, in this one process, so the
ratios compare like with like on a noisy machine.

    python scripts/bench_batched.py [--samples 12000] [--epochs 2] [--ks 4,8,16,32,64] [--device auto]
                                    [--rounds 3] [--run-trials 64] [--run-epochs 3]
                                    [--run-batch auto]

Prints a table and the key ratio: the best K's speedup over the sequential engine (goal >= 1.6x on
two CPU cores, >= 8x on a GPU); then a whole `hpsearch run` (TPE, same seed) with and without
`--batch` (auto unless --run-batch says otherwise): wall time and best value.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from hpsearch import StudySpec, TrainConfig, run_study
from hpsearch.batched import BatchedTrainer
from hpsearch.data import Data, load_data
from hpsearch.devices import resolve_device
from hpsearch.models import build_model, count_parameters
from hpsearch.search.batched_study import auto_batch
from hpsearch.training import train


def configs(k: int, epochs: int, device: str) -> list[TrainConfig]:
    rng = np.random.default_rng(k)
    return [TrainConfig(epochs=epochs, lr=float(10 ** rng.uniform(-4, -2)),
                        weight_decay=float(10 ** rng.uniform(-5, -1)), seed=seed, device=device, dataset="synthetic")
            for seed in range(k)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sequential_seconds(data: Data, epochs: int, device: torch.device, trials: int) -> float:
    """Seconds per trial-epoch of ``train``, one trial after another."""
    sync(device)
    started = time.perf_counter()
    for config in configs(trials, epochs, str(device)):
        train(config, data, device=device)
    sync(device)
    return (time.perf_counter() - started) / (trials * epochs)


def batched_seconds(data: Data, epochs: int, device: torch.device, k: int) -> float:
    """Seconds per trial-epoch of K trials in one BatchedTrainer, its setup counted as train's is."""
    sync(device)
    started = time.perf_counter()
    trainer = BatchedTrainer(configs(k, epochs, str(device)), data, device)
    while trainer.running():
        trainer.run_epoch()
    sync(device)
    return (time.perf_counter() - started) / (k * epochs)


def timed_rows(data: Data, args: argparse.Namespace, device: torch.device) -> list[tuple[str, float]]:
    """Median seconds per trial-epoch of each engine over ``args.rounds`` rounds, after one warm-up each.

    Every round times every engine in turn, so a slow spell of this shared machine falls on all of them
    rather than on one row, and the median drops a round that it spoilt.
    """
    ks = [int(value) for value in args.ks.split(",")]
    train(configs(1, 1, str(device))[0], data, device=device)  # warm-up: kernels, allocator, imports
    for k in ks:
        BatchedTrainer(configs(k, 1, str(device)), data, device).run_epoch()
    times: dict[str, list[float]] = {"sequential": []}
    for round_ in range(1, args.rounds + 1):
        times["sequential"].append(sequential_seconds(data, args.epochs, device, args.sequential_trials))
        for k in ks:
            times.setdefault(f"batched K={k}", []).append(batched_seconds(data, args.epochs, device, k))
        print(f"  round {round_}: " + ", ".join(f"{name} {1000 * t[-1]:.1f} ms" for name, t in times.items()),
              flush=True)
    return [(name, statistics.median(values)) for name, values in times.items()]


def whole_run(data: Data, trials: int, epochs: int, batch: str | None) -> tuple[float, float]:
    """Wall seconds and best value of one TPE study of ``trials`` trials (in-memory storage)."""
    spec = StudySpec(name=f"bench-{batch}", strategy="tpe", n_trials=trials, seed=0,
                     train=TrainConfig(epochs=epochs, dataset="synthetic"))
    started = time.perf_counter()
    study = run_study(spec, "memory", data=data, batch=batch)
    return time.perf_counter() - started, study.best_value


def compare_whole_runs(data: Data, args: argparse.Namespace, device: torch.device) -> None:
    """Print the wall time (median of --rounds alternating runs) and best value of a whole study, with and
    without --batch."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    label = f"--batch {args.run_batch}"
    if args.run_batch == "auto":
        label += f" (= {auto_batch(device, count_parameters(build_model('mlp', 784, 10, (256, 128))))})"
    runs: dict[str, list[tuple[float, float]]] = {"sequential": [], label: []}
    for _ in range(args.rounds):
        runs["sequential"].append(whole_run(data, args.run_trials, args.run_epochs, None))
        runs[label].append(whole_run(data, args.run_trials, args.run_epochs, args.run_batch))
    print(f"\nhpsearch run: TPE, {args.run_trials} trials of {args.run_epochs} epochs, median pruner, seed 0, "
          f"median of {args.rounds}\n")
    print(f"{'run':<24}{'wall s':>10}{'best val_loss':>15}")
    wall = {}
    for name, results in runs.items():
        wall[name] = statistics.median(seconds for seconds, _ in results)
        values = sorted({round(value, 6) for _, value in results})
        print(f"{name:<24}{wall[name]:>10.1f}{', '.join(f'{v:.4f}' for v in values):>15}")
    print(f"whole run: {label} takes {wall[label] / wall['sequential']:.2f}x the sequential wall time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ks", default="4,8,16,32,64")
    parser.add_argument("--sequential-trials", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every engine; each row is their median")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--run-trials", type=int, default=64, help="trials of the whole-run comparison (0: skip)")
    parser.add_argument("--run-epochs", type=int, default=3)
    parser.add_argument("--run-batch", default="auto", help="--batch of the whole run: K or auto (what a user gets)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_data(f"synthetic:n={args.samples},d=784,classes=10,noise=10", device=device)
    rows = timed_rows(data, args, device)
    base = rows[0][1]
    print(f"\n{data.n_train} training samples x 784, MLP 256-128, batch 128, {args.epochs} epochs, on {device}"
          f" ({torch.get_num_threads()} CPU threads)\n")
    print(f"{'engine':<16}{'ms per trial-epoch':>20}{'speedup':>10}")
    for name, seconds in rows:
        print(f"{name:<16}{1000 * seconds:>20.1f}{base / seconds:>9.2f}x")
    best_name, best = min(rows[1:], key=lambda row: row[1])
    goal = "8x (GPU)" if device.type == "cuda" else "1.6x (CPU)"
    if args.run_trials:
        compare_whole_runs(data, args, device)
    print(f"\nkey ratio: {best_name} is {base / best:.2f}x the sequential engine per trial-epoch (goal >= {goal})")


if __name__ == "__main__":
    main()
