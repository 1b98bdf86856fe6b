"""One epoch of MNIST-shaped data: textbook pipeline vs careful loop vs our engine vs compute floor.

MLP (784-256-128-10) on all 60,000 images: (a) the textbook DataLoader pipeline (PIL + transforms per
sample), (a') a careful TensorDataset loop, (b) this engine, (c) the compute floor; ratios (b)/(c),
(a)/(b), (a')/(b). Then the built-in CNN (hpsearch.engine.models.CNN, --cnn-width, default 32 as in
``TrainConfig(model="cnn")``) on the first --cnn-samples images (default 6,000: at width 32 the CNN does
about 80 times the MLP's arithmetic per sample, 18.3 M multiply-adds forward, so all 60,000 take minutes
per epoch on a CPU; the output says the subset): (d) the
textbook pipeline with the CNN, (e) the engine on device-resident tensors (feed="device"), (f) the
engine streaming the same tensors through its seeded DataLoader (feed="stream"); ratios (d)/(e)
and (d)/(f), each the engine's speedup over the textbook loop. --cnn-samples 0 skips the CNN.

Prints seconds per epoch (best of --repeats; every repeat times each pipeline in turn) and the ratios.
Run: python scripts/bench_train.py [--device auto] [--repeats 3] [--cnn-samples 6000] [--cnn-width 32]
                                   [--num-workers 0] [--check]
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
from hpsearch.engine.devices import resolve_device
from hpsearch.engine.models import CNN, MLP, count_parameters

N_TRAIN, N_VAL, SIDE, CLASSES, BATCH = 60_000, 10_000, 28, 10, 128
HIDDEN = (256, 128)
CNN_VAL = 1_000  # validation samples of the CNN runs: (b) whole is not timed for the CNN, keep it short
GOALS = {"(b)/(c)": ("<=", 1.6), "(a)/(b)": (">=", 10.0), "(a')/(b)": (">=", 1.5),
         # On a CPU the CNN's convolutions dominate every pipeline, so the engine cannot win by much there;
         # the goal is that neither of its feeds is ever slower than the textbook loop.
         "(d)/(e)": (">=", 1.0), "(d)/(f)": (">=", 1.0)}


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


def loader_epoch(loader: DataLoader, device: torch.device, cnn_width: int | None = None) -> float:
    """One epoch of the standard DataLoader loop with torch.optim.AdamW defaults: the MLP on flattened
    samples, or with ``cnn_width`` the built-in CNN on (1, 28, 28) images."""
    torch.manual_seed(0)
    model = (MLP(SIDE * SIDE, CLASSES, HIDDEN) if cnn_width is None
             else CNN((1, SIDE, SIDE), CLASSES, cnn_width)).to(device)
    optimizer = torch.optim.AdamW(model.parameters())
    started = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x.view(len(x), -1) if cnn_width is None else x), y)
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
    return data.n_train / epoch.samples_per_s, whole  # type: ignore[attr-defined]


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
    parser.add_argument("--cnn-samples", type=int, default=6000,
                        help="training images of the CNN section (0: skip it)")
    parser.add_argument("--cnn-width", type=int, default=32, help="the CNN's width (TrainConfig model_args)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers of the engine's stream (f)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    if not 0 <= args.cnn_samples <= N_TRAIN:
        parser.error(f"--cnn-samples must be in [0, {N_TRAIN}], got {args.cnn_samples}")
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
    missed = print_ratios(ratios)
    if args.cnn_samples:
        print()
        missed += cnn_section(images, labels, device, args)
    return 1 if args.check and missed else 0


def print_ratios(ratios: dict[str, float]) -> int:
    """One line per ratio against its goal; returns how many goals were missed."""
    missed = 0
    for key, value in ratios.items():
        sense, goal = GOALS[key]
        met = value <= goal if sense == "<=" else value >= goal
        missed += not met
        print(f"ratio {key:9} {value:7.2f}   goal {sense} {goal:<5} {'met' if met else 'MISSED'}")
    return missed


def cnn_section(images: np.ndarray, labels: np.ndarray, device: torch.device, args: argparse.Namespace) -> int:
    """The built-in CNN on the first --cnn-samples images: textbook loop vs the engine's two feeds."""
    n = args.cnn_samples
    train_images, train_labels = images[:n], labels[:n]
    val_images, val_labels = images[N_TRAIN:N_TRAIN + CNN_VAL], labels[N_TRAIN:N_TRAIN + CNN_VAL]
    textbook = DataLoader(TextbookMNIST(train_images, train_labels), batch_size=BATCH, shuffle=True)
    # The engine's data keeps the sample shape: (n, 1, 28, 28), channels first as the CNN takes it.
    data = from_arrays(train_images[:, None], train_labels, val_images[:, None], val_labels, name="mnist-shaped",
                       device=device)
    base = TrainConfig(epochs=1, batch_size=BATCH, lr=1e-3, weight_decay=1e-2, model="cnn",
                       model_args={"width": args.cnn_width}, device=str(device), num_workers=args.num_workers)
    resident, stream = base.replace(feed="device"), base.replace(feed="stream")

    # One untimed pass of each pipeline over two batches first: the first convolutions of a process pay
    # for choosing and building their kernels, which would fall on whichever pipeline runs first.
    warm = from_arrays(train_images[:2 * BATCH, None], train_labels[:2 * BATCH], val_images[:BATCH, None],
                       val_labels[:BATCH], name="warm-up", device=device)
    engine_epoch(resident, warm, device)
    engine_epoch(stream, warm, device)
    loader_epoch(DataLoader(TextbookMNIST(train_images[:2 * BATCH], train_labels[:2 * BATCH]), batch_size=BATCH),
                 device, args.cnn_width)

    runs: dict[str, list[float]] = {"(d)": [], "(e)": [], "(f)": []}
    for _ in range(args.repeats):  # round-robin, as above
        runs["(e)"].append(engine_epoch(resident, data, device)[0])
        runs["(f)"].append(engine_epoch(stream, data, device)[0])
        runs["(d)"].append(loader_epoch(textbook, device, args.cnn_width))
    seconds = {key: min(values) for key, values in runs.items()}

    params = count_parameters(CNN((1, SIDE, SIDE), CLASSES, args.cnn_width))
    names = {"(d)": "textbook: PIL + ToTensor + Normalize, DataLoader, CNN",
             "(e)": 'hpsearch engine, device-resident tensors (feed="device")',
             "(f)": f'hpsearch engine, DataLoader stream (feed="stream", {args.num_workers} wk)'}
    print(f"CNN (hpsearch.engine.models.CNN, width {args.cnn_width}, {params:,} params) on a subset: the first {n:,} "
          f"of the {N_TRAIN:,} images (--cnn-samples), 1 x {SIDE} x {SIDE}, batch {BATCH}, best of {args.repeats}")
    print(f"{'':5} {'pipeline':56} {'s/epoch':>9} {'samples/s':>11}")
    for key, name in names.items():
        print(f"{key:5} {name:56} {seconds[key]:9.3f} {n / seconds[key]:11,.0f}")
    return print_ratios({"(d)/(e)": seconds["(d)"] / seconds["(e)"], "(d)/(f)": seconds["(d)"] / seconds["(f)"]})


if __name__ == "__main__":
    sys.exit(main())
