"""hpsearch: hyperparameter search for PyTorch training, built on Optuna."""

from __future__ import annotations

from hpsearch.config import TrainConfig
from hpsearch.data import Data, from_arrays, load_data
from hpsearch.errors import HPSearchError
from hpsearch.training import EpochMetrics, TrainResult, train

__all__ = ["Data", "EpochMetrics", "HPSearchError", "TrainConfig", "TrainResult", "__version__", "from_arrays",
           "load_data", "train"]

__version__ = "0.1.0"
