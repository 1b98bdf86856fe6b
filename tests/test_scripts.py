"""The benchmarks under scripts/ stay runnable: each, on a small setting, prints its table and key ratio."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hpsearch.engine.diagnosis import LABELS

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.mark.parametrize(("script", "args", "key_ratio"), [
    ("compare_strategies.py", ["--seeds", "2", "--budget", "40", "--datasets", "digits", "--strategies", "tpe",
                               "coarse-to-fine"],
     r"coarse-to-fine median reaches tpe's final median \d\.\d{4}: (\d+% of the budget|not within the budget) "
     r"\(90% bootstrap interval over seeds: .+ - .+; goal: <= 50%\); p \(c2f < tpe\) at 100%: "),
    ("best_of_n.py", ["--seeds", "2", "--trials", "2", "--epochs", "1", "--target", "10"],
     r"median best reaches 10\.0000 after 1 full-length trials in the band: 1 trial-epochs, 0% of a 300 budget"),
    ("bench_overhead.py", ["--repeats", "1", "--trials", "3", "--startup-rounds", "0"],
     r"overhead on journal: -?\d+\.\d% best against best, -?\d+\.\d% paired median, -?\d+\.\d% in the study   "
     r"goal <= 10%   met by \d of 3"),
    ("bench_notes.py", ["--trials", "2", "--epochs", "1"], r"trial notes on journal: \d+\.\d\d% of the training time"),
    ("bench_rdb_reads.py", ["--rounds", "1", "--trials", "4"],
     r"SQLite storage cost per trial, LocalTrialsCache against Optuna's cache: -?\d+\.\d\dx"),
    ("diagnosis_accuracy.py", ["--quick", "--tasks", "digits"],
     # a row per label (runs, given, precision, recall), one per task and optimizer for the check, the key line
     r"(?ms)" + "".join(rf"^\s+{label}\s+\d+\s+\d+\s+(\d+%|-)\s+(\d+%|-)\s.*" for label in LABELS)
     + r"^\s+digits\s+adamw\s.*^\s+digits\s+sgd\s.*"
     r"lowest label precision or recall: \d+% \(goal >= 90%\); update/weight check quiet at the best lr in \d of 2 "
     r"task/optimizer cases, warning at 10x in \d of 2"),
])
def test_a_benchmark_prints_its_table_and_key_ratio(script: str, args: list[str], key_ratio: str,
                                                    tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPTS / script), *args], check=False, capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    table = r"^\s*strategy|^storage|^\s*n\s+trial-epochs|^\s*label\s+runs"
    assert re.search(table, done.stdout, re.MULTILINE), done.stdout
    assert re.search(key_ratio, done.stdout), done.stdout


def test_the_share_of_the_budget_is_where_the_median_curve_first_reaches_the_target() -> None:
    sys.path.insert(0, str(SCRIPTS))
    try:
        from compare_strategies import NOT_REACHED, reach_share
    finally:
        sys.path.remove(str(SCRIPTS))
    grid = np.array([0.0, 50.0, 100.0, 150.0, 200.0])
    curves = np.array([[np.inf, 0.9, 0.5, 0.4, 0.3], [np.inf, 0.8, 0.6, 0.3, 0.2], [np.inf, 0.7, 0.7, 0.6, 0.1]])
    assert reach_share(curves, np.array([0.4, 0.45, 0.9]), grid, 200.0) == 0.75  # medians 0.8, 0.6, 0.4, 0.2
    assert reach_share(curves, np.array([0.05]), grid, 200.0) == NOT_REACHED


def test_the_comparison_lets_each_warning_through_once_until_told_to_forget(caplog: pytest.LogCaptureFixture) -> None:
    sys.path.insert(0, str(SCRIPTS))
    try:
        from compare_strategies import OncePerMessage
    finally:
        sys.path.remove(str(SCRIPTS))
    logger = logging.getLogger("test-once-per-message")
    once = OncePerMessage()
    logger.addFilter(once)
    for message in ("never diverged", "never diverged", "never fell", "never diverged"):
        logger.warning(message)
    once.seen.clear()
    logger.warning("never diverged")
    assert [r.getMessage() for r in caplog.records] == ["never diverged", "never fell", "never diverged"]


MUTMUT_RESULTS = """\
    hpsearch.engine.diagnosis.x_diagnose__mutmut_1: killed
    hpsearch.engine.diagnosis.x_diagnose__mutmut_2: survived
    hpsearch.engine.diagnosis.x_diagnose__mutmut_3: timeout
    hpsearch.engine.diagnosis.xǁDiagnosisǁ__str____mutmut_1: no tests
    hpsearch.search.pruners.x_make_pruner__mutmut_1: killed
    hpsearch.search.pruners.x_make_pruner__mutmut_2: skipped
"""


@pytest.mark.parametrize(("goal", "returncode"), [(60, 0), (61, 1)], ids=["at-the-goal", "below-the-goal"])
def test_the_mutation_table_counts_caught_mutants_per_module_and_names_the_survivors(goal: int,
                                                                                      returncode: int) -> None:
    done = subprocess.run([sys.executable, str(SCRIPTS / "mutation_table.py"), "--goal", str(goal)],
                          input=MUTMUT_RESULTS, capture_output=True, text=True, check=False)
    assert done.returncode == returncode, done.stderr
    # diagnosis: 2 caught (killed, timeout) of 4 judged; pruners: 1 of 1, the skipped one not judged; 3 of 5 in all
    assert re.search(r"^hpsearch\.engine\.diagnosis\s+4\s+2\s+1\s+1\s+50\.0%$", done.stdout, re.MULTILINE)
    assert re.search(r"^hpsearch\.search\.pruners\s+2\s+1\s+0\s+0\s+100\.0%$", done.stdout, re.MULTILINE)
    survivors = re.findall(r"^  (\S+)  \((.+)\)$", done.stdout, re.MULTILINE)
    assert survivors == [("hpsearch.engine.diagnosis.x_diagnose__mutmut_2", "survived"),
                         ("hpsearch.engine.diagnosis.xǁDiagnosisǁ__str____mutmut_1", "no tests")]
    assert f"mutation score: 60.0% of 5 judged mutants caught (1 not judged, of 6; goal >= {goal}%)" in done.stdout
