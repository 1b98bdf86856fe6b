"""A practitioner's own task file, as tests copy it into a temporary folder: data loaders, model factories
(healthy and broken ones) and a loss. Not imported by the tests directly: they name it as ``usertask.py:attr``.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

N_TRAIN = 1400


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """Digits as (1, 8, 8) images, standardized here: the user owns their preprocessing."""
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))  # writers mixed into both splits
    x = bunch.data.astype(np.float32).reshape(-1, 1, 8, 8)[order]
    return (x - x.mean()) / x.std(), bunch.target[order]


def load():
    x, y = _digits()
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def load_datasets():
    x, y = (torch.from_numpy(a) for a in _digits())
    return TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), TensorDataset(x[N_TRAIN:], y[N_TRAIN:])


def load_regression():
    """y = x @ w + 0.1 noise on 8 features: a target variance of about 8, learnable to about 0.01."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 8)).astype(np.float32)
    y = (x @ rng.standard_normal(8) + 0.1 * rng.standard_normal(2000)).astype(np.float32)
    return x[:1600], y[:1600], x[1600:], y[1600:]


def load_nan():
    x_train, y_train, x_val, y_val = load()
    x_train[3, 0, 2, 2] = math.nan
    return x_train, y_train, x_val, y_val


def load_mismatched():
    x_train, y_train, x_val, y_val = load()
    return x_train, y_train[:-1], x_val, y_val


def load_text():
    return "not data"


def load_raises():
    raise FileNotFoundError("/data/mine.csv")


def cnn(input_shape, num_classes, width=16):
    """Two conv blocks and a linear head; logs each width it is built with when USERTASK_LOG names a file."""
    if "USERTASK_LOG" in os.environ:
        with open(os.environ["USERTASK_LOG"], "a") as log:
            log.write(f"{width}\n")
    channels, height, side = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(width * (height // 2) * (side // 2), num_classes))


class Detached(nn.Module):
    """A CNN whose head sees its features detached: no gradient reaches the convolutions."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(input_shape[0], 8, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(8 * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x):
        return self.head(self.body(x).detach())


def regressor(input_shape, outputs, width=32):
    return nn.Sequential(nn.Linear(input_shape[0], width), nn.ReLU(), nn.Linear(width, outputs))


def wrong_output(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes + 1))


def not_a_module(input_shape, num_classes):
    return 42


def raises(input_shape, num_classes):
    raise ValueError("needs a GPU")


def l1(output, target):
    return (output.reshape(target.shape) - target).abs().mean()


NOT_CALLABLE = 3
