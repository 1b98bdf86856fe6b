"""hpsearch: hyperparameter search for PyTorch training, built on Optuna."""

from __future__ import annotations

from hpsearch._version import __version__
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data, from_arrays
from hpsearch.engine.datasets import load_data
from hpsearch.engine.training import EpochMetrics, TrainResult, train
from hpsearch.errors import HPSearchError
from hpsearch.presentation.export import export_best
from hpsearch.presentation.run import run_study
from hpsearch.search.space import ParamSpec, SearchSpace
from hpsearch.search.spec import StudySpec

__all__ = ["Data", "EpochMetrics", "HPSearchError", "ParamSpec", "SearchSpace", "StudySpec", "TrainConfig",
           "TrainResult", "__version__", "export_best", "from_arrays", "load_data", "run_study", "train"]
