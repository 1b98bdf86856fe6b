"""A study's trials in plain words: how many got each diagnosis label, and advice on the search ranges.

The labels come from each trial's own curves (hpsearch.engine.diagnosis, stored in its record); this reads the
stored trials, which is Optuna's side of the house.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from optuna.trial import FrozenTrial, TrialState

from hpsearch.engine.diagnosis import LABELS
from hpsearch.search.records import read_trial

__all__ = ["EDGE_SHARE", "label_summary", "range_advice"]

EDGE_SHARE = 0.1  # the top quartile all within this share of a log range from one end: at the edge


def label_summary(trials: Sequence[FrozenTrial]) -> str:
    """``30 trials diagnosed: 9 diverging (all at lr >= 0.08), 2 stuck, 19 ok`` from the trials' diagnoses.
    The trials may come from several studies (a coarse-to-fine family's stages), whose numbers repeat."""
    labelled = [(t, diagnosis["label"]) for t in trials if (diagnosis := read_trial(t).diagnosis)]
    counts = Counter(label for _, label in labelled)
    parts = []
    for label in LABELS:
        if counts[label]:
            text = f"{counts[label]} {label.lower()}"
            if label == "DIVERGING":
                lrs = [t.params["lr"] for t, its in labelled if its == label and "lr" in t.params]
                if lrs:
                    text += f" (all at lr >= {min(lrs):.3g})"
            parts.append(text)
    return f"{len(labelled)} trials diagnosed: " + ", ".join(parts) if parts else ""


def range_advice(trials: Sequence[FrozenTrial], space: Mapping[str, Mapping[str, object]], maximize: bool,
                 ) -> list[str]:
    """Advice when the best trials crowd one end of a log range, or when trials diverge above some lr."""
    advice = []
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                  key=lambda t: t.value, reverse=maximize)  # type: ignore[arg-type, return-value]
    top = done[:max(1, len(done) // 4)] if len(done) >= 4 else []
    for name, bounds in space.items():
        if not bounds.get("log") or "low" not in bounds or not top or not all(name in t.params for t in top):
            continue
        low, high = math.log10(float(bounds["low"])), math.log10(float(bounds["high"]))  # type: ignore[arg-type]
        span = high - low
        places = [(math.log10(t.params[name]) - low) / span for t in top]
        flag = "--lr-range" if name == "lr" else "--wd-range" if name == "weight_decay" else f"[space] {name}"
        if min(places) >= 1 - EDGE_SHARE:
            advice.append(f"the best quarter of trials all sit in the top {EDGE_SHARE:.0%} of the {name} range: "
                          f"try {flag} {10 ** (high - span / 2):.3g} {10 ** (high + span / 2):.3g}")
        elif max(places) <= EDGE_SHARE:
            advice.append(f"the best quarter of trials all sit in the bottom {EDGE_SHARE:.0%} of the {name} range: "
                          f"try {flag} {10 ** (low - span / 2):.3g} {10 ** (low + span / 2):.3g}")
    diverged = [t.params["lr"] for t in trials if "lr" in t.params
                and (read_trial(t).diagnosis or {}).get("label") == "DIVERGING"]
    healthy = [t.params["lr"] for t in done if "lr" in t.params]
    if len(diverged) >= max(2, len(trials) // 5) and (not healthy or min(diverged) > max(healthy) / 10):
        low = float(space.get("lr", {}).get("low", min(diverged) / 100))  # type: ignore[arg-type]
        advice.append(f"{len(diverged)} of {len(trials)} trials diverged, all at lr >= {min(diverged):.3g}: "
                      f"try --lr-range {low:.3g} {min(diverged) / 2:.3g}")
    return advice
