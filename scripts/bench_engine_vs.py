"""The training engine of this checkout against the one of an earlier commit, on the same MNIST-shaped data.

Each round trains one epoch of the reference MLP (784-256-128-10, AdamW, batch 128) in a fresh process
per engine, the two engines taking turns, so that the machine's drift falls on both alike. Prints each
round, the best and median epoch (the training part, as bench_train's (b)) and the key ratio: this
engine's time over the earlier one's (1.00 = as fast; below 1 faster).
Run: python scripts/bench_engine_vs.py [--rev 8fa56b7] [--rounds 5] [--samples 60000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# One epoch in the engine of whatever hpsearch is first on sys.path; the same call works before and after
# the data layer kept sample shapes (from_arrays flattens or keeps (N, 784) alike).
EPOCH = """
import sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from hpsearch import TrainConfig, from_arrays, train
n = int(sys.argv[2])
rng = np.random.default_rng(0)
labels = rng.integers(0, 10, n + 2000)
images = np.clip(rng.integers(0, 256, (10, 784))[labels] + rng.integers(-64, 64, (n + 2000, 784)), 0, 255)
data = from_arrays(images[:n].astype(np.float32), labels[:n], images[n:].astype(np.float32), labels[n:])
config = TrainConfig(epochs=1, batch_size=128, lr=1e-3, hidden=(256, 128), device="cpu")
train(config.replace(epochs=1), data)  # warm-up: kernels, allocator, torch's first optimizer
print(n / train(config, data).history[0].samples_per_s)
"""


def epoch_seconds(source: Path, samples: int) -> float:
    done = subprocess.run([sys.executable, "-c", EPOCH, str(source), str(samples)], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="8fa56b7", help="the earlier commit (default: before issue 14)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=60_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        earlier = Path(scratch) / "earlier"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(earlier), args.rev],
                       check=True, capture_output=True)
        try:
            times: dict[str, list[float]] = {"this checkout": [], f"at {args.rev}": []}
            for round_number in range(1, args.rounds + 1):
                times["this checkout"].append(epoch_seconds(ROOT, args.samples))
                times[f"at {args.rev}"].append(epoch_seconds(earlier, args.samples))
                print(f"round {round_number}: " + ", ".join(f"{name} {t[-1]:.3f} s" for name, t in times.items()))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(earlier)], check=False)
    print(f"\n{args.samples} x 784 samples, MLP 256-128, AdamW, batch 128, 2 CPU threads or what torch uses; "
          f"{args.rounds} rounds, engines alternating")
    print(f"{'engine':<16}{'best s':>10}{'median s':>10}")
    for name, values in times.items():
        print(f"{name:<16}{min(values):>10.3f}{statistics.median(values):>10.3f}")
    mine, theirs = times["this checkout"], times[f"at {args.rev}"]
    print(f"key ratio: this engine / the one at {args.rev}: {min(mine) / min(theirs):.3f} best against best, "
          f"{statistics.median(mine) / statistics.median(theirs):.3f} median against median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
