"""A helper module beside the entry-point file extra.py, which imports it as ``python extra.py`` would."""

from __future__ import annotations

import numpy as np


def load():
    """300 samples of 8 features in 3 classes, split 240/60."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    return x[:240], y[:240], x[240:], y[240:]
