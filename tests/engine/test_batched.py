"""The batched engine: each member trains exactly as its own sequential run would."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpsearch.engine.batched import BatchedTrainer, train_batched
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.engine.training import TrainResult, train
from hpsearch.errors import ConfigError
from hpsearch.search.records import read_trial
from hpsearch.search.runner import run_study
from hpsearch.search.space import SearchSpace
from hpsearch.search.spec import StudySpec

TOLERANCE = 1e-4  # fp32: batched matmuls sum in another order than single ones
KEYS = ("train_loss", "val_loss", "val_acc", "lr", "grad_norm")


def assert_same_run(batched: TrainResult, sequential: TrainResult) -> None:
    assert batched.status == sequential.status
    assert [m.epoch for m in batched.history] == [m.epoch for m in sequential.history]
    for mine, theirs in zip(batched.history, sequential.history, strict=True):
        for key in KEYS:
            assert getattr(mine, key) == pytest.approx(getattr(theirs, key), abs=TOLERANCE), (mine.epoch, key)


@pytest.mark.parametrize("stacks", [1, 3])  # one stack; or three threads over 2, 1 and 1 members
def test_each_member_matches_its_sequential_run(stacks: int, digits: Data) -> None:
    configs = [TrainConfig(epochs=3, lr=1e-3, weight_decay=0.01, seed=0),
               TrainConfig(epochs=3, lr=3e-3, weight_decay=1e-4, seed=1, clip=0.5),
               TrainConfig(epochs=3, lr=1e-2, weight_decay=0.05, seed=2, schedule="warmup-cosine"),
               TrainConfig(epochs=2, lr=3e-4, weight_decay=0.0, seed=3, schedule="step", step_size=1, gamma=0.5)]
    for batched, config in zip(train_batched(configs, digits, stacks=stacks), configs, strict=True):
        assert_same_run(batched, train(config, digits))


def test_stacks_train_on_their_own_threads_and_leave_torch_s_setting_alone(digits: Data) -> None:
    threads = torch.get_num_threads()
    trainer = BatchedTrainer([TrainConfig(epochs=1, seed=s, hidden=(32,)) for s in range(3)], digits, stacks=2)
    seen: set[str] = set()
    # Each stack's first step waits for the other's: they must be running at once, each on a thread of its own.
    together = threading.Barrier(2, timeout=30)
    for stack in trainer.stacks:
        step = stack.step

        def recorded(*args: object, step: Callable[..., object] = step) -> object:
            name = threading.current_thread().name
            if name not in seen:
                seen.add(name)
                together.wait()
            return step(*args)

        stack.step = recorded  # type: ignore[method-assign]
    trainer.run_epoch()
    assert len(seen) == 2 and all(name.startswith("hpsearch-stack") for name in seen)
    assert torch.get_num_threads() == threads
    assert [len(stack.slots) for stack in trainer.stacks] == [2, 1]


def test_a_failing_stack_stops_the_epoch_and_says_why(digits: Data) -> None:
    threads = torch.get_num_threads()
    trainer = BatchedTrainer([TrainConfig(epochs=2, seed=s, hidden=(32,)) for s in range(2)], digits, stacks=2)
    other = trainer.stacks[1]
    calls = []
    step = other.step

    def counted(*args: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            # The healthy stack's first step ends only once the failure has reached the trainer, however fast either
            # thread runs: from then on it must stop at its next step. (The timeout keeps a broken halt from hanging.)
            trainer._halt.wait(timeout=30)
        return step(*args)

    def broken(*args: object) -> object:
        raise RuntimeError("out of memory")

    trainer.stacks[0].step = broken  # type: ignore[method-assign]
    other.step = counted  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer.run_epoch()
    assert len(calls) < math.ceil(digits.n_train / 128)  # the healthy stack stopped before its epoch's end
    assert len(calls) <= 1  # at the step after the failure (none, when the failure came before its first)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("stacks", [0, 3])
def test_stacks_must_be_between_one_and_the_members(stacks: int, digits: Data) -> None:
    with pytest.raises(ConfigError, match=f"stacks must be between 1 and the 2 members, got {stacks}"):
        BatchedTrainer([TrainConfig(seed=0), TrainConfig(seed=1)], digits, stacks=stacks)


def test_a_diverging_member_stops_alone(digits: Data) -> None:
    configs = [TrainConfig(epochs=2, lr=50.0, seed=0, hidden=(64,)),
               TrainConfig(epochs=2, lr=2e-3, seed=1, hidden=(64,))]
    doomed, healthy = train_batched(configs, digits)
    sequential = train(configs[0], digits)
    assert doomed.status == sequential.status == "diverged" and doomed.reason == sequential.reason
    assert_same_run(healthy, train(configs[1], digits))


def test_a_slot_takes_a_new_trial_between_epochs(digits: Data) -> None:
    first = [TrainConfig(epochs=2, lr=1e-3, seed=0, hidden=(64,)), TrainConfig(epochs=3, lr=2e-3, seed=1, hidden=(64,))]
    trainer = BatchedTrainer(first, digits)
    trainer.run_epoch()
    newcomer = TrainConfig(epochs=2, lr=5e-3, weight_decay=0.1, seed=7, hidden=(64,))
    trainer.replace(0, newcomer)  # as if trial 0 was pruned after one epoch
    while trainer.running():
        trainer.run_epoch()
    assert_same_run(trainer.result(0), train(newcomer, digits))
    assert_same_run(trainer.result(1), train(first[1], digits))


def test_members_must_share_the_model_shape_and_batch_size(digits: Data) -> None:
    with pytest.raises(ConfigError, match="every member of a batch needs the same hidden"):
        BatchedTrainer([TrainConfig(hidden=(64,)), TrainConfig(hidden=(32,))], digits)
    with pytest.raises(ConfigError, match="same batch_size"):
        BatchedTrainer([TrainConfig(batch_size=64), TrainConfig(batch_size=128)], digits)


def test_a_batched_study_equals_the_sequential_one(tmp_path: Path, digits: Data) -> None:
    spec = StudySpec(strategy="random", n_trials=6, pruner="none", train=TrainConfig(epochs=2, hidden=(64,)))
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    batched = run_study(spec.replace(name="batched"), storage, data=digits, batch=4)
    sequential = run_study(spec.replace(name="sequential"), storage, data=digits)
    pairs = list(zip(batched.trials, sequential.trials, strict=True))
    assert len(pairs) == 6
    for mine, theirs in pairs:
        assert mine.params == theirs.params and mine.state == theirs.state == TrialState.COMPLETE
        assert mine.value == pytest.approx(theirs.value, abs=TOLERANCE)
        assert mine.intermediate_values == pytest.approx(theirs.intermediate_values, abs=TOLERANCE)
        assert set(mine.user_attrs["hpsearch"]) >= {"config", "seed", "history", "seconds", "status"}


def test_a_batched_study_prunes_and_refills_slots(tmp_path: Path, digits: Data) -> None:
    space = SearchSpace.from_mapping({"lr": {"low": 1e-5, "high": 30.0, "log": True}})
    spec = StudySpec(name="pruning", strategy="random", n_trials=10, space=space,
                     train=TrainConfig(epochs=4, hidden=(32,)))
    study = run_study(spec, f"sqlite:///{tmp_path / 'hp.db'}", data=digits, batch=3)
    states = [t.state for t in study.trials]
    assert len(states) == 10 and TrialState.RUNNING not in states
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    for trial in study.get_trials(states=(TrialState.PRUNED,)):
        assert read_trial(trial).status in ("pruned", "diverged") and read_trial(trial).reason


@pytest.mark.parametrize(("batch", "space", "message"), [
    ("0", None, "batch must be >= 1 trials, got 0"),
    ("many", None, "batch must be a number of trials or auto, got 'many'"),
    ("4", {"batch_size": {"choices": [32, 64]}}, "the space searches batch_size"),
    ("auto", {"batch_size": {"choices": [32, 64]}}, "the space searches batch_size"),
])
def test_bad_batch_requests_are_refused_before_anything_is_written(batch: str, space: dict | None, message: str,
                                                                     tmp_path: Path, digits: Data) -> None:
    spec = StudySpec(n_trials=2, train=TrainConfig(epochs=1),
                     **({"space": SearchSpace.from_mapping(space)} if space else {}))
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_study(spec, f"sqlite:///{tmp_path / 'hp.db'}", data=digits, batch=batch)
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 'hp.db'}") == []


@pytest.mark.parametrize("files", [["--checkpoint-dir", "ckpt"], ["--artifacts"]])
def test_batch_with_trial_files_is_one_error_line(files: list[str], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hpsearch.cli import app

    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    done = CliRunner().invoke(app, ["run", "--batch", "4", "--storage", storage, "--epochs", "1",
                                    *[str(tmp_path / f) if f == "ckpt" else f for f in files]])
    assert done.exit_code == 2
    assert re.fullmatch(rf"error: --batch saves no trial files; {files[0]} \(.+\) needs a run without --batch",
                        done.stderr.strip())
    assert optuna.get_all_study_names(storage) == []


@pytest.mark.parametrize(("flags", "message"), [
    (["--batch", "many"], "error: batch must be a number of trials or auto, got 'many'"),
    (["--batch", "0"], "error: batch must be >= 1 trials, got 0"),
    (["--batch", "2", "--checkpoint-dir", "ckpt"], "error: --batch saves no trial files; --checkpoint-dir"),
])
def test_a_worker_refuses_a_bad_batch_with_one_line_and_trains_nothing(flags: list[str], message: str, tmp_path: Path,
                                                                        digits: Data) -> None:
    from typer.testing import CliRunner

    from hpsearch.cli import app

    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    run_study(StudySpec(name="joined", n_trials=1, train=TrainConfig(epochs=1, hidden=(16,))), storage, data=digits)
    flags = [str(tmp_path / f) if f == "ckpt" else f for f in flags]
    done = CliRunner().invoke(app, ["worker", "joined", "--storage", storage, "--quiet", *flags])
    assert done.exit_code == 2 and done.stderr.strip().startswith(message), done.stderr
    assert len(optuna.load_study(study_name="joined", storage=storage).trials) == 1


def test_a_batch_asks_no_trial_past_the_budget_that_another_process_fills(tmp_path: Path, digits: Data) -> None:
    """Trials that another worker finishes while a batch trains count: the batch stops asking once the
    budget is full (a countdown of its own would have trained 6 and left the study with 8)."""
    from hpsearch.search.batched_study import optimize_batched
    from hpsearch.search.objective import ask_within_budget
    from hpsearch.search.storages import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'hp.db'}", heartbeat=None)
    spec = StudySpec(name="shared", n_trials=6, pruner="none", train=TrainConfig(epochs=2, hidden=(16,)))
    study = optuna.create_study(study_name="shared", storage=storage)
    elsewhere = optuna.load_study(study_name="shared", storage=storage)

    def another_worker_finishes_one(_study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        asked = ask_within_budget(elsewhere, spec.total_trials)
        if asked is not None:
            elsewhere.tell(asked[0], 1.0)

    optimize_batched(study, spec, digits, 2, callbacks=[another_worker_finishes_one])
    trials = study.get_trials()
    assert sum(t.state.is_finished() for t in trials) == 6
    assert sum(bool(read_trial(t).history) for t in trials) == 4  # the batch trained 4, the other worker 2
    assert [t.state for t in trials if not t.state.is_finished()] == [TrialState.WAITING]  # its surplus, queued


@pytest.mark.parametrize("batch", [None, 2])
def test_a_worker_waits_for_a_dead_worker_s_trial_and_runs_its_retry(batch: int | None, tmp_path: Path,
                                                                     digits: Data) -> None:
    """One trial loop for both: a worker whose own trials are done while a dead worker's trial holds the last
    place waits for its heartbeat to go stale, then runs the retry; it does not end one trial short."""
    from hpsearch.search.batched_study import optimize_batched
    from hpsearch.search.storages import GRACE_BEATS, open_storage
    from hpsearch.search.storages.optuna_private import record_heartbeat
    from hpsearch.search.worker import optimize_to_budget

    storage = open_storage(f"sqlite:///{tmp_path / 'hp.db'}", heartbeat=1)
    spec = StudySpec(name="shared", n_trials=3, pruner="none", train=TrainConfig(epochs=1, hidden=(16,)))
    study = optuna.create_study(study_name="shared", storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna's: this ask is not in its optimize loop
        dead = study.ask()
    record_heartbeat(study, dead)  # its worker beats once and dies
    started = time.monotonic()
    if batch is None:
        optimize_to_budget(study, spec, digits)
    else:
        optimize_batched(study, spec, digits, batch)
    trials = study.get_trials()
    assert time.monotonic() - started >= GRACE_BEATS - 1  # it waited for the dead trial to go stale
    assert [t.state for t in trials].count(TrialState.FAIL) == 1 and trials[0].state == TrialState.FAIL
    assert sum(t.state == TrialState.COMPLETE and bool(read_trial(t).history) for t in trials) == 3
    # the dead trial's retry ran, once: last when the worker's own trials were quick, earlier on a loaded machine
    # where the dead trial went stale while they trained
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE


def test_the_elementwise_adamw_matches_too(digits: Data) -> None:
    """On a GPU (one stack, the tensor-wide update) or where torch lacks its fused AdamW kernel, the runs
    are the same; the third member finishes first, so the last epoch trains a subset of the stack."""
    configs = [TrainConfig(epochs=3, lr=3e-3, weight_decay=0.05, seed=4, hidden=(64,), clip=1.0),
               TrainConfig(epochs=3, lr=1e-3, weight_decay=1e-4, seed=5, hidden=(64,), schedule="cosine"),
               TrainConfig(epochs=2, lr=2e-3, weight_decay=0.01, seed=6, hidden=(64,))]
    trainer = BatchedTrainer(configs, digits, stacks=1)
    for stack in trainer.stacks:
        stack.fused = False
    while trainer.running():
        trainer.run_epoch()
    for slot, config in enumerate(configs):
        assert_same_run(trainer.result(slot), train(config, digits))


GIB = 2**30


# docs/batched.md: 4 members per CPU thread on a CPU, on a GPU as many as a quarter of its free memory holds; on
# either at most 64 and no more than a quarter of the memory holds. A member is four float32 copies of its
# parameters (weights, gradients, two moments): 16 bytes a parameter, so 2**26 parameters are 1 GiB a member.
@pytest.mark.parametrize(("device", "threads", "memory", "parameters", "members"), [
    pytest.param("cpu", 1, 16 * GIB, 10_000, 4, id="cpu-1-thread-4"),
    pytest.param("cpu", 2, 16 * GIB, 10_000, 8, id="cpu-2-threads-8"),
    pytest.param("cpu", 32, 16 * GIB, 10_000, 64, id="cpu-32-threads-at-most-64"),
    pytest.param("cpu", 2, 16 * GIB, 2**26, 4, id="cpu-a-quarter-of-16-GiB-holds-4-of-1-GiB"),
    pytest.param("cpu", 2, 16 * GIB, 2**28, 1, id="cpu-a-quarter-of-16-GiB-holds-1-of-4-GiB"),
    pytest.param("cpu", 2, 16 * GIB, 2**29, 1, id="cpu-none-fits-still-1"),
    pytest.param("cuda", 2, 80 * GIB, 10_000, 64, id="gpu-at-most-64-whatever-the-threads"),
    pytest.param("cuda", 2, 8 * GIB, 2**26, 2, id="gpu-a-quarter-of-8-GiB-free-holds-2-of-1-GiB"),
])
def test_auto_batch_is_four_members_per_cpu_thread_while_memory_holds_them(
        device: str, threads: int, memory: int, parameters: int, members: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpsearch.search import batched_study

    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(batched_study, "_physical_memory", lambda: memory)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (memory, 2 * memory))  # (free, total)
    assert batched_study.auto_batch(torch.device(device), parameters) == members


def test_auto_batch_reads_this_machine_s_memory() -> None:
    from hpsearch.search.batched_study import _physical_memory, auto_batch

    huge = _physical_memory() // 16  # one member's four copies would fill all the memory
    assert auto_batch(torch.device("cpu"), huge) == 1
    assert auto_batch(torch.device("cpu"), huge // 8) == 2  # a quarter of the memory holds two
