"""Turn `mutmut results --all true` (lines "    hpsearch.x.y.x_f__mutmut_3: killed") into a table per module,
the survivors by name, and the mutation score against a goal; exit 1 below the goal.

Apart from mutation_score.sh so that the counting is plain Python that a test can feed made-up lines.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable

# A mutant's key: the module, then x_ (a function) or xǁClassǁ (a method), then __mutmut_N.
RESULT = re.compile(r"^\s*(?P<key>(?P<module>[\w.]+?)\.x[_ǁ]\S+__mutmut_\d+): (?P<status>.+?)\s*$")
# Caught: a test failed, or the mutant hung or crashed the tests (an infinite loop it made counts too).
CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}
# Not counted either way: mutmut could not judge these.
UNJUDGED = {"skipped", "not checked", "check was interrupted by user", "suspicious"}


def tally(lines: Iterable[str]) -> tuple[dict[str, Counter[str]], list[tuple[str, str]]]:
    """Per module, how many mutants ended in each status; and the mutants that no test caught."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[tuple[str, str]] = []
    for line in lines:
        match = RESULT.match(line)
        if not match:
            continue
        status = match["status"]
        counts[match["module"]][status] += 1
        if status not in CAUGHT | UNJUDGED:
            survivors.append((match["key"], status))
    return counts, survivors


def score(counts: Counter[str]) -> float | None:
    """Caught over judged, in percent; a mutant no test runs ("no tests") counts as not caught."""
    judged = sum(n for status, n in counts.items() if status not in UNJUDGED)
    return 100 * sum(counts[s] for s in CAUGHT) / judged if judged else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--goal", type=float, default=80.0, help="percent of mutants to catch")
    goal = parser.parse_args().goal
    counts, survivors = tally(sys.stdin)
    if not counts:
        print("no mutmut results: run `mutmut run` first", file=sys.stderr)
        return 2
    total: Counter[str] = Counter()
    print(f"{'module':<34} {'mutants':>7} {'caught':>7} {'survived':>8} {'no tests':>8} {'score':>6}")
    for module in sorted(counts):
        c = counts[module]
        total += c
        module_score = score(c)
        print(f"{module:<34} {c.total():>7} {sum(c[s] for s in CAUGHT):>7} {c['survived']:>8} {c['no tests']:>8} "
              + (f"{module_score:>5.1f}%" if module_score is not None else f"{'-':>6}"))
    print("\nsurvivors (`mutmut show NAME` prints the change):")
    for key, status in survivors:
        print(f"  {key}  ({status})")
    overall = score(total) or 0.0
    unjudged = sum(total[status] for status in UNJUDGED)
    print(f"\nmutation score: {overall:.1f}% of {total.total() - unjudged} judged mutants caught ({unjudged} not "
          f"judged, of {total.total()}; goal >= {goal:g}%)")
    return 0 if overall >= goal else 1


if __name__ == "__main__":
    sys.exit(main())
