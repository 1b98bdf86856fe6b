"""Bad input leaves the storage unchanged: each input the CLI refuses (exit 2, one ``error:`` line) is run
against a storage holding a real study, on the journal file, SQLite and PostgreSQL, and the storage's logical
dump, read through a fresh connection, must equal the one before."""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_invoke import invoke
from conftest import fresh_postgres_database
from storage_dump import logical_dump

USERTASK = Path(__file__).parents[1] / "usertask.py"
# The stored study, and the command that would add a third trial to it; each case adds its bad input to it.
STUDY = ["--study", "kept", "--strategy", "random", "--epochs", "1", "--hidden", "16", "--pruner", "none",
         "--no-check", "--quiet"]
RUN = ["run", *STUDY, "--n-trials", "3"]
FILES = {"journal": "hp.journal", "sqlite": "hp.db"}


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Each bad input by its test id, and a part of the one line it must produce. Every one reaches the
    study's storage or would, were it not refused: none names another storage."""
    return {
        "lr-range-reversed": (["--lr-range", "0.1", "0.01"], "space.lr: low must be < high, got low=0.1 high=0.01"),
        "wd-range-log-zero": (["--wd-range", "0", "0.1"], "space.weight_decay: a log-scale range needs low > 0"),
        "strategy-unknown": (["--strategy", "bayes"], "'bayes' is not one of 'grid', 'random', 'tpe'"),
        "pruner-unknown": (["--pruner", "sha"], "'sha' is not one of 'median', 'hyperband', 'asha', 'none'"),
        "metric-no-direction": (["--metric", "f1"], "direction must be given for metric 'f1', which is not built in"),
        "metric-unreported": (["--metric", "f1", "--direction", "maximize"], "metric 'f1' is not reported"),
        "n-trials-zero": (["--n-trials", "0"], "n_trials must be >= 1, got 0"),
        "pruner-warmup-zero": (["--pruner-warmup", "0"], "pruner_warmup must be >= 1 epoch, got 0"),
        "coarse-to-fine-too-few": (["--strategy", "coarse-to-fine", "--n-trials", "2"],
                                   "n_trials must be >= coarse_to_fine.stages (3)"),
        "epochs-zero": (["--epochs", "0"], "epochs must be >= 1, got 0"),
        "hidden-zero": (["--hidden", "0"], "hidden must be one or more positive layer widths, got (0,)"),
        "spec-missing": (["--spec", str(tmp / "absent.toml")], "cannot read spec file (--spec"),
        "heartbeat-negative": (["--heartbeat", "-1"], "heartbeat must be >= 0 seconds, got -1"),
        "jobs-zero": (["--jobs", "0"], "jobs must be >= 1, got 0"),
        "space-differs-from-stored": (["--lr-range", "1e-3", "1e-2"],
                                      "study 'kept' in {storage} was created with space.lr="),
        "epochs-differ-from-stored": (["--epochs", "2"],
                                      "study 'kept' in {storage} was created with train.epochs=1, not 2"),
        "model-no-module": (["--model", "nosuch_module_29:net"], "no module named 'nosuch_module_29'"),
        "model-no-attribute": (["--model", f"{USERTASK}:nothing"], "usertask.py has no attribute 'nothing'"),
        "model-factory-raises": (["--model", f"{USERTASK}:raises"], "the factory raised ValueError: needs a GPU"),
        "model-wrong-output": (["--model", f"{USERTASK}:wrong_output"], "must output (batch, 10) for the 10 classes"),
        "model-arg-unknown": (["--model-arg", "x=1"], "model 'mlp' takes no argument 'x'"),
        "dataset-unknown": (["--dataset", "cifar"], "dataset must be one of"),
        "dataset-load-raises": (["--dataset", f"{USERTASK}:load_raises"], "load() raised FileNotFoundError"),
        "dataset-nan": (["--dataset", f"{USERTASK}:load_nan"], "x_train contains NaN or infinite values"),
        "dataset-npz-missing": (["--dataset", f"npz:{tmp / 'none.npz'}"], "cannot read the file"),
        "data-dir-missing": (["--dataset", "mnist", "--data-dir", str(tmp / "nothing")],
                             f"--data-dir {tmp / 'nothing'}"),
        "dataset-needs-data-dir": (["--dataset", "mnist"], "needs --data-dir"),
        "batch-size-too-large": (["--batch-size", "100000"],
                                 "batch_size must be at most the 1438 training samples of digits, got 100000"),
        "val-acc-on-regression": (["--metric", "val_acc", "--dataset", f"{USERTASK}:load_regression", "--loss", "mse"],
                                  "metric val_acc needs a classification task"),
    }


CASES = sorted(bad_inputs(Path("unused")))  # the test ids; each test builds its cases again in its own tmp_path


def store_the_study(storage: str) -> None:
    code, _, err = invoke("run", *STUDY, "--n-trials", "2", "--storage", storage)
    assert code == 0, err
    gc.collect()  # free the run's storage: its finalizer closes the connections, so that tests can copy it


@pytest.fixture(scope="module")
def stored_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder per file storage holding the stored study, made once for the module; tests copy it."""
    folders = {}
    for kind, name in FILES.items():
        folders[kind] = tmp_path_factory.mktemp(kind)
        store_the_study(url_of(kind, folders[kind] / name))
    return folders


@pytest.fixture(scope="module")
def stored_postgres() -> Iterator[str]:
    """A PostgreSQL database holding the stored study, made once for the module; tests copy it."""
    with fresh_postgres_database() as url:
        store_the_study(url)
        yield url.rsplit("/", 1)[1]


def url_of(kind: str, path: Path) -> str:
    return f"sqlite:///{path}" if kind == "sqlite" else str(path)


@pytest.fixture(params=["journal", "sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of this test's own copy of a storage holding the stored study."""
    if request.param == "postgresql":
        with fresh_postgres_database(template=request.getfixturevalue("stored_postgres")) as url:
            yield url
        return
    folder = request.getfixturevalue("stored_files")[request.param]
    for path in folder.iterdir():
        shutil.copy(path, tmp_path / path.name)
    yield url_of(request.param, tmp_path / FILES[request.param])


def test_the_stored_study_is_in_the_dump_and_a_good_run_changes_it(storage: str) -> None:
    """The dump sees the study and a write: without this the comparisons below could pass on an empty dump."""
    before = logical_dump(storage)
    assert list(before) == ["kept"] and [t["state"] for t in before["kept"]["trials"]] == ["COMPLETE"] * 2
    assert before["kept"]["user_attrs"]["hpsearch"]["spec"]["train"]["epochs"] == 1
    code, _, err = invoke(*RUN, "--storage", storage)
    assert code == 0, err
    after = logical_dump(storage)
    assert after != before and after["kept"]["trials"][:2] == before["kept"]["trials"]
    assert len(after["kept"]["trials"]) == 3


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_gives_one_error_line_and_leaves_the_storage_unchanged(case: str, storage: str,
                                                                          tmp_path: Path) -> None:
    """Refused (exit 2, one line) with the storage's logical dump as it was, read anew after the command."""
    args, expected = bad_inputs(tmp_path)[case]
    before = logical_dump(storage)
    code, out, err = invoke(*RUN, "--storage", storage, *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected.format(storage=storage) in lines[0], lines[0]
    assert logical_dump(storage) == before
