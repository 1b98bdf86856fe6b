"""The trusted epoch: the first epoch at which a study's complete trials already ranked as they finished.

Before it, early values mislead: fast learners that overfit look best after an epoch and slow learners
that end best look worst (the MNIST-shaped task of scripts/compare_strategies.py), or trials so alike
that their early differences are noise (a narrowed range on digits). A pruner that stops trials before
it keeps the wrong ones; coarse-to-fine also ranks a stage's trials there to narrow the next one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna.trial import FrozenTrial, TrialState

__all__ = ["TRUST_AGREEMENT", "TRUST_MIN_TRIALS", "rank_correlation", "trusted_epoch"]

# How closely an epoch's ranking must agree with the final one (Spearman's rho), and the fewest complete
# trials that can tell.
TRUST_AGREEMENT = 0.7
TRUST_MIN_TRIALS = 4


def trusted_epoch(trials: Sequence[FrozenTrial]) -> int | None:
    """The first epoch at which the complete trials already ranked as they finished (Spearman's rho of their
    values there against their final values >= TRUST_AGREEMENT); their last common epoch when none does;
    None with too few complete trials to tell."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and t.intermediate_values]
    if len(complete) < TRUST_MIN_TRIALS:
        return None
    last = min(max(t.intermediate_values) for t in complete)
    for epoch in range(1, last + 1):
        pairs = [(t.intermediate_values[epoch], t.value) for t in complete if epoch in t.intermediate_values]
        if len(pairs) >= TRUST_MIN_TRIALS and rank_correlation(*zip(*pairs, strict=True)) >= TRUST_AGREEMENT:
            return epoch
    return last


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho of ``x`` and ``y``: Pearson's r of their ranks, tied values sharing their mean rank; 0 when
    either is constant. Written here, not taken from scipy.stats.spearmanr, because the median pruner asks for
    it during every run and importing scipy.stats costs about 1 s, more than the rest of a run imports for it."""
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum()) / scale if scale > 0 else 0.0


def _ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span."""
    array = np.asarray(values, dtype=float)
    _, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based rank of each distinct value's first occurrence
    return (first + (counts + 1) / 2.0)[inverse]
