"""hpsearch: hyperparameter search for PyTorch training, built on Optuna."""

from __future__ import annotations

__version__ = "0.1.0"

from hpsearch.config import TrainConfig  # after __version__: the modules below record it
from hpsearch.data import Data, from_arrays
from hpsearch.datasets import load_data
from hpsearch.errors import HPSearchError
from hpsearch.export import export_best
from hpsearch.run import run_study
from hpsearch.search.space import ParamSpec, SearchSpace
from hpsearch.spec import StudySpec
from hpsearch.training import EpochMetrics, TrainResult, train

__all__ = ["Data", "EpochMetrics", "HPSearchError", "ParamSpec", "SearchSpace", "StudySpec", "TrainConfig",
           "TrainResult", "__version__", "export_best", "from_arrays", "load_data", "run_study", "train"]
