"""``hpsearch run --batch K``: a study's trials trained K at a time in one BatchedTrainer (ask/tell).

Optuna gives K trials (``study.ask``); they train together, each epoch's metrics are reported to
each member's own trial, and a member that is pruned, diverges or completes is told and its slot
takes the next trial. The loop around the steps is every worker's (hpsearch.search.loop), and trials
start, report and end with hpsearch.search.objective, so a trial has the same record whichever ran it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError

from hpsearch.engine.batched import BatchedTrainer
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data, TaskData
from hpsearch.engine.entry_points import is_entry_point
from hpsearch.engine.models import count_parameters
from hpsearch.engine.task import build_model
from hpsearch.engine.training import EpochMetrics
from hpsearch.errors import ConfigError
from hpsearch.search.budget import budget
from hpsearch.search.loop import run_trials
from hpsearch.search.objective import (
    TrialCallback,
    TrialFiles,
    ask_within_budget,
    finish_trial,
    give_up,
    report_epoch,
    start_trial,
)
from hpsearch.search.records import TrialRecord
from hpsearch.search.setup import prepare_study
from hpsearch.search.space import split_arg
from hpsearch.search.spec import StudySpec
from hpsearch.search.storages.beats import start_beating
from hpsearch.status import Status

__all__ = ["SHAPE_PARAMS", "BatchSteps", "auto_batch", "check_batchable", "check_files_unbatched", "optimize_batched",
           "resolve_batch"]

logger = logging.getLogger(__name__)

# `--batch auto` on a CPU: members per CPU thread (one stack of them per core). On two cores the time
# per trial-epoch is flat from K = 4 to 32 (scripts/bench_batched.py); fewer members at once leave
# TPE more finished trials to learn from and fewer idle slots at the end of a study.
CPU_MEMBERS_PER_THREAD = 4
# Members until their weights, gradients and AdamW moments fill this share of the GPU's free memory
# (on a CPU, of the machine's physical memory).
MEMORY_SHARE = 0.25
MAX_BATCH = 64
# Searched parameters that would give members different shapes or batches: not in one BatchedTrainer.
SHAPE_PARAMS = ("batch_size", "hidden", "model")


def check_batchable(spec: StudySpec, k: int) -> None:
    """Refuse a batch size below 1 or a space that changes what members must share."""
    if k < 1:
        raise ConfigError(f"batch must be >= 1 trials, got {k}")
    shaped = [p.name for p in spec.space.params if p.name in SHAPE_PARAMS]
    if shaped:
        raise ConfigError(f"--batch trains members of one shape and batch size; the space searches {shaped[0]}")
    if spec.train.model != "mlp":
        raise ConfigError(f"--batch stacks the built-in mlp only, got model {spec.train.model!r} (run without "
                          f"--batch, or with --jobs for several trials at once)")
    for field, what in (("optimizer", "your optimizer"), ("metrics", "your metrics")):
        value = getattr(spec.train, field)
        if value is not None and is_entry_point(value):
            raise ConfigError(f"--batch steps its stacked members with its own AdamW and reports val_loss and "
                              f"val_acc only, got {field} {value!r} ({what}: run without --batch, or with --jobs for "
                              f"several trials at once)")
    shared = {"loss": "cross-entropy", "optimizer": "adamw", "precision": "fp32", "label_smoothing": 0.0}
    for name, value in shared.items():
        if getattr(spec.train, name) != value:
            raise ConfigError(f"--batch trains {name} {value!r} only, got {name} {getattr(spec.train, name)!r}")
    searched = [p.name for p in spec.space.params if p.name in (*shared, "momentum", "beta1", "beta2")
                or split_arg(p.name) is not None]
    if searched or spec.train.model_args or spec.train.beta1 is not None or spec.train.beta2 is not None:
        raise ConfigError(f"--batch trains members of one shape with AdamW's defaults; "
                          f"{'the space searches ' + searched[0] if searched else 'model_args or betas are set'}")


def check_files_unbatched(files: TrialFiles) -> None:
    """Refuse checkpoints and artifacts, which only the sequential loop writes, rather than drop them."""
    for flag, folder in (("--checkpoint-dir", files.checkpoint_dir), ("--artifacts", files.artifact_dir)):
        if folder is not None:
            raise ConfigError(f"--batch saves no trial files; {flag} ({folder}) needs a run without --batch")


def auto_batch(device: torch.device, parameters: int) -> int:
    """K for ``--batch auto``: CPU_MEMBERS_PER_THREAD per CPU thread on a CPU, as many members as a share of
    the GPU's free memory holds on a GPU; on either, no more than a share of the memory holds (four float32
    copies of each member: weights, gradients, two moments) and at most MAX_BATCH."""
    if device.type == "cuda":
        memory, wanted = torch.cuda.mem_get_info(device)[0], MAX_BATCH
    else:
        memory, wanted = _physical_memory(), CPU_MEMBERS_PER_THREAD * torch.get_num_threads()
    return max(1, min(MAX_BATCH, wanted, int(MEMORY_SHARE * memory // (16 * parameters))))


def resolve_batch(batch: int | str, device: torch.device, spec: StudySpec, data: TaskData) -> int:
    """K from ``--batch``: a number, or "auto" for the device and the model's size."""
    if batch == "auto":
        return auto_batch(device, count_parameters(build_model(spec.train, data)))
    try:
        k = int(batch)
    except ValueError:
        raise ConfigError(f"batch must be a number of trials or auto, got {batch!r}") from None
    check_batchable(spec, k)
    return k


def _physical_memory() -> int:
    """Bytes of this machine's memory; where the system does not say (Windows), as if plenty."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 2**62


def optimize_batched(study: optuna.Study, spec: StudySpec, data: TaskData, k: int, *,
                     callbacks: Sequence[TrialCallback] = (), timeout: float | None = None, worker: int = 0) -> None:
    """Run trials of ``study``, K at a time, until it holds ``spec.total_trials`` finished ones, in the loop of
    every worker (hpsearch.search.loop), so that several processes, batched or not, can share the study."""
    check_batchable(spec, k)
    if not isinstance(data, Data):
        raise ConfigError(f"--batch needs the data as tensors on the device; dataset {data.name!r} streams")
    prepare_study(study, spec, worker)
    deadline = time.monotonic() + timeout if timeout is not None else None
    run_trials(study, spec.total_trials, BatchSteps(study, spec, data, k, callbacks), deadline)


class BatchSteps:
    """Steps of one epoch of K stacked trials each (hpsearch.search.loop.TrialSteps): each member's epoch is
    reported to its own trial, and a member that is pruned, diverges or completes is told; its slot takes the
    next trial before the next epoch."""

    def __init__(self, study: optuna.Study, spec: StudySpec, data: Data, k: int,
                 callbacks: Sequence[TrialCallback]) -> None:
        self.study, self.spec, self.data, self.k, self.callbacks = study, spec, data, k, callbacks
        self.asker = _Asker(study, spec)
        self.trainer: BatchedTrainer | None = None
        self.trials: dict[int, tuple[optuna.Trial, TrialRecord]] = {}  # slot → its trial
        self.beats: dict[int, Callable[[], None]] = {}  # slot → stops the heartbeats of its trial

    def in_flight(self) -> int:
        return len(self.trials)

    def step(self, ask: bool) -> int:
        if ask:
            self._fill()
        if not self.trials:
            return 0
        assert self.trainer is not None
        for slot, epoch in self.trainer.run_epoch().items():
            try:
                done = _report(self.study, *self.trials[slot], self.trainer, slot, epoch, self.spec, self.callbacks)
            except UpdateFinishedTrialError:  # another worker failed it as stale: its retry runs it again
                logger.warning("trial %d of %s outlived its heartbeat and was failed by another worker",
                               self.trials[slot][0].number, self.study.study_name)
                done = True
            if done:
                del self.trials[slot]
                self.beats.pop(slot)()
                self.trainer.retire(slot)
        return 0

    def _fill(self) -> None:
        """Ask for a trial for each free slot while the budget has room; the first asks build the trainer."""
        slots = range(self.k) if self.trainer is None else range(len(self.trainer.members))
        configs: list[TrainConfig] = []
        for slot in (slot for slot in slots if slot not in self.trials):
            asked = self.asker.ask()
            if asked is None:
                break
            trial, config, record = asked
            self.trials[slot] = trial, record
            self.beats[slot] = start_beating(self.study, trial)
            if self.trainer is None:
                configs.append(config)
            else:
                self.trainer.replace(slot, config)
        if configs:
            self.trainer = BatchedTrainer(configs, self.data)

    def abandon(self, exc: BaseException) -> None:
        for trial, record in self.trials.values():
            give_up(self.study, trial, record, exc)
        self.trials.clear()

    def close(self) -> None:
        for stop in self.beats.values():
            stop()
        self.beats.clear()


class _Asker:
    """Asks for the batch's next trial while the budget has room: a count first when the last ask left no
    place it knew of (finished and running trials fill the budget: ask nothing), then
    objective.ask_within_budget."""

    def __init__(self, study: optuna.Study, spec: StudySpec) -> None:
        self.study, self.spec = study, spec
        self.room = 0  # places left beyond the last trial asked, as counted then

    def ask(self) -> tuple[optuna.Trial, TrainConfig, TrialRecord] | None:
        if self.room < 1:
            state = budget(self.study)
            if state.finished + state.running >= self.spec.total_trials:
                return None
        asked = ask_within_budget(self.study, self.spec.total_trials)
        if asked is None:
            self.room = 0
            return None
        trial, self.room = asked
        try:
            return trial, *start_trial(trial, self.spec)
        except BaseException as exc:  # Ctrl-C or SIGTERM before the trial trains: it must not stay RUNNING
            give_up(self.study, trial, None, exc)
            raise


def _report(study: optuna.Study, trial: optuna.Trial, record: TrialRecord, trainer: BatchedTrainer, slot: int,
            epoch: EpochMetrics, spec: StudySpec, callbacks: Sequence[TrialCallback]) -> bool:
    """Report one member's epoch to its trial; tell the trial when it is done. Whether it is done."""
    stop = report_epoch(trial, spec.metric, epoch.epoch, epoch)
    member = trainer.members[slot]
    assert member is not None
    if member.status == Status.RUNNING:
        if not stop:
            return False
        member.status = Status.STOPPED  # as train() ends a run its reporter stops
    frozen = finish_trial(study, trial, record, trainer.result(slot), spec.metric)
    for callback in callbacks:
        callback(study, frozen)
    return True
