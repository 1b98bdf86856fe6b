from __future__ import annotations

import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hpsearch.engine.data import Data, from_arrays
from hpsearch.engine.datasets import load_data
from hpsearch.errors import ConfigError, DataError


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the IDX format MNIST ships in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_mnist_files(root: Path, folder: str, n: int = 200) -> np.ndarray:
    """A tiny MNIST-layout dataset under ``root/folder/raw``; returns the training labels."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 256, (n, 28, 28))
    raw = root / folder / "raw"
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", labels)
    write_idx(raw / "t10k-images-idx3-ubyte", images[:20])
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[:20])
    return labels


def test_digits_is_split_normalized_on_train_and_fixed(digits: Data) -> None:
    assert digits.sample_shape == (1, 8, 8) and digits.input_dim == 64 and digits.num_classes == 10
    assert digits.n_train + len(digits.x_val) == 1797
    assert len(digits.x_val) == round(1797 * 0.2)
    assert digits.x_train.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert digits.x_train.std().item() == pytest.approx(1.0, abs=1e-4)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    again = load_data("digits")
    assert torch.equal(again.x_val, digits.x_val)


def test_subset_takes_the_first_n_training_samples_and_keeps_validation(digits: Data) -> None:
    small = load_data("digits", subset=500)
    assert small.n_train == 500
    assert torch.equal(small.y_val, digits.y_val)
    assert torch.equal(small.y_train, digits.y_train[:500])
    with pytest.raises(ConfigError, match="subset must be at most the 1438 training samples of digits, got 5000"):
        load_data("digits", subset=5000)


def test_val_fraction_sets_the_validation_size() -> None:
    assert len(load_data("digits", val_fraction=0.5).x_val) == round(1797 * 0.5)


def test_synthetic_takes_its_shape_from_the_name() -> None:
    data = load_data("synthetic:n=300,d=20,classes=3")
    assert data.input_dim == 20 and data.num_classes == 3 and data.n_train == 240
    with pytest.raises(ConfigError, match="synthetic takes n=, d=, classes="):
        load_data("synthetic:rows=3")


def test_npz_with_x_and_y_is_split(tmp_path: Path) -> None:
    path = tmp_path / "mine.npz"
    x, y = np.random.default_rng(0).random((100, 5)), np.arange(100) % 4
    np.savez(path, x=x, y=y)
    data = load_data(f"npz:{path}")
    assert data.n_train == 80 and data.input_dim == 5 and data.num_classes == 4


def test_npz_with_explicit_splits_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "split.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((30, 2, 3)), y_train=np.arange(30) % 3, x_val=rng.random((7, 2, 3)),
             y_val=np.arange(7) % 3)
    data = load_data(f"npz:{path}")
    assert (data.n_train, len(data.x_val), data.sample_shape) == (30, 7, (2, 3))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 2))}, "needs keys x and y, or x_train, y_train, x_val and y_val; found x"),
        ({"x": np.zeros((4, 2)), "y": np.zeros(3)}, "x has 4 rows but y has 3"),
        ({"x": np.array([[0.0, np.nan]] * 10), "y": np.arange(10) % 2}, "contains NaN or infinite values"),
    ],
)
def test_bad_npz_files_are_data_errors(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_data(f"npz:{path}")


def test_missing_npz_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read the file"):
        load_data(f"npz:{tmp_path / 'nope.npz'}")


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_datasets_read_idx_files_from_data_dir(tmp_path: Path, name: str, folder: str) -> None:
    labels = make_mnist_files(tmp_path, folder)
    data = load_data(name, data_dir=tmp_path, val_fraction=0.25)
    assert data.sample_shape == (1, 28, 28) and data.n_train == 150 and len(data.x_val) == 50
    assert sorted(torch.cat([data.y_train, data.y_val]).tolist()) == sorted(labels.tolist())


def test_torchvision_dataset_without_files_names_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"files not found under --data-dir {tmp_path}"):
        load_data("mnist", data_dir=tmp_path)
    with pytest.raises(DataError, match="needs --data-dir"):
        load_data("fashion-mnist")


def test_from_arrays_checks_labels_and_feature_counts() -> None:
    x = np.zeros((5, 3))
    with pytest.raises(DataError, match=r"x_train samples have shape \(3,\) but x_val samples \(2,\)"):
        from_arrays(x, np.zeros(5), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(DataError, match="integer class labels"):
        from_arrays(x, np.full(5, 0.5), x, np.zeros(5))
    with pytest.raises(DataError, match="class labels must be >= 0"):
        from_arrays(x, np.full(5, -1), x, np.zeros(5))


def make_cifar_files(root: Path, per_batch: int = 10) -> np.ndarray:
    """CIFAR-10's python batches in miniature (the pickled dicts torchvision downloads); the labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    labels = []
    for index in range(1, 6):
        batch_labels = rng.integers(0, 10, per_batch).tolist()
        labels += batch_labels
        images = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        with (folder / f"data_batch_{index}").open("wb") as file:
            pickle.dump({"data": images, "labels": batch_labels}, file)
    return np.array(labels)


def test_cifar10_reads_the_python_batches_from_data_dir_as_images(tmp_path: Path) -> None:
    labels = make_cifar_files(tmp_path)
    data = load_data("cifar10", data_dir=tmp_path, val_fraction=0.2)
    assert data.sample_shape == (3, 32, 32) and data.n_train == 40 and data.n_val == 10
    assert sorted(torch.cat([data.y_train, data.y_val]).tolist()) == sorted(labels.tolist())
    assert data.x_train.mean().item() == pytest.approx(0.0, abs=1e-5)


def test_cifar10_without_files_names_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"files not found under --data-dir {tmp_path}"):
        load_data("cifar10", data_dir=tmp_path)
    with pytest.raises(DataError, match="needs --data-dir"):
        load_data("cifar10")


@pytest.mark.parametrize(("y_train", "message"), [
    (np.zeros((5, 2, 2)), "y_train be 1-D (or 2-D regression targets), got shapes (5, 3) and (5, 2, 2)"),
    (np.full(5, 0.5), "y_train must hold integer class labels (for float targets use --loss mse)"),
])
def test_labels_that_are_not_class_labels_are_refused(y_train: np.ndarray, message: str) -> None:
    x = np.zeros((5, 3))
    with pytest.raises(DataError) as caught:
        from_arrays(x, y_train, x, np.zeros(5))
    assert message in str(caught.value)


def test_regression_targets_keep_their_shape_and_size_the_output() -> None:
    x, y = np.zeros((6, 3)), np.arange(12, dtype=np.float32).reshape(6, 2)
    data = from_arrays(x, y, x, y, targets="values")
    assert data.num_classes == 2 and not data.classification and data.y_train.dtype == torch.float32


READ_ONLY_LOAD = """
import numpy as np
from hpsearch.engine.data import from_arrays
rng = np.random.default_rng(0)
arrays = [rng.standard_normal((40, 3)).astype(np.float32), rng.integers(0, 2, 40),
          rng.standard_normal((10, 3)).astype(np.float32), rng.integers(0, 2, 10)]
if {pandas}:
    import pandas as pd
    arrays = [pd.DataFrame(a) if a.ndim == 2 else pd.Series(a) for a in arrays]
else:
    for a in arrays:
        a.setflags(write=False)  # what DataFrame.to_numpy() gives under copy-on-write
data = from_arrays(*arrays, normalize=False)
assert data.n_train == 40 and data.num_classes == 2
"""


@pytest.mark.parametrize("pandas", [False, True], ids=["read-only arrays", "pandas DataFrames"])
def test_read_only_arrays_and_dataframes_load_without_a_warning(pandas: bool) -> None:
    # In a fresh process: torch warns about a read-only array once per process only.
    if pandas:
        pytest.importorskip("pandas")
    done = subprocess.run([sys.executable, "-W", "error", "-c", READ_ONLY_LOAD.format(pandas=pandas)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
