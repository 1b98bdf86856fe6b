"""A regression task: 8 features, one noisy real-valued target, and an MLP head; train it with ``--loss mse``::

    hpsearch train --model examples/regression.py:net --dataset examples/regression.py:load --loss mse

With ``mse`` there is no accuracy (``val_acc`` is NaN, null in JSON): a study minimizes ``val_loss``, the
validation mean squared error. It falls far below the variance of the targets (about 0.7) towards the
noise variance NOISE**2 = 0.01: about 0.04 after 3 epochs and 0.02 after 20 (lr 3e-3, batch 64).
"""

from __future__ import annotations

import numpy as np
from torch import nn

N, N_TRAIN, FEATURES = 4000, 3200, 8
NOISE = 0.1


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_val, y_val)``: x of shape (N, 8) float32, standard normal; y of shape (N,)
    float32, a smooth nonlinear function of x plus Gaussian noise of std NOISE.

    Float targets of shape (N,) make it a regression with one output (a (N, k) array would be k targets).
    The features are already standardized and the targets have a mean near 0 and a variance near 0.7, so
    the data is used as given. The generator is seeded, so every call (every trial and every worker)
    returns the same data and split.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, FEATURES)).astype(np.float32)
    w = rng.standard_normal(FEATURES) / np.sqrt(FEATURES)
    y = np.sin(x @ w) + 0.5 * x[:, 0] * x[:, 1] + 0.3 * x[:, 2] + NOISE * rng.standard_normal(N)
    y = y.astype(np.float32)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def net(input_shape: tuple[int, ...], outputs: int, width: int = 32) -> nn.Module:
    """An MLP head ``features → width → width → outputs`` with ReLU; ``outputs`` is 1 for targets of shape (N,).

    The output is (batch, outputs), as hpsearch checks; the mse loss compares it with the targets' shape.
    ``input_shape`` is (8,) here; a sample of any shape is flattened first.
    """
    features = int(np.prod(input_shape))
    width = int(width)
    return nn.Sequential(nn.Flatten(), nn.Linear(features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, outputs))
