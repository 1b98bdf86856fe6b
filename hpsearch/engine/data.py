"""The data the engine trains on, each sample in its own shape: tensors placed on the device once and
batched by index (``Data``), or ``Dataset`` objects streamed through a seeded DataLoader (``StreamData``);
both give the engine the same batches. ``from_arrays`` and ``from_datasets`` check what they are given;
``place`` puts it where the engine reads it. hpsearch.engine.datasets loads the named datasets into them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset, default_collate

from hpsearch.errors import ConfigError, DataError

__all__ = ["ANY", "CLASSES", "EVAL_CHUNK", "FIT_SHARE", "VALUES", "Data", "StreamData", "TaskData", "from_arrays",
           "from_datasets", "place"]

logger = logging.getLogger(__name__)

# Tensors "fit" on a GPU when they take at most this share of its free memory; larger ones stream.
FIT_SHARE = 0.5
# Validation runs in chunks of this many samples to bound memory on large datasets.
EVAL_CHUNK = 8192
# What the targets must be: class labels, regression values, or either (a custom loss).
CLASSES, VALUES, ANY = "classes", "values", "any"

Batch = tuple[torch.Tensor, torch.Tensor]
_CPU = torch.device("cpu")


@dataclass(frozen=True)
class Data:
    """Train and validation tensors on one device, samples in their own shape (N, *sample_shape).

    ``num_classes`` is the model's output size: the classes of a classification task, the number of
    targets of a regression (1 for targets of shape (N,)). ``classification`` says which.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    name: str
    classification: bool = True

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def input_dim(self) -> int:
        """Features of one flattened sample (the stacked MLP's input width)."""
        return math.prod(self.sample_shape)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.x_val.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device: torch.device | str) -> Data:
        """The same data on ``device`` (no copy when it is there already)."""
        return Data(self.x_train.to(device), self.y_train.to(device), self.x_val.to(device),
                    self.y_val.to(device), self.num_classes, self.name, self.classification)

    def generator(self, seed: int) -> torch.Generator:
        """The shuffle's generator, on the data's device so that the order is drawn where it is used."""
        return torch.Generator(device=self.device).manual_seed(seed)

    def train_batches(self, batch_size: int, shuffle: torch.Generator) -> Iterator[Batch]:
        """One epoch of shuffled batches, taken by index from the device-resident tensors."""
        order = torch.randperm(self.n_train, device=self.device, generator=shuffle)
        for start in range(0, self.n_train, batch_size):
            index = order[start:start + batch_size]
            yield self.x_train[index], self.y_train[index]

    def val_batches(self) -> Iterator[Batch]:
        for start in range(0, self.n_val, EVAL_CHUNK):
            yield self.x_val[start:start + EVAL_CHUNK], self.y_val[start:start + EVAL_CHUNK]

    def head(self, n: int) -> Batch:
        """The first ``n`` training samples (fewer when there are fewer), for the checks."""
        return self.x_train[:n], self.y_train[:n]


class _SeededOrder(Sampler[int]):
    """The order ``Data.train_batches`` draws on a CPU (``randperm`` on the shuffle generator), so that a
    stream and tensors on the CPU see the same batches and a checkpoint's generator state resumes it."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


@dataclass(frozen=True)
class StreamData:
    """Train and validation ``Dataset``s streamed to ``device`` through DataLoaders.

    With CUDA, batches come from pinned memory and are copied without blocking; ``num_workers``
    processes load them. The shuffle is seeded, so a trial is reproducible.
    """

    train: Dataset[Any]
    val: Dataset[Any]
    num_classes: int
    name: str
    sample_shape: tuple[int, ...]
    classification: bool = True
    device: torch.device = _CPU
    num_workers: int = 0

    @property
    def input_dim(self) -> int:
        return math.prod(self.sample_shape)

    @property
    def n_train(self) -> int:
        return len(self.train)  # type: ignore[arg-type]

    @property
    def n_val(self) -> int:
        return len(self.val)  # type: ignore[arg-type]

    def to(self, device: torch.device | str) -> StreamData:
        return dataclasses.replace(self, device=torch.device(device))

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)  # the sampler runs on the host

    def train_batches(self, batch_size: int, shuffle: torch.Generator) -> Iterator[Batch]:
        yield from self._moved(self._loader(self.train, batch_size, _SeededOrder(self.n_train, shuffle)))

    def val_batches(self) -> Iterator[Batch]:
        yield from self._moved(self._loader(self.val, min(EVAL_CHUNK, 1024), None))

    def head(self, n: int) -> Batch:
        items = [self.train[index] for index in range(min(n, self.n_train))]
        x, y = default_collate(items)
        return x.to(self.device), y.to(self.device)

    def _loader(self, dataset: Dataset[Any], batch_size: int, sampler: Sampler[int] | None) -> DataLoader[Any]:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False)

    def _moved(self, loader: DataLoader[Any]) -> Iterator[Batch]:
        non_blocking = self.device.type == "cuda"  # from pinned memory, the copy overlaps the next step
        for x, y in loader:
            yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)


TaskData = Data | StreamData


def from_arrays(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_val: np.ndarray | torch.Tensor,
    y_val: np.ndarray | torch.Tensor,
    *,
    name: str = "arrays",
    device: torch.device | str = "cpu",
    targets: str = CLASSES,
    num_classes: int | None = None,
    normalize: bool = True,
) -> Data:
    """Check arrays (matching lengths, finite values, the same sample shape in both splits, labels in
    range), optionally normalize them with the training split's mean and std, then place them.

    Normalization is one global mean/std (like MNIST's ``Normalize((0.1307,), (0.3081,))``),
    computed on the training split only so that validation stays unseen. ``targets`` says whether
    ``y`` holds class labels, regression values, or either.
    """
    parts = {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}
    tensors = {}
    for key, value in parts.items():
        try:
            tensors[key] = value if torch.is_tensor(value) else _from_array(np.asarray(value))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"dataset {name!r}: {key} is not an array ({type(value).__name__}: {exc})") from None
    for split in ("train", "val"):
        x, y = tensors[f"x_{split}"], tensors[f"y_{split}"]
        if x.ndim < 2 or y.ndim not in (1, 2):
            raise DataError(f"dataset {name!r}: x_{split} must have one row per sample and y_{split} be 1-D (or 2-D "
                            f"regression targets), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
        if len(x) != len(y):
            raise DataError(f"dataset {name!r}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        if len(x) == 0:
            raise DataError(f"dataset {name!r}: the {split} split is empty")
    if tensors["x_train"].shape[1:] != tensors["x_val"].shape[1:]:
        raise DataError(f"dataset {name!r}: x_train samples have shape {tuple(tensors['x_train'].shape[1:])} but "
                        f"x_val samples {tuple(tensors['x_val'].shape[1:])}")
    x_train_f, x_val_f = tensors["x_train"].float(), tensors["x_val"].float()
    for key, x in (("x_train", x_train_f), ("x_val", x_val_f)):
        if not torch.isfinite(x).all():
            raise DataError(f"dataset {name!r}: {key} contains NaN or infinite values")
    y_train_t, y_val_t, outputs, classification = _targets(tensors["y_train"], tensors["y_val"], name, targets,
                                                           num_classes)
    if normalize:
        mean, std = x_train_f.mean(), x_train_f.std().clamp_min(1e-8)
        x_train_f, x_val_f = (x_train_f - mean) / std, (x_val_f - mean) / std
    return Data(x_train_f.to(device), y_train_t.to(device), x_val_f.to(device), y_val_t.to(device), outputs, name,
                classification)


def _from_array(array: np.ndarray) -> torch.Tensor:
    """``array`` as a tensor, sharing its memory; a read-only array (what pandas gives under copy-on-write) is
    copied first: a tensor may not share it (torch warns that writing to one is undefined)."""
    return torch.as_tensor(array if array.flags.writeable else array.copy())


def from_datasets(train: Any, val: Any, *, name: str = "datasets", device: torch.device | str = "cpu",
                  targets: str = CLASSES, num_classes: int | None = None, num_workers: int = 0) -> StreamData:
    """Check two ``Dataset``s of (sample, target) items and stream them: sizes, the first items' shapes,
    and the number of classes from ``classes``, ``targets`` or, failing both, every label once."""
    for split, dataset in (("train", train), ("val", val)):
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise DataError(f"dataset {name!r}: the {split} split must be a torch Dataset with __len__ and "
                            f"__getitem__, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise DataError(f"dataset {name!r}: the {split} split is empty")
    firsts = []
    for split, dataset in (("train", train), ("val", val)):
        item = dataset[0]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise DataError(f"dataset {name!r}: {split} items must be (sample, target) pairs, got "
                            f"{type(item).__name__}")
        x, y = torch.as_tensor(item[0]), torch.as_tensor(item[1])
        if not torch.isfinite(x.float()).all():
            raise DataError(f"dataset {name!r}: the first {split} sample contains NaN or infinite values")
        firsts.append((x, y))
    if firsts[0][0].shape != firsts[1][0].shape:
        raise DataError(f"dataset {name!r}: train samples have shape {tuple(firsts[0][0].shape)} but val samples "
                        f"{tuple(firsts[1][0].shape)}")
    label = firsts[0][1]
    classification = targets == CLASSES or (targets == ANY and not label.is_floating_point())
    if not classification:
        outputs = int(label.numel()) if label.ndim else 1
    else:
        outputs = num_classes or _dataset_classes(train, val)
    return StreamData(train, val, outputs, name, tuple(firsts[0][0].shape), classification, torch.device(device),
                      num_workers)


def place(data: TaskData, device: torch.device, feed: str = "auto", num_workers: int = 0) -> TaskData:
    """Put ``data`` where the engine reads it: tensors on ``device`` when they fit (FIT_SHARE of a GPU's free
    memory; always on a CPU) or ``feed`` says ``device``, else streamed from host memory."""
    if isinstance(data, StreamData):
        if feed == "device":
            raise ConfigError(f"feed must be auto or stream for Dataset objects (dataset {data.name!r}), got 'device'")
        return dataclasses.replace(data, device=device, num_workers=num_workers)
    stream = feed == "stream" or (feed == "auto" and not _fits(data, device))
    if not stream:
        return data.to(device)
    host = data.to("cpu")
    return StreamData(TensorDataset(host.x_train, host.y_train), TensorDataset(host.x_val, host.y_val),
                      data.num_classes, data.name, data.sample_shape, data.classification, device, num_workers)


def _fits(data: Data, device: torch.device) -> bool:
    if device.type != "cuda" or data.device == device:
        return True
    size = sum(t.numel() * t.element_size() for t in (data.x_train, data.y_train, data.x_val, data.y_val))
    return size <= FIT_SHARE * torch.cuda.mem_get_info(device)[0]


def _targets(y_train: torch.Tensor, y_val: torch.Tensor, name: str, targets: str, num_classes: int | None,
             ) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """Labels as int64 with the number of classes, or regression targets as float32 with their count."""
    integral = all(not y.is_floating_point() or bool(torch.equal(y, y.round())) for y in (y_train, y_val))
    if targets == CLASSES or (targets == ANY and integral and y_train.ndim == 1 and not y_train.is_floating_point()):
        for split, y in (("train", y_train), ("val", y_val)):
            if y.ndim != 1:
                raise DataError(f"dataset {name!r}: y_{split} must be 1-D class labels, got shape {tuple(y.shape)}")
            if y.is_floating_point() and not torch.equal(y, y.round()):
                raise DataError(f"dataset {name!r}: y_{split} must hold integer class labels (for float targets "
                                f"use --loss mse)")
        y_train_l, y_val_l = y_train.long(), y_val.long()
        if min(int(y_train_l.min()), int(y_val_l.min())) < 0:
            raise DataError(f"dataset {name!r}: class labels must be >= 0")
        top = max(int(y_train_l.max()), int(y_val_l.max()))
        if num_classes is not None and top >= num_classes:
            raise DataError(f"dataset {name!r}: label {top} is out of range for num_classes {num_classes}")
        return y_train_l, y_val_l, num_classes or top + 1, True
    if y_train.shape[1:] != y_val.shape[1:]:
        raise DataError(f"dataset {name!r}: y_train targets have shape {tuple(y_train.shape[1:])} but y_val "
                        f"{tuple(y_val.shape[1:])}")
    y_train_f, y_val_f = y_train.float(), y_val.float()
    for split, y in (("train", y_train_f), ("val", y_val_f)):
        if not torch.isfinite(y).all():
            raise DataError(f"dataset {name!r}: y_{split} contains NaN or infinite values")
    return y_train_f, y_val_f, int(y_train.shape[1]) if y_train.ndim == 2 else 1, False


def _dataset_classes(train: Any, val: Any) -> int:
    """Classes of a Dataset: its ``classes`` (torchvision's have it), its ``targets``, else every label."""
    if hasattr(train, "classes") and len(train.classes):
        return len(train.classes)
    top = -1
    for dataset in (train, val):
        labels = getattr(dataset, "targets", None)
        if labels is None:
            labels = [dataset[index][1] for index in range(len(dataset))]
        top = max(top, int(torch.as_tensor(labels).max()))
    return top + 1


