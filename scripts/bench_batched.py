"""Time per trial-epoch: the sequential engine against K trials trained in lockstep (hpsearch.batched).

MNIST-shaped synthetic data (784 features, 10 classes), the reference MLP (784-256-128-10), AdamW,
batch 128; every trial has its own lr, weight decay and seed. Each row is timed after one warm-up
epoch, in this one process, so the ratios compare like with like on a noisy machine.

    python scripts/bench_batched.py [--samples 12000] [--epochs 2] [--ks 4,8,16,32,64] [--device auto]

Prints a table and the key ratio: the best K's speedup over the sequential engine (goal >= 1.6x on
two CPU cores, >= 8x on a GPU).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hpsearch import TrainConfig
from hpsearch.batched import BatchedTrainer
from hpsearch.data import load_data
from hpsearch.devices import resolve_device
from hpsearch.training import train


def configs(k: int, epochs: int, device: str) -> list[TrainConfig]:
    rng = np.random.default_rng(k)
    return [TrainConfig(epochs=epochs, lr=float(10 ** rng.uniform(-4, -2)),
                        weight_decay=float(10 ** rng.uniform(-5, -1)), seed=seed, device=device, dataset="synthetic")
            for seed in range(k)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sequential_seconds(data: object, epochs: int, device: torch.device, trials: int) -> float:
    """Seconds per trial-epoch of ``train``, one trial after another."""
    train(configs(1, 1, str(device))[0], data, device=device)  # warm-up: kernels, allocator, imports
    sync(device)
    started = time.perf_counter()
    for config in configs(trials, epochs, str(device)):
        train(config, data, device=device)
    sync(device)
    return (time.perf_counter() - started) / (trials * epochs)


def batched_seconds(data: object, epochs: int, device: torch.device, k: int) -> float:
    """Seconds per trial-epoch of K trials in one BatchedTrainer."""
    warm = BatchedTrainer(configs(k, 1, str(device)), data, device)
    warm.run_epoch()
    sync(device)
    trainer = BatchedTrainer(configs(k, epochs, str(device)), data, device)
    started = time.perf_counter()
    while trainer.running():
        trainer.run_epoch()
    sync(device)
    return (time.perf_counter() - started) / (k * epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ks", default="4,8,16,32,64")
    parser.add_argument("--sequential-trials", type=int, default=4)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_data(f"synthetic:n={args.samples},d=784,classes=10", device=device)
    base = sequential_seconds(data, args.epochs, device, args.sequential_trials)
    rows = [("sequential", base)]
    for k in (int(value) for value in args.ks.split(",")):
        rows.append((f"batched K={k}", batched_seconds(data, args.epochs, device, k)))
        print(f"  {rows[-1][0]}: {1000 * rows[-1][1]:.1f} ms per trial-epoch", flush=True)
    print(f"\n{data.n_train} training samples x 784, MLP 256-128, batch 128, {args.epochs} epochs, on {device}"
          f" ({torch.get_num_threads()} CPU threads)\n")
    print(f"{'engine':<16}{'ms per trial-epoch':>20}{'speedup':>10}")
    for name, seconds in rows:
        print(f"{name:<16}{1000 * seconds:>20.1f}{base / seconds:>9.2f}x")
    best_name, best = min(rows[1:], key=lambda row: row[1])
    goal = "8x (GPU)" if device.type == "cuda" else "1.6x (CPU)"
    print(f"\nkey ratio: {best_name} is {base / best:.2f}x the sequential engine per trial-epoch (goal >= {goal})")


if __name__ == "__main__":
    main()
