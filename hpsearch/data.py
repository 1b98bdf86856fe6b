"""Datasets as normalized tensors placed on the device once, so training batches by index.

Registry: ``digits`` (scikit-learn, offline, default), ``mnist`` and ``fashion-mnist``
(torchvision files under ``data_dir``), ``npz:PATH`` (the user's arrays) and
``synthetic[:n=N,d=D,classes=C,noise=S]`` (generated, for tests and benchmarks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hpsearch.errors import ConfigError, DataError

__all__ = ["DATASETS", "Data", "check_dataset_name", "from_arrays", "load_data", "make_synthetic"]

logger = logging.getLogger(__name__)

DATASETS = ("digits", "mnist", "fashion-mnist", "npz:PATH", "synthetic")
# The train/val split is fixed, independent of the training seed, so every trial of a study
# sees the same validation set.
SPLIT_SEED = 0
_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_SYNTHETIC_DEFAULTS = {"n": 4000, "d": 784, "classes": 10, "noise": 2}


@dataclass(frozen=True)
class Data:
    """Train and validation tensors (float32 features, int64 labels) on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    name: str

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def to(self, device: torch.device | str) -> Data:
        """The same data on ``device`` (no copy when it is there already)."""
        return Data(self.x_train.to(device), self.y_train.to(device), self.x_val.to(device),
                    self.y_val.to(device), self.num_classes, self.name)


def check_dataset_name(name: str) -> None:
    """Reject a dataset name the registry cannot load, before any file is touched."""
    if name in ("digits", "mnist", "fashion-mnist"):
        return
    if name.startswith("npz:") and len(name) > 4:
        return
    if name == "synthetic" or name.startswith("synthetic:"):
        _parse_synthetic(name)
        return
    raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")


def load_data(
    name: str = "digits",
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    subset: int | None = None,
    val_fraction: float = 0.2,
    device: torch.device | str = "cpu",
) -> Data:
    """Load a registered dataset, split, subset, normalize and move it to ``device``."""
    check_dataset_name(name)
    if name == "digits":
        x, y = _load_digits()
        arrays = _split(x, y, val_fraction)
    elif name in _TORCHVISION_CLASSES:
        x, y = _load_torchvision(name, data_dir, download)
        arrays = _split(x, y, val_fraction)
    elif name.startswith("npz:"):
        arrays = _load_npz(Path(name[4:]), val_fraction)
    else:
        x, y = make_synthetic(**_parse_synthetic(name))
        arrays = _split(x, y, val_fraction)
    x_train, y_train, x_val, y_val = arrays
    if subset is not None:
        if subset > len(x_train):
            raise ConfigError(f"subset must be at most the {len(x_train)} training samples of {name}, got {subset}")
        x_train, y_train = x_train[:subset], y_train[:subset]
    return from_arrays(x_train, y_train, x_val, y_val, name=name, device=device)


def from_arrays(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_val: np.ndarray | torch.Tensor,
    y_val: np.ndarray | torch.Tensor,
    *,
    name: str = "arrays",
    device: torch.device | str = "cpu",
) -> Data:
    """Check, flatten and normalize arrays with the training split's mean and std, then place them.

    Normalization is one global mean/std (like MNIST's ``Normalize((0.1307,), (0.3081,))``),
    computed on the training split only so that validation stays unseen.
    """
    parts = {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}
    tensors = {key: torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
               for key, value in parts.items()}
    for split in ("train", "val"):
        x, y = tensors[f"x_{split}"], tensors[f"y_{split}"]
        if x.ndim < 2 or y.ndim != 1:
            raise DataError(f"dataset {name!r}: x_{split} must have one row per sample and y_{split} be 1-D, "
                            f"got shapes {tuple(x.shape)} and {tuple(y.shape)}")
        if len(x) != len(y):
            raise DataError(f"dataset {name!r}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        if len(x) == 0:
            raise DataError(f"dataset {name!r}: the {split} split is empty")
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise DataError(f"dataset {name!r}: y_{split} must hold integer class labels")
    x_train_f = tensors["x_train"].reshape(len(tensors["x_train"]), -1).float()
    x_val_f = tensors["x_val"].reshape(len(tensors["x_val"]), -1).float()
    if x_train_f.shape[1] != x_val_f.shape[1]:
        raise DataError(f"dataset {name!r}: x_train has {x_train_f.shape[1]} features but x_val has "
                        f"{x_val_f.shape[1]}")
    for key, x in (("x_train", x_train_f), ("x_val", x_val_f)):
        if not torch.isfinite(x).all():
            raise DataError(f"dataset {name!r}: {key} contains NaN or infinite values")
    y_train_l, y_val_l = tensors["y_train"].long(), tensors["y_val"].long()
    if min(int(y_train_l.min()), int(y_val_l.min())) < 0:
        raise DataError(f"dataset {name!r}: class labels must be >= 0")
    mean, std = x_train_f.mean(), x_train_f.std().clamp_min(1e-8)
    num_classes = int(max(int(y_train_l.max()), int(y_val_l.max()))) + 1
    return Data(((x_train_f - mean) / std).to(device), y_train_l.to(device),
                ((x_val_f - mean) / std).to(device), y_val_l.to(device), num_classes, name)


def make_synthetic(n: int = 4000, d: int = 784, classes: int = 10, noise: float = 2.0, seed: int = SPLIT_SEED,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Learnable Gaussian clusters: one random prototype per class plus ``noise`` times unit noise."""
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((classes, d), dtype=np.float32)
    y = rng.integers(0, classes, size=n)
    x = prototypes[y] + noise * rng.standard_normal((n, d), dtype=np.float32)
    return x, y


def _parse_synthetic(name: str) -> dict[str, int]:
    """``synthetic:n=60000,d=784,classes=10,noise=2`` → keyword arguments of make_synthetic."""
    values = dict(_SYNTHETIC_DEFAULTS)
    spec = name.partition(":")[2]
    for item in filter(None, spec.split(",")):
        key, _, raw = item.partition("=")
        if key not in values or not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"dataset synthetic takes n=, d=, classes=, noise= with positive integers, got {name!r}")
        values[key] = int(raw)
    if values["classes"] < 2:
        raise ConfigError(f"dataset synthetic needs classes >= 2, got {name!r}")
    return values


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A fixed, seeded shuffle into train and validation parts."""
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} rows but y has {len(y)}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_val = max(1, round(len(x) * val_fraction))
    if n_val >= len(x):
        raise ConfigError(f"val_fraction {val_fraction} leaves no training samples out of {len(x)}")
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # scikit-learn is slow to import; only this dataset needs it

    bunch = load_digits()
    return bunch.data.astype(np.float32), bunch.target


def _load_torchvision(name: str, data_dir: str | Path | None, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style training split read by torchvision from ``data_dir``; downloads only when asked."""
    import torchvision

    folder = _TORCHVISION_CLASSES[name]
    if data_dir is None:
        raise DataError(f"dataset {name!r} needs --data-dir, a folder holding {folder}/raw/ "
                        f"(or add --download to fetch it there)")
    dataset_class = getattr(torchvision.datasets, folder)
    try:
        dataset = dataset_class(root=str(data_dir), train=True, download=download)
    except RuntimeError:
        raise DataError(f"dataset {name!r}: files not found under --data-dir {data_dir} "
                        f"(expected {folder}/raw/train-images-idx3-ubyte and the other IDX files; "
                        f"add --download to fetch them)") from None
    except (OSError, ValueError) as exc:  # a failed download or a corrupt file
        raise DataError(f"dataset {name!r}: cannot read --data-dir {data_dir}: {exc}") from None
    return dataset.data.numpy(), dataset.targets.numpy()


def _load_npz(path: Path, val_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The user's arrays: ``x``/``y`` (split here) or ``x_train``/``y_train``/``x_val``/``y_val``."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            contents = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"dataset 'npz:{path}': cannot read the file: {exc}") from None
    split_keys = ("x_train", "y_train", "x_val", "y_val")
    if all(key in contents for key in split_keys):
        return tuple(contents[key] for key in split_keys)  # type: ignore[return-value]
    if "x" in contents and "y" in contents:
        if len(contents["x"]) != len(contents["y"]):
            raise DataError(f"dataset 'npz:{path}': x has {len(contents['x'])} rows but y has "
                            f"{len(contents['y'])}")
        return _split(contents["x"], contents["y"], val_fraction)
    raise DataError(f"dataset 'npz:{path}': needs keys x and y, or x_train, y_train, x_val and y_val; "
                    f"found {', '.join(sorted(contents)) or 'none'}")
