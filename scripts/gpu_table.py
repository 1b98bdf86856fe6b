"""The GPU table: epoch times of the MLP and the CNN, the batched engine, and a 20-trial TPE study's wall time.

Run by scripts/gpu_check.sh on a machine with a GPU (that script's header says how to prepare it); it
imports only torch, numpy, hpsearch's engine and Optuna, so that little has to be carried there. hpsearch
need not be installed: run it with the repository root on PYTHONPATH (gpu_check.sh does).

1. One epoch of MNIST-shaped data (60,000 x 1 x 28 x 28, 10,000 validation, batch 128), the MLP
   (784-256-128-10) and the built-in CNN (width 32), each on the device-resident tensors
   (feed="device") and streamed through the engine's seeded DataLoader (feed="stream", --workers
   workers each), in fp32 and bf16: seconds of the training part of the second epoch (the first warms
   up kernels and the allocator) and the whole train() call of two epochs.
2. The batched engine (hpsearch.engine.batched.BatchedTrainer) at K = --ks trials against the sequential
   engine: milliseconds per trial-epoch (synthetic 784-feature data, the MLP, 2 epochs).
3. A TPE study of --trials trials (in-memory storage, median pruner, seed 0): wall time, one trial
   after another and with --batch auto.

Every measurement has a hard cap (--cap seconds, and what its section's share of --budget has left):
one that runs over it is cut and its row says so; rows print as they finish.

    PYTHONPATH=. python scripts/gpu_table.py [--device auto] [--budget 240] [--cap 60] [--workers 0,4] [--ks 8,64]
                                             [--trials 20] [--sections epochs,batched,study]
    PYTHONPATH=. python scripts/gpu_table.py --device cpu --quick      # small sizes: proves the script on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import torch

import hpsearch
from hpsearch import StudySpec, TrainConfig, from_arrays, load_data, run_study, train
from hpsearch.engine.batched import BatchedTrainer
from hpsearch.engine.data import Data
from hpsearch.engine.devices import resolve_device
from hpsearch.engine.models import CNN, MLP, count_parameters

SIDE, CLASSES, BATCH = 28, 10, 128
# Each section's share of --budget, in the order they run; time a section leaves goes to the ones after it.
# The epoch table gets most: on a GPU its 16 streamed epochs cost far more than sections 2 and 3 together.
SHARES = {"epochs": 0.6, "batched": 0.15, "study": 0.25}


@dataclass(frozen=True)
class Sizes:
    mlp_train: int
    cnn_train: int
    val: int
    batched_samples: int  # synthetic samples, train and validation together
    sequential_trials: int
    batched_epochs: int
    study_epochs: int


FULL = Sizes(mlp_train=60_000, cnn_train=60_000, val=10_000, batched_samples=12_000, sequential_trials=4,
             batched_epochs=2, study_epochs=3)
QUICK = Sizes(mlp_train=2_048, cnn_train=1_024, val=512, batched_samples=2_000, sequential_trials=2, batched_epochs=1,
              study_epochs=1)


class Overtime(BaseException):
    """A measurement ran past its cap (a BaseException, so no engine or Optuna handler swallows it)."""


@contextlib.contextmanager
def capped(seconds: float) -> Iterator[None]:
    """Raise Overtime in this (main) thread once ``seconds`` have passed."""

    def expire(signum: int, frame: Any) -> None:
        raise Overtime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Budget:
    """What a section may still spend: its share of the whole budget, each measurement at most ``cap``."""

    def __init__(self, seconds: float, cap: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.cap = cap

    def run(self, measure: Callable[[], Any]) -> tuple[Any, str | None]:
        """``measure()``'s value, or (None, why) when it ran over its cap or no time was left for it."""
        left = min(self.cap, self.deadline - time.monotonic())
        if left < 1:
            return None, "skipped: no time left in its budget"
        sync_all()
        try:
            with capped(left):
                return measure(), None
        except Overtime:
            sync_all()
            return None, f"cut at its cap of {left:.0f} s"


def sync_all() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def mnist_shaped(n_train: int, n_val: int, device: torch.device, seed: int = 0) -> Data:
    """uint8 MNIST-shaped images (N, 1, 28, 28) with a class-dependent pattern, normalized, on ``device``."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    labels = rng.integers(0, CLASSES, n)
    prototypes = rng.integers(0, 256, (CLASSES, 1, SIDE, SIDE))
    noise = rng.integers(-64, 64, (n, 1, SIDE, SIDE))
    images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
    return from_arrays(images[:n_train], labels[:n_train], images[n_train:], labels[n_train:], name="mnist-shaped",
                       device=device)


def epoch_table(device: torch.device, sizes: Sizes, workers: list[int], budget: Budget) -> None:
    """Section 1: s/epoch of each model x feed x precision."""
    print(f"\n1. one epoch, MNIST-shaped 1 x {SIDE} x {SIDE}, batch {BATCH}, AdamW (fused), 2 epochs per row: "
          f"'epoch s' is the training part of the second, 'train() s' the whole call", flush=True)
    feeds = [("device", 0)] + [("stream", w) for w in workers]
    models = {"mlp": ({}, sizes.mlp_train, count_parameters(MLP((1, SIDE, SIDE), CLASSES))),
              "cnn": ({"width": 32}, sizes.cnn_train, count_parameters(CNN((1, SIDE, SIDE), CLASSES, 32)))}
    print(f"{'model':<16}{'feed':<14}{'precision':<11}{'epoch s':>9}{'samples/s':>12}{'train() s':>11}"
          f"{'val_acc':>9}", flush=True)
    seconds: dict[tuple[str, str, str], float] = {}
    for model, (model_args, n_train, params) in models.items():
        data = mnist_shaped(n_train, sizes.val, device)
        label = f"{model} {params / 1e3:.0f}k"
        for precision in ("fp32", "bf16"):
            for feed, num_workers in feeds:
                config = TrainConfig(epochs=2, batch_size=BATCH, lr=1e-3, weight_decay=1e-2, model=model,
                                     model_args=model_args, feed=feed, num_workers=num_workers,
                                     precision=precision, device=str(device))
                feed_label = feed if feed == "device" else f"stream {num_workers}wk"

                def measure(config: TrainConfig = config, data: Data = data,
                            n_train: int = n_train) -> tuple[float, float, float]:
                    started = time.perf_counter()
                    result = train(config, data, device)
                    whole = time.perf_counter() - started
                    return n_train / result.history[-1].samples_per_s, whole, result.val_acc

                value, why = budget.run(measure)
                if value is None:
                    print(f"{label:<16}{feed_label:<14}{precision:<11}  {why}", flush=True)
                    continue
                epoch, whole, acc = value
                seconds[model, feed_label, precision] = epoch
                print(f"{label:<16}{feed_label:<14}{precision:<11}{epoch:>9.3f}{n_train / epoch:>12,.0f}"
                      f"{whole:>11.2f}{acc:>9.3f}", flush=True)
        del data
    print(f"({sizes.mlp_train:,} MLP and {sizes.cnn_train:,} CNN training samples, {sizes.val:,} validation; the first "
          f"row's train() s includes the process's first use of the device)")
    for model in models:
        for feed_label in (f"stream {w}wk" for _, w in feeds[1:]):
            pairs = [f"{precision} {seconds[model, feed_label, precision] / seconds[model, 'device', precision]:.2f}x"
                     for precision in ("fp32", "bf16")
                     if (model, feed_label, precision) in seconds and (model, "device", precision) in seconds]
            if pairs:
                print(f"ratio {model} {feed_label} / device (the DataLoader's cost): {', '.join(pairs)}")
        pairs = [f"{feed_label} {seconds[model, feed_label, 'fp32'] / seconds[model, feed_label, 'bf16']:.2f}x"
                 for feed_label in ["device", *(f"stream {w}wk" for _, w in feeds[1:])]
                 if (model, feed_label, "fp32") in seconds and (model, feed_label, "bf16") in seconds]
        if pairs:
            print(f"ratio {model} fp32 / bf16 (bf16's speedup): {', '.join(pairs)}")


def batched_configs(k: int, epochs: int, device: torch.device) -> list[TrainConfig]:
    """K trials of their own lr, weight decay and seed (as scripts/bench_batched.py draws them)."""
    rng = np.random.default_rng(k)
    return [TrainConfig(epochs=epochs, lr=float(10 ** rng.uniform(-4, -2)),
                        weight_decay=float(10 ** rng.uniform(-5, -1)), seed=seed, device=str(device),
                        dataset="synthetic") for seed in range(k)]


def batched_table(device: torch.device, sizes: Sizes, ks: list[int], budget: Budget) -> None:
    """Section 2: ms per trial-epoch, sequential against BatchedTrainer at each K."""
    data = load_data(f"synthetic:n={sizes.batched_samples},d=784,classes=10,noise=10", device=device)
    epochs = sizes.batched_epochs
    print(f"\n2. batched engine: {data.n_train:,} synthetic samples x 784, MLP 256-128, batch {BATCH}, {epochs} "
          f"epoch(s); ms per trial-epoch, setup included; best of 2 after a warm-up", flush=True)

    def sequential() -> float:
        sync_all()
        started = time.perf_counter()
        for config in batched_configs(sizes.sequential_trials, epochs, device):
            train(config, data, device)
        sync_all()
        return (time.perf_counter() - started) / (sizes.sequential_trials * epochs)

    def batched(k: int) -> float:
        sync_all()
        started = time.perf_counter()
        trainer = BatchedTrainer(batched_configs(k, epochs, device), data, device)
        while trainer.running():
            trainer.run_epoch()
        sync_all()
        return (time.perf_counter() - started) / (k * epochs)

    def best_of_two(measure: Callable[[], float], warm_up: Callable[[], object]) -> float:
        warm_up()
        return min(measure(), measure())

    print(f"{'engine':<16}{'ms/trial-epoch':>16}{'speedup':>10}", flush=True)
    sequential_ms, why = budget.run(lambda: 1000 * best_of_two(
        sequential, lambda: train(batched_configs(1, 1, device)[0], data, device)))
    if sequential_ms is None:
        print(f"{'sequential':<16}  {why}", flush=True)
    else:
        print(f"{'sequential':<16}{sequential_ms:>16.2f}{1:>9.2f}x", flush=True)
    for k in ks:
        ms, why = budget.run(lambda k=k: 1000 * best_of_two(
            lambda: batched(k), lambda: BatchedTrainer(batched_configs(k, 1, device), data, device).run_epoch()))
        name = f"batched K={k}"
        if ms is None:
            print(f"{name:<16}  {why}", flush=True)
        else:
            speedup = f"{sequential_ms / ms:>9.2f}x" if sequential_ms is not None else f"{'-':>10}"
            print(f"{name:<16}{ms:>16.2f}{speedup}", flush=True)


def study_table(device: torch.device, sizes: Sizes, trials: int, budget: Budget) -> None:
    """Section 3: wall time of a whole TPE study, sequential and with --batch auto."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_data(f"synthetic:n={sizes.batched_samples},d=784,classes=10,noise=10", device=device)
    print(f"\n3. TPE study: {trials} trials of {sizes.study_epochs} epoch(s), {data.n_train:,} synthetic samples "
          f"x 784, MLP 256-128, median pruner, seed 0, in-memory storage", flush=True)
    print(f"{'run':<16}{'wall s':>8}{'per trial s':>13}{'complete':>10}{'pruned':>8}{'best val_loss':>15}",
          flush=True)
    for name, batch in (("sequential", None), ("--batch auto", "auto")):

        def measure(batch: str | None = batch) -> tuple[float, optuna.Study]:
            spec = StudySpec(name=f"gpu-table-{batch}", strategy="tpe", n_trials=trials, seed=0,
                             train=TrainConfig(epochs=sizes.study_epochs, dataset="synthetic", device=str(device)))
            started = time.perf_counter()
            study = run_study(spec, "memory", data=data, batch=batch)
            return time.perf_counter() - started, study

        value, why = budget.run(measure)
        if value is None:
            print(f"{name:<16}  {why}", flush=True)
            continue
        wall, study = value
        states = [trial.state for trial in study.trials]
        complete = states.count(optuna.trial.TrialState.COMPLETE)
        pruned = states.count(optuna.trial.TrialState.PRUNED)
        best = study.best_value if complete else math.nan
        print(f"{name:<16}{wall:>8.1f}{wall / max(len(states), 1):>13.2f}{complete:>10}{pruned:>8}{best:>15.4f}",
              flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="small sizes (a CPU check of the script)")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for all measurements together")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds at most for any one measurement")
    parser.add_argument("--workers", default=None,
                        help="DataLoader workers of the stream rows, comma-separated (default 0,4; --quick 0,2)")
    parser.add_argument("--ks", default="8,64", help="K of the batched rows, comma-separated")
    parser.add_argument("--trials", type=int, default=20, help="trials of the TPE study")
    parser.add_argument("--sections", default="epochs,batched,study", help="which sections to run, comma-separated")
    args = parser.parse_args()
    started = time.perf_counter()
    device = resolve_device(args.device)
    sizes = QUICK if args.quick else FULL
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(sections) - set(SHARES))
    if unknown:
        parser.error(f"unknown section {unknown[0]!r} (known: {', '.join(SHARES)})")

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    print(f"device: {device} ({gpu}), torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"{torch.get_num_threads()} CPU threads, hpsearch {hpsearch.__version__}, optuna {optuna.__version__}, "
          f"python {sys.version.split()[0]}; {'quick sizes' if args.quick else 'full sizes'}, "
          f"budget {args.budget:.0f} s, cap {args.cap:.0f} s per measurement", flush=True)
    deadline = time.monotonic() + args.budget
    for position, name in enumerate(sections):
        # This section's share of what is left, so that time one section did not use goes to the next.
        share = SHARES[name] / sum(SHARES[later] for later in sections[position:])
        budget = Budget(max(deadline - time.monotonic(), 0.0) * share, args.cap)
        if name == "epochs":
            workers = args.workers or ("0,2" if args.quick else "0,4")
            epoch_table(device, sizes, [int(w) for w in workers.split(",") if w.strip()], budget)
        elif name == "batched":
            batched_table(device, sizes, [int(k) for k in args.ks.split(",") if k.strip()], budget)
        else:
            study_table(device, sizes, args.trials, budget)
    print(f"\ntotal {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
