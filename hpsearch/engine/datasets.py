"""Datasets by name, loaded into hpsearch.engine.data's containers.

Registry: ``digits`` (scikit-learn, offline, default; (1, 8, 8)), ``mnist`` and ``fashion-mnist``
((1, 28, 28), torchvision files under ``data_dir``), ``cifar10`` ((3, 32, 32), the python batches
under ``data_dir``), ``npz:PATH`` (the user's arrays, their sample shape kept),
``synthetic[:n=N,d=D,classes=C,noise=S]`` (generated, (D,)) and an entry point to the user's
``load()`` (``module:attr`` or ``file.py:attr``), whose data is taken as given and checked. The
built-in ones are split with a fixed seed and normalized with the training split's statistics.
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from hpsearch.engine.data import CLASSES, TaskData, from_arrays, from_datasets
from hpsearch.engine.entry_points import is_entry_point, resolve
from hpsearch.errors import ConfigError, DataError, TaskError

__all__ = ["BUILTIN_DATASETS", "DATASETS", "SPLIT_SEED", "check_dataset_name", "load_data", "make_synthetic"]

logger = logging.getLogger(__name__)

BUILTIN_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
FILE_DATASETS = ("mnist", "fashion-mnist", "cifar10")  # read from data_dir, where download fetches them
DATASETS = (*BUILTIN_DATASETS, "npz:PATH", "synthetic", "module:attr", "file.py:attr")
# The train/val split is fixed, independent of the training seed, so every trial of a study
# sees the same validation set.
SPLIT_SEED = 0
_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_SYNTHETIC_DEFAULTS = {"n": 4000, "d": 784, "classes": 10, "noise": 2}


def check_dataset_name(name: str) -> None:
    """Reject a dataset name the registry cannot load, before any file is touched."""
    if name == "synthetic" or name.startswith("synthetic:"):  # before entry points: synthetic:n has their shape
        _parse_synthetic(name)
        return
    if name in BUILTIN_DATASETS or is_entry_point(name):
        return
    if name.startswith("npz:") and len(name) > 4:
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
    targets: str = CLASSES,
    num_classes: int | None = None,
) -> TaskData:
    """Load a dataset: split, subset, normalize (built-in ones; a user's data is taken as given) and
    check it; tensors go to ``device``, a user's ``Dataset``s stream there."""
    check_dataset_name(name)
    if is_users_load(name):
        return _load_entry_point(name, subset, device, targets, num_classes)
    if name == "digits":
        x, y = _load_digits()
        arrays = _split(x.reshape(-1, 1, 8, 8), y, val_fraction)
    elif name in _TORCHVISION_CLASSES:
        x, y = _load_torchvision(name, data_dir, download)
        arrays = _split(x[:, None], y, val_fraction)
    elif name == "cifar10":
        x, y = _load_cifar10(data_dir, download)
        arrays = _split(x, y, val_fraction)
    elif name.startswith("npz:"):
        arrays = _load_npz(Path(name[4:]), val_fraction)
    else:
        x, y = make_synthetic(**_parse_synthetic(name))
        arrays = _split(x, y, val_fraction)
    x_train, y_train, x_val, y_val = _subset(arrays, subset, name)
    return from_arrays(x_train, y_train, x_val, y_val, name=name, device=device, targets=targets,
                       num_classes=num_classes, normalize=True)


def is_users_load(name: str) -> bool:
    """Whether dataset ``name`` is the user's ``load()`` (module:attr or file.py:attr), whose splits are taken as
    given, rather than a built-in dataset, npz:PATH or synthetic data that hpsearch splits."""
    return is_entry_point(name) and not name.startswith(("npz:", "synthetic"))


def _load_entry_point(name: str, subset: int | None, device: torch.device | str, targets: str,
                      num_classes: int | None) -> TaskData:
    """The user's ``load()``: four arrays or tensors, or two Datasets."""
    load: Callable[[], Any] = resolve(name, "dataset")
    try:
        loaded = load()
    except Exception as exc:
        raise TaskError(f"dataset {name!r}: load() raised {type(exc).__name__}: {exc}") from None
    if isinstance(loaded, (tuple, list)) and len(loaded) == 2 and all(isinstance(d, Dataset) for d in loaded):
        train, val = loaded
        if subset is not None:
            if subset > len(train):  # type: ignore[arg-type]
                raise ConfigError(f"subset must be at most the {len(train)} training samples of {name}, "  # type: ignore[arg-type]
                                  f"got {subset}")
            train = Subset(train, range(subset))
        return from_datasets(train, val, name=name, device=device, targets=targets, num_classes=num_classes)
    if not (isinstance(loaded, (tuple, list)) and len(loaded) == 4):
        raise TaskError(f"dataset {name!r}: load() must return (x_train, y_train, x_val, y_val) arrays or tensors, "
                        f"or (train_dataset, val_dataset), got {_describe(loaded)}")
    x_train, y_train, x_val, y_val = _subset(tuple(loaded), subset, name)  # type: ignore[arg-type]
    return from_arrays(x_train, y_train, x_val, y_val, name=name, device=device, targets=targets,
                       num_classes=num_classes, normalize=False)


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}: ({', '.join(type(v).__name__ for v in value)})"
    return f"a {type(value).__name__}"


def _subset(arrays: tuple[Any, Any, Any, Any], subset: int | None, name: str) -> tuple[Any, Any, Any, Any]:
    x_train, y_train, x_val, y_val = arrays
    if subset is not None:
        if subset > len(x_train):
            raise ConfigError(f"subset must be at most the {len(x_train)} training samples of {name}, got {subset}")
        x_train, y_train = x_train[:subset], y_train[:subset]
    return x_train, y_train, x_val, y_val


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
        if key not in values or not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
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
    """scikit-learn's digits, read from the file its wheel ships (``datasets/data/digits.csv.gz``: 64 pixel
    columns and the label per row), as ``sklearn.datasets.load_digits`` reads it; importing scikit-learn
    (and SciPy with it) would cost about a second of every run's start-up. Falls back to that function
    where the file is not found."""
    package = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = package.submodule_search_locations if package is not None else None
    path = Path(folders[0]) / "datasets" / "data" / "digits.csv.gz" if folders else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.data.astype(np.float32), bunch.target
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


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


def _load_cifar10(data_dir: str | Path | None, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's five training batches (the python version torchvision downloads) as (N, 3, 32, 32) uint8.

    Read here rather than through torchvision.datasets.CIFAR10, which refuses files whose md5 differs
    from the published one, so that small test files work too; torchvision does the ``--download``.
    """
    if data_dir is None:
        raise DataError("dataset 'cifar10' needs --data-dir, a folder holding cifar-10-batches-py/ "
                        "(or add --download to fetch it there)")
    folder = Path(data_dir) / "cifar-10-batches-py"
    if download and not folder.is_dir():
        import torchvision

        try:
            torchvision.datasets.CIFAR10(root=str(data_dir), train=True, download=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise DataError(f"dataset 'cifar10': download into --data-dir {data_dir} failed: {exc}") from None
    batches = [folder / f"data_batch_{index}" for index in range(1, 6)]
    if not all(path.is_file() for path in batches):
        raise DataError(f"dataset 'cifar10': files not found under --data-dir {data_dir} (expected "
                        f"cifar-10-batches-py/data_batch_1 to data_batch_5; add --download to fetch them)")
    images, labels = [], []
    for path in batches:
        try:
            with path.open("rb") as file:
                batch = pickle.load(file, encoding="latin1")  # the format CIFAR-10 ships in
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch["labels"]))
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
            raise DataError(f"dataset 'cifar10': cannot read {path}: {type(exc).__name__}: {exc}") from None
    return np.concatenate(images), np.concatenate(labels)


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
