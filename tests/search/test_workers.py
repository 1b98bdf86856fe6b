"""Many workers on one storage, in real processes: no duplicated or lost trial, killed workers retried,
interrupts resumable, bad input refused before anything is written."""

from __future__ import annotations

import functools
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from conftest import cut_a_read_short
from optuna.trial import FrozenTrial, TrialState
from storage_dump import logical_dump

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.training import train
from hpsearch.search import pool
from hpsearch.search.objective import give_up
from hpsearch.search.pool import WorkerPool
from hpsearch.search.records import TrialRecord, read_trial, write_trial
from hpsearch.search.storages import StorageError, open_storage
from hpsearch.search.storages.optuna_private import storage_of

optuna.logging.set_verbosity(optuna.logging.WARNING)

HPSEARCH = [sys.executable, "-m", "hpsearch"]
EPOCHS = 150  # long enough (a second or two a trial) that a trial seen running is still running at the kill


def start(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([*HPSEARCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)


def finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def trials_of(study: str, storage: str) -> list[FrozenTrial]:
    """The study's trials, or none while it does not exist yet (or its SQLite file is being created)."""
    try:
        return optuna.load_study(study_name=study, storage=open_storage(storage, heartbeat=None)).get_trials()
    except (KeyError, StorageError):
        return []


def write_spec(path: Path, study: str, strategy: str, n_trials: int, epochs: int, extra: str = "") -> Path:
    path.write_text(f'[study]\nname = "{study}"\nstrategy = "{strategy}"\nn_trials = {n_trials}\npruner = "none"\n'
                    f'{extra}\n[train]\nepochs = {epochs}\nhidden = [32]\n')
    return path


def test_two_workers_on_postgresql_finish_a_grid_with_no_point_twice(postgres_url: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "grid.toml", "grid20", "grid", 20, 15,
                      'grid_points = 20\n[space]\nlr = {low = 1e-4, high = 1e-1, log = true}')
    code, out, err = finish(start("run", "--spec", str(spec), "--jobs", "2", "--storage", postgres_url, "--quiet"))
    assert code == 0, err
    trials = [t for t in trials_of("grid20", postgres_url) if t.state != TrialState.WAITING]  # see below
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 20  # none lost, none failed, none extra
    assert sorted(t.system_attrs["grid_id"] for t in trials) == list(range(20))
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 20
    assert len({read_trial(t).worker for t in trials}) == 2  # both workers ran trials
    # Two workers asking at once for the last place: the second's trial went back to the queue, unrun.
    assert len(trials_of("grid20", postgres_url)) - 20 <= 1
    assert "best val_loss" in out


def test_a_worker_killed_mid_trial_is_retried_from_its_checkpoint(postgres_url: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "k.toml", "k9", "random", 6, EPOCHS)
    shared = ["--storage", postgres_url, "--heartbeat", "1", "--checkpoint-dir", str(tmp_path / "ckpt"), "--quiet"]
    doomed = start("run", "--spec", str(spec), *shared)
    wait_for(lambda: bool(trials_of("k9", postgres_url)), "the study")
    survivor = start("worker", "k9", "--threads", "1", *shared)
    found: list[FrozenTrial] = []

    def doomed_trial_running() -> bool:
        """A trial of the doomed worker mid-way (two epochs checkpointed), once one has completed."""
        trials = trials_of("k9", postgres_url)
        running = [t for t in trials if t.state == TrialState.RUNNING and len(t.intermediate_values) >= 2
                   and (read_trial(t).worker or "").endswith(f":{doomed.pid}")]
        if running and any(t.state == TrialState.COMPLETE for t in trials):
            found.append(running[0])
        return bool(found)

    wait_for(doomed_trial_running, "a completed trial and a running trial of the doomed worker with two epochs")
    doomed.kill()  # SIGKILL at once: no handler runs, the trial stays RUNNING until its heartbeat is missed
    doomed.wait()
    killed = found[0]
    before = {t.number: t.value for t in trials_of("k9", postgres_url) if t.state == TrialState.COMPLETE}
    code, _, err = finish(survivor)
    assert code == 0, err

    trials = {t.number: t for t in trials_of("k9", postgres_url)}
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 6
    assert {n: trials[n].value for n in before} == before
    assert trials[killed.number].state == TrialState.FAIL
    retry = next(t for t in trials.values() if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert read_trial(retry).checkpoint == read_trial(killed).checkpoint
    assert read_trial(retry).resumed_from_epoch >= 2
    assert sorted(retry.intermediate_values) == list(range(1, EPOCHS + 1))
    uninterrupted = train(TrainConfig.from_mapping(read_trial(retry).config))
    assert retry.value == pytest.approx(uninterrupted.val_loss, rel=1e-3)


@pytest.mark.parametrize(("storage", "durable"), [("hpsearch.journal", []), ("hpsearch.journal", ["--durable"]),
                                                  ("sqlite:///hp.db", [])])
def test_a_run_killed_mid_trial_resumes_with_every_finished_trial(storage: str, durable: list[str],
                                                                  tmp_path: Path) -> None:
    """SIGKILL, no handler: what the default journal (fsynced or not) or SQLite (synchronous=NORMAL, the running
    trial's values written by hpsearch's own statements) took survives the process, and the same command
    finishes the study once the killed trial's heartbeats stop."""
    args = ["run", "--strategy", "random", "--n-trials", "4", "--epochs", str(EPOCHS // 3), "--hidden", "32",
            "--pruner", "none", "--heartbeat", "1", "--quiet", "--storage", storage, *durable]
    url = str(tmp_path / storage) if storage.endswith(".journal") else f"sqlite:///{tmp_path / 'hp.db'}"
    doomed = start(*args, cwd=tmp_path)
    def one_complete_one_running() -> bool:
        trials = trials_of("digits-random", url)
        return (any(t.state == TrialState.COMPLETE for t in trials)
                and any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials))

    wait_for(one_complete_one_running, "a completed trial and a running one")
    doomed.kill()
    doomed.wait()
    before = {t.number: (t.value, t.intermediate_values) for t in trials_of("digits-random", url)
              if t.state == TrialState.COMPLETE}

    code, _, err = finish(start(*args, cwd=tmp_path))
    assert code == 0, err
    trials = {t.number: t for t in trials_of("digits-random", url)}
    assert {n: (trials[n].value, trials[n].intermediate_values) for n in before} == before
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 4
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]


@pytest.mark.parametrize("storage", ["sqlite:///hp.db", "default"])
def test_four_local_processes_share_a_file_storage(storage: str, tmp_path: Path) -> None:
    args = ["run", "--strategy", "random", "--n-trials", "40", "--epochs", "10", "--hidden", "16", "--jobs", "4",
            "--quiet", *(["--storage", storage] if storage != "default" else [])]
    code, _, err = finish(start(*args, cwd=tmp_path))
    assert code == 0, err
    assert "locked" not in err and "Traceback" not in err
    url = storage.replace("///", f"///{tmp_path}/") if storage != "default" else str(tmp_path / "hpsearch.journal")
    trials = trials_of("digits-random", url)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 40 and not [t for t in trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
    # Workers that asked at once for the last places put their surplus trials back in the queue.
    assert len(trials) - len(finished) <= 3 and all(t.state == TrialState.WAITING for t in trials[40:])
    assert len({read_trial(t).worker for t in finished}) == 4


def test_batched_workers_share_a_study_and_fill_its_budget_exactly(tmp_path: Path) -> None:
    args = ["run", "--strategy", "tpe", "--n-trials", "12", "--epochs", "4", "--hidden", "16", "--pruner", "none",
            "--jobs", "2", "--batch", "3", "--quiet"]
    code, _, err = finish(start(*args, cwd=tmp_path))
    assert code == 0, err
    trials = trials_of("digits-tpe", str(tmp_path / "hpsearch.journal"))
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 12 and not [t for t in trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
    assert len({read_trial(t).worker for t in finished}) == 2


@pytest.mark.parametrize(("stop", "jobs", "batch"), [(signal.SIGTERM, "1", ""), (signal.SIGINT, "2", ""),
                                                     (signal.SIGINT, "1", "2")])  # --batch 2: two stack threads
def test_an_interrupted_run_marks_its_trials_and_the_same_command_completes_it(stop: signal.Signals, jobs: str,
                                                                               batch: str, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    args = ["run", "--strategy", "random", "--n-trials", "3", "--epochs", str(EPOCHS), "--hidden", "32", "--jobs", jobs,
            *(["--batch", batch] if batch else []), "--storage", storage, "--quiet"]
    at_once = int(batch or jobs)
    process = start(*args)
    wait_for(lambda: sum(t.state == TrialState.RUNNING and len(t.intermediate_values) > 0
                         for t in trials_of("digits-random", storage)) == at_once, "running trials")
    process.send_signal(stop)
    code, _, err = finish(process)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted; resume with: " + shlex.join(["hpsearch", *args])
    interrupted = [t for t in trials_of("digits-random", storage) if t.state == TrialState.FAIL]
    assert 1 <= len(interrupted) <= at_once  # a trial may just have finished as the signal came
    assert all(read_trial(t).status == "interrupted" and read_trial(t).reason for t in interrupted)
    assert not [t for t in trials_of("digits-random", storage) if t.state == TrialState.RUNNING]

    code, _, err = finish(start(*args))
    assert code == 0, err
    trials = trials_of("digits-random", storage)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    assert all(t.number in retried for t in interrupted)  # each interrupted trial ran again, linked to it


@pytest.mark.parametrize("where", ["worker", "coordinator"])
def test_an_interrupt_that_cuts_a_read_short_still_marks_the_trial_interrupted(where: str, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C landing inside a storage read (what once made ``run --jobs 2`` exit 1, "database is locked"): the
    worker's give-up and the coordinator's failing of orphaned trials both still write to SQLite."""
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path / 'hp.db'}", heartbeat=None))
    trial, _ = study.ask(), study.ask()
    held: list[object] = []
    cut_short = functools.partial(cut_a_read_short, storage_of(study)._backend.engine, tmp_path / "hp.db", held)
    if where == "worker":
        cut_short()
        give_up(study, trial, None, KeyboardInterrupt())
    else:
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        write_trial(trial, TrialRecord(worker=f"{socket.gethostname()}:{sleeper.pid}"))
        monkeypatch.setattr(WorkerPool, "_start", lambda *_: sleeper)  # the pool stops it with SIGTERM
        monkeypatch.setattr(pool, "POLL_SECONDS", 0)
        monkeypatch.setattr(pool, "_follow", lambda *_: (cut_short(), signal.raise_signal(signal.SIGINT)))
        with pytest.raises(KeyboardInterrupt):
            WorkerPool(f"sqlite:///{tmp_path / 'hp.db'}", jobs=1).run(study)
    assert study.trials[0].state == TrialState.FAIL and read_trial(study.trials[0]).status == "interrupted"


def write_bad_worker_files(tmp: Path) -> None:
    """The files the bad worker inputs name: a database that is not one, a checkpoint another program wrote."""
    (tmp / "corrupt.db").write_bytes(b"\x00garbage" * 512)
    foreign = tmp / "ckpt" / "digits-random" / "trial-0.pt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("some other program's state")


def bad_worker_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Each command with a bad input by its test id, and a part of the one line it must produce: every bad storage
    for ``run`` and ``worker``, then the inputs of ``run`` alone (files from write_bad_worker_files)."""
    local = f"sqlite:///{tmp / 'hp.db'}"
    storages = {
        "postgresql-unreachable": (["--storage", "postgresql://postgres@127.0.0.1:1/test"],
                                   "cannot open storage (--storage postgresql://"),
        "storage-scheme-unknown": (["--storage", "foo://bar"], "storage must be sqlite:///FILE"),
        "sqlite-corrupt": (["--storage", f"sqlite:///{tmp / 'corrupt.db'}"], "not an SQLite database"),
        "heartbeat-negative": (["--storage", local, "--heartbeat", "-1"], "heartbeat must be >= 0 seconds, got -1"),
    }
    run = ["run", "--strategy", "random", "--n-trials", "2", "--epochs", "1"]
    return {
        **{f"run-{name}": ([*run, *args], message) for name, (args, message) in storages.items()},
        "run-checkpoint-foreign": ([*run, "--storage", local, "--checkpoint-dir", str(tmp / "ckpt")],
                                   f"not an hpsearch checkpoint: {tmp / 'ckpt' / 'digits-random' / 'trial-0.pt'}"),
        "run-jobs-zero": ([*run, "--storage", local, "--jobs", "0"], "jobs must be >= 1, got 0"),
        "run-jobs-on-memory": ([*run, "--storage", "memory", "--jobs", "2"],
                               "--jobs needs a storage that processes share"),
        **{f"worker-{name}": (["worker", "digits-random", *args], message)
           for name, (args, message) in storages.items()},
        "worker-study-missing": (["worker", "nope", "--storage", local], "no study named 'nope'"),
    }


@dataclass(frozen=True)
class Refusals:
    """What the bad worker inputs left: their folder, its files before, and each command's exit code and stderr."""

    folder: Path
    before: list[Path]
    results: dict[str, tuple[int, str]]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> Refusals:
    """Every bad worker input run at once, each in a process of its own (each pays torch's import), in one folder."""
    folder = tmp_path_factory.mktemp("refused")
    write_bad_worker_files(folder)
    before = sorted(folder.rglob("*"))
    processes = {case: start(*command) for case, (command, _) in bad_worker_inputs(folder).items()}
    try:
        results = {}
        for case, process in processes.items():
            code, _, err = finish(process)
            results[case] = (code, err)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return Refusals(folder, before, results)


@pytest.mark.parametrize("case", sorted(bad_worker_inputs(Path("unused"))))  # the ids; the fixture runs them all
def test_a_bad_worker_input_gives_one_error_line_and_exit_2(case: str, refusals: Refusals) -> None:
    code, err = refusals.results[case]
    _, message = bad_worker_inputs(refusals.folder)[case]
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]


def test_bad_worker_inputs_write_nothing(refusals: Refusals) -> None:
    folder = refusals.folder
    assert sorted(path for path in folder.rglob("*") if not path.name.startswith("hp.db")) == refusals.before
    assert trials_of("digits-random", f"sqlite:///{folder / 'hp.db'}") == []
    # No study at all, read anew: hp.db may exist (a refusal after opening the storage), but holds nothing.
    assert not (folder / "hp.db").exists() or logical_dump(f"sqlite:///{folder / 'hp.db'}") == {}


def test_a_wrong_postgresql_database_is_refused_and_nothing_is_created(postgres_url: str) -> None:
    wrong = postgres_url + "_absent"
    code, _, err = finish(start("run", "--n-trials", "1", "--epochs", "1", "--storage", wrong))
    assert code == 2 and err.strip().startswith("error: cannot open storage") and "_absent" in err
    assert optuna.get_all_study_names(postgres_url) == []


def test_a_larger_n_trials_with_jobs_is_the_workers_budget_too(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    args = ["run", "--strategy", "random", "--epochs", "1", "--hidden", "16", "--pruner", "none", "--study", "grow",
            "--storage", storage, "--quiet", "--jobs", "2"]
    for total in (1, 3):
        code, _, err = finish(start(*args, "--n-trials", str(total)))
        assert code == 0, err
        assert sum(t.state == TrialState.COMPLETE for t in trials_of("grow", storage)) == total
