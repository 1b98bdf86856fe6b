"""Start-up imports only what a command needs: no plotting, SciPy or SQL stack for a run that uses none."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("matplotlib", "scipy", "sqlalchemy")

IMPORT = "import hpsearch"
HELP = "from hpsearch.cli import app\nfrom typer.testing import CliRunner\nCliRunner().invoke(app, ['--help'])"
MEMORY_RUN = ("from hpsearch.cli import app\nfrom typer.testing import CliRunner\n"
              "result = CliRunner().invoke(app, ['run', '--storage', 'memory', '--n-trials', '2', '--epochs', '1',"
              " '--hidden', '8', '--quiet'])\nassert result.exit_code == 0, result.output")


@pytest.mark.parametrize("code", [IMPORT, HELP, MEMORY_RUN], ids=["import hpsearch", "hpsearch --help", "memory run"])
def test_no_heavy_module_is_imported_when_not_needed(code: str) -> None:
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


FROZEN_IN_THE_LOOP = """
import gc
import optuna
from hpsearch import StudySpec, TrainConfig, run_study
frozen = []
{before}
run_study(StudySpec(strategy="random", n_trials=2, train=TrainConfig(epochs=1, hidden=(8,))), "memory",
          callbacks=[lambda study, trial: frozen.append(gc.get_freeze_count())])
print(min(frozen), gc.get_freeze_count())
"""


@pytest.mark.parametrize("froze_before", [False, True], ids=["library caller", "a process that freezes (the CLI)"])
def test_trials_run_with_what_existed_before_frozen_out_of_full_collections(froze_before: bool) -> None:
    code = FROZEN_IN_THE_LOOP.format(before="gc.freeze()" if froze_before else "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    during, after = map(int, done.stdout.split()[-2:])
    assert during > 200_000  # torch's import, at least
    if froze_before:
        assert after > 200_000  # still frozen, as that process wants
    else:
        assert after == 0  # a library caller gets its heap back as it was
