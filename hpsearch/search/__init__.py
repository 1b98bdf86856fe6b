"""Everything that touches Optuna: spaces, samplers, pruners, the objective and the study runner."""

from __future__ import annotations

from hpsearch.search.runner import finished_trials, run_study
from hpsearch.search.space import ParamSpec, SearchSpace

__all__ = ["ParamSpec", "SearchSpace", "finished_trials", "run_study"]
