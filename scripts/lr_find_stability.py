"""How much each LR-finder suggestion moves across seeds and batch sizes on digits.

Prints each run's suggestions and, per method, the median LR and the spread (standard deviation
of log10 LR, in decades). The most stable method is the default. Run: python scripts/lr_find_stability.py
"""

from __future__ import annotations

import sys

import numpy as np

from hpsearch import TrainConfig, load_data
from hpsearch.engine.lr_finder import lr_range_test

METHODS = ("steepest", "divergence", "valley")


def main() -> int:
    data = load_data("digits")
    found: dict[str, list[float]] = {method: [] for method in METHODS}
    print(f"{'batch':>5} {'seed':>4} " + " ".join(f"{m:>10}" for m in METHODS))
    for batch_size in (32, 64, 128):
        for seed in (0, 1, 2):
            suggestions = lr_range_test(TrainConfig(batch_size=batch_size, seed=seed), data).suggestions
            row = []
            for method in METHODS:
                lr = getattr(suggestions, method)
                found[method].append(np.nan if lr is None else lr)
                row.append(f"{lr:10.3g}" if lr is not None else f"{'-':>10}")
            print(f"{batch_size:5d} {seed:4d} " + " ".join(row))
    print(f"\n{'method':>10} {'median lr':>10} {'spread (decades)':>17} {'missing':>8}")
    spreads = {}
    for method, lrs in found.items():
        logs = np.log10(lrs)
        spreads[method] = float(np.nanstd(logs))
        print(f"{method:>10} {10 ** np.nanmedian(logs):10.3g} {spreads[method]:17.3f} {int(np.isnan(logs).sum()):8d}")
    print(f"most stable: {min(spreads, key=spreads.__getitem__)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
