"""One epoch of MNIST-shaped data: textbook pipeline vs careful loop vs our engine vs compute floor.

Prints seconds per epoch (best of --repeats) and the ratios (b)/(c), (a)/(b), (a')/(b).
Run: python scripts/bench_train.py [--device auto] [--repeats 3] [--check]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import transforms

from hpsearch import TrainConfig, from_arrays, train
from hpsearch.devices import resolve_device
from hpsearch.models import MLP

N_TRAIN, N_VAL, SIDE, CLASSES, BATCH = 60_000, 10_000, 28, 10, 128
HIDDEN = (256, 128)
GOALS = {"(b)/(c)": ("<=", 1.6), "(a)/(b)": (">=", 10.0), "(a')/(b)": (">=", 1.5)}


class TextbookMNIST(Dataset):
    """What tutorials write: uint8 images turned into PIL images and transformed one sample at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index], mode="L")), int(self.labels[index])


def make_images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped uint8 images with a class-dependent pattern, so training is meaningful."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, N_TRAIN + N_VAL)
    prototypes = rng.integers(0, 256, (CLASSES, SIDE, SIDE))
    noise = rng.integers(-64, 64, (N_TRAIN + N_VAL, SIDE, SIDE))
    return np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8), labels


def loader_epoch(loader: DataLoader, device: torch.device) -> float:
    """One epoch of the standard DataLoader loop with torch.optim.AdamW defaults."""
    torch.manual_seed(0)
    model = MLP(SIDE * SIDE, CLASSES, HIDDEN).to(device)
    optimizer = torch.optim.AdamW(model.parameters())
    started = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x.view(len(x), -1)), y)
        loss.backward()
        optimizer.step()
    _sync(device)
    return time.perf_counter() - started


def engine_epoch(config: TrainConfig, data: object, device: torch.device) -> tuple[float, float]:
    """Our engine: (training part of the epoch, whole train() call including validation and setup)."""
    started = time.perf_counter()
    result = train(config, data, device)  # type: ignore[arg-type]
    whole = time.perf_counter() - started
    epoch = result.history[0]
    return N_TRAIN / epoch.samples_per_s, whole


def matmul_flops_per_s(device: torch.device, iterations: int = 300) -> float:
    """FLOP rate of the model's largest matmul: (128 x 784) @ (784 x 256)."""
    a = torch.randn(BATCH, SIDE * SIDE, device=device)
    b = torch.randn(SIDE * SIDE, HIDDEN[0], device=device)
    for _ in range(20):
        a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(iterations):
        a @ b
    _sync(device)
    return 2 * BATCH * SIDE * SIDE * HIDDEN[0] * iterations / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    device = resolve_device(args.device)

    images, labels = make_images()
    train_images, train_labels = images[:N_TRAIN], labels[:N_TRAIN]
    textbook = DataLoader(TextbookMNIST(train_images, train_labels), batch_size=BATCH, shuffle=True)
    normalized = (torch.from_numpy(train_images).float().div(255) - 0.1307) / 0.3081
    careful = DataLoader(TensorDataset(normalized.view(N_TRAIN, -1), torch.from_numpy(train_labels)),
                         batch_size=BATCH, shuffle=True)
    data = from_arrays(train_images, train_labels, images[N_TRAIN:], labels[N_TRAIN:], name="mnist-shaped",
                       device=device)
    config = TrainConfig(epochs=1, batch_size=BATCH, lr=1e-3, weight_decay=1e-2, hidden=HIDDEN,
                         device=str(device))

    macs = SIDE * SIDE * HIDDEN[0] + HIDDEN[0] * HIDDEN[1] + HIDDEN[1] * CLASSES
    # Repeats go round-robin over the pipelines, so that each best-of comes from the same stretch
    # of time: this machine's speed drifts by tens of percent from minute to minute.
    runs: dict[str, list[float]] = {"(a)": [], "(a')": [], "(b)": [], "(b) whole": [], "(c)": []}
    for _ in range(args.repeats):
        runs["(c)"].append(6 * macs * N_TRAIN / matmul_flops_per_s(device))
        training_part, whole = engine_epoch(config, data, device)
        runs["(b)"].append(training_part)
        runs["(b) whole"].append(whole)
        runs["(a')"].append(loader_epoch(careful, device))
        runs["(a)"].append(loader_epoch(textbook, device))
    seconds = {key: min(values) for key, values in runs.items()}
    rate = 6 * macs * N_TRAIN / seconds["(c)"]

    names = {"(a)": "textbook: PIL + ToTensor + Normalize, DataLoader",
             "(a')": "careful: pre-normalized TensorDataset, DataLoader",
             "(b)": "hpsearch engine (training part of the epoch)",
             "(c)": f"compute floor: 6 x {macs:,} MAC/sample at {rate / 1e9:.1f} GFLOP/s"}
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{N_TRAIN:,} x {SIDE * SIDE} uint8, batch {BATCH}, best of {args.repeats}")
    print(f"{'':5} {'pipeline':56} {'s/epoch':>9} {'samples/s':>11}")
    for key, name in names.items():
        print(f"{key:5} {name:56} {seconds[key]:9.3f} {N_TRAIN / seconds[key]:11,.0f}")
    print(f"{'':5} {'(b) whole train() call: setup + epoch + 10,000-sample val':56} {seconds['(b) whole']:9.3f}")

    ratios = {"(b)/(c)": seconds["(b)"] / seconds["(c)"], "(a)/(b)": seconds["(a)"] / seconds["(b)"],
              "(a')/(b)": seconds["(a')"] / seconds["(b)"]}
    missed = 0
    for key, value in ratios.items():
        sense, goal = GOALS[key]
        met = value <= goal if sense == "<=" else value >= goal
        missed += not met
        print(f"ratio {key:9} {value:7.2f}   goal {sense} {goal:<5} {'met' if met else 'MISSED'}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
