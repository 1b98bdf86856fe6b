"""Time per trial-epoch: the sequential engine against K trials trained in lockstep (hpsearch.engine.batched).

MNIST-shaped synthetic data (784 features, 10 classes), the reference MLP (784-256-128-10), AdamW,
batch 128; every trial has its own lr, weight decay and seed. --rounds rounds time every engine in
turn, after one warm-up epoch each, in this one process, so the ratios compare like with like on a
noisy machine; each row shows the best round and the median.

    python scripts/bench_batched.py [--samples 12000] [--epochs 2] [--ks 4,8,16,32,64] [--device auto]
                                    [--rounds 5] [--run-trials 64] [--run-epochs 3]
                                    [--run-batch auto]

Prints a table and the key ratio: the best K's speedup over the sequential engine, median against
median and best round against best round (goal >= 1.6x on two CPU cores, >= 8x on a GPU); before it, a whole `hpsearch
run` (TPE, same seed) with and without `--batch` (auto unless --run-batch says otherwise): wall
time and best value.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from hpsearch import StudySpec, TrainConfig, run_study
from hpsearch.engine.batched import BatchedTrainer
from hpsearch.engine.data import Data
from hpsearch.engine.datasets import load_data
from hpsearch.engine.devices import resolve_device
from hpsearch.engine.models import MLP, count_parameters
from hpsearch.engine.training import train
from hpsearch.search.batched_study import auto_batch


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


def timed_rows(data: Data, args: argparse.Namespace, device: torch.device) -> dict[str, list[float]]:
    """Seconds per trial-epoch of each engine in each of ``args.rounds`` rounds, after one warm-up each.

    Every round times every engine in turn, so a slow spell of this shared machine falls on all of them
    rather than on one row.
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
    return times


def whole_run(data: Data, trials: int, epochs: int, batch: str | None) -> tuple[float, float]:
    """Wall seconds and best value of one TPE study of ``trials`` trials (in-memory storage)."""
    spec = StudySpec(name=f"bench-{batch}", strategy="tpe", n_trials=trials, seed=0,
                     train=TrainConfig(epochs=epochs, dataset="synthetic"))
    started = time.perf_counter()
    study = run_study(spec, "memory", data=data, batch=batch)
    return time.perf_counter() - started, study.best_value


def compare_whole_runs(data: Data, args: argparse.Namespace, device: torch.device) -> None:
    """Print the wall time (best and median of --rounds alternating runs) and best value of a whole study,
    with and without --batch."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    label = f"--batch {args.run_batch}"
    if args.run_batch == "auto":
        label += f" (= {auto_batch(device, count_parameters(MLP(784, 10, (256, 128))))})"
    runs: dict[str, list[tuple[float, float]]] = {"sequential": [], label: []}
    for _ in range(args.rounds):
        runs["sequential"].append(whole_run(data, args.run_trials, args.run_epochs, None))
        runs[label].append(whole_run(data, args.run_trials, args.run_epochs, args.run_batch))
    print(f"\nhpsearch run: TPE, {args.run_trials} trials of {args.run_epochs} epochs, median pruner, seed 0, "
          f"{args.rounds} rounds\n")
    print(f"{'run':<24}{'best s':>8}{'median s':>10}{'best val_loss':>15}")
    best, median = {}, {}
    for name, results in runs.items():
        best[name] = min(seconds for seconds, _ in results)
        median[name] = statistics.median(seconds for seconds, _ in results)
        values = sorted({round(value, 6) for _, value in results})
        print(f"{name:<24}{best[name]:>8.1f}{median[name]:>10.1f}{', '.join(f'{v:.4f}' for v in values):>15}")
    print(f"whole run: {label} takes {best[label] / best['sequential']:.2f}x the sequential wall time "
          f"(best against best; {median[label] / median['sequential']:.2f}x median against median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ks", default="4,8,16,32,64")
    parser.add_argument("--sequential-trials", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every engine, each timed in turn")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--run-trials", type=int, default=64, help="trials of the whole-run comparison (0: skip)")
    parser.add_argument("--run-epochs", type=int, default=3)
    parser.add_argument("--run-batch", default="auto", help="--batch of the whole run: K or auto (what a user gets)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_data(f"synthetic:n={args.samples},d=784,classes=10,noise=10", device=device)
    times = timed_rows(data, args, device)
    print(f"\n{data.n_train} training samples x 784, MLP 256-128, batch 128, {args.epochs} epochs, on {device}"
          f" ({torch.get_num_threads()} CPU threads); {args.rounds} rounds\n")
    # The median is what a run meets on this shared machine; the best round is each engine's cost when
    # nothing else runs (noise only adds time). The sequential engine, one trial split over both cores,
    # is the one that slows most when another process takes a core.
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'engine':<16}{'best ms':>10}{'speedup':>10}{'median ms':>12}{'speedup':>10}")
    for name in times:
        print(f"{name:<16}{1000 * best[name]:>10.1f}{best['sequential'] / best[name]:>9.2f}x"
              f"{1000 * median[name]:>12.1f}{median['sequential'] / median[name]:>9.2f}x")
    fastest = min((name for name in times if name != "sequential"), key=median.__getitem__)
    goal = "8x (GPU)" if device.type == "cuda" else "1.6x (CPU)"
    if args.run_trials:
        compare_whole_runs(data, args, device)
    print(f"\nkey ratio: {fastest} is {median['sequential'] / median[fastest]:.2f}x the sequential engine per "
          f"trial-epoch, median against median ({best['sequential'] / best[fastest]:.2f}x best round against best "
          f"round; goal >= {goal})")


if __name__ == "__main__":
    main()
