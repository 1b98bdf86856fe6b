"""K trials trained in lockstep as stacked models (``hpsearch.engine.stacked_mlp``), each reported as its own.

A small MLP leaves the device launch-bound; stacking K members as weights of shape [K, out, in]
gives every kernel K times the work. Each member keeps what makes it its own trial: its initial
weights (those ``training.train`` would draw with its seed), its data order, its learning rate and
weight decay, its schedule, its clipping and its divergence check. Members may be replaced between
epochs, so a pruned trial's slot takes the next one.

On a CPU the slots are split into one stack per core, each trained by its own thread on one core:
the members are independent, so the cores never wait on each other, while one trial split across
cores leaves one idle in every small kernel (scripts/bench_batched.py measures both). On a GPU all
slots form one stack.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import nn

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data
from hpsearch.engine.schedules import lr_multipliers
from hpsearch.engine.stacked_mlp import StackedMLP
from hpsearch.engine.task import build_model, chance_level
from hpsearch.engine.training import DIVERGENCE_CHECK_EVERY, EpochMetrics, TrainResult, _divergence, check_batch_size
from hpsearch.errors import ConfigError
from hpsearch.status import Status

__all__ = ["BatchedTrainer", "train_batched"]

# Settings every member of one batch must share: the stacked shapes and the lockstep batches.
_SHARED = ("model", "hidden", "batch_size", "dataset", "subset", "val_fraction")

_T = TypeVar("_T")


@dataclass
class _Member:
    """One slot's trial: its config, data order, lr at every step and progress."""

    config: TrainConfig
    shuffle: torch.Generator
    lrs: list[float]  # the lr of each step, as the sequential run's scheduler sets it
    step: int = 0
    epoch: int = 0
    initial_loss: float = math.nan
    history: list[EpochMetrics] = field(default_factory=list)
    status: str = Status.RUNNING
    reason: str | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def lr(self) -> float:
        return self.lrs[min(self.step, len(self.lrs) - 1)]


@dataclass
class _EpochSums:
    """What one member's epoch added up (loss, norm, steps), its stack's training seconds, its validation."""

    loss: float
    norm: float
    steps: float
    seconds: float
    val_loss: float
    val_acc: float


class BatchedTrainer:
    """K slots of one MLP shape on one device; ``run_epoch`` advances every running member by one epoch.

    ``stacks`` splits the slots into that many stacks trained side by side, one thread and one core
    each; by default one per CPU thread torch uses (at most K), and one on other devices.
    """

    def __init__(self, configs: list[TrainConfig], data: Data, device: torch.device | str | None = None,
                 stacks: int | None = None) -> None:
        if not configs:
            raise ConfigError("a batch needs at least one config")
        self.device = torch.device(device) if device is not None else data.x_train.device
        self.data = data.to(self.device)
        # The stacks take flat features: a view of the same tensors (the MLP flattens its input too).
        self._x_train = self.data.x_train.reshape(self.data.n_train, -1)
        self._x_val = self.data.x_val.reshape(self.data.n_val, -1)
        self.shape = configs[0]
        check_batch_size(self.shape.batch_size, self.data)
        k = len(configs)
        if stacks is None:
            stacks = min(k, torch.get_num_threads()) if self.device.type == "cpu" else 1
        if not 1 <= stacks <= k:
            raise ConfigError(f"stacks must be between 1 and the {k} members, got {stacks}")
        template = build_model(self.shape, self.data)
        shapes = [(layer.out_features, layer.in_features) for layer in template if isinstance(layer, nn.Linear)]
        self.stacks = [StackedMLP(list(range(k))[index::stacks], shapes, self.device) for index in range(stacks)]
        self._where = {slot: (stack, index) for stack in self.stacks for index, slot in enumerate(stack.slots)}
        self._halt = threading.Event()
        self.members: list[_Member | None] = [None] * k
        for slot, config in enumerate(configs):
            self.replace(slot, config)

    @property
    def k(self) -> int:
        return len(self.members)

    def replace(self, slot: int, config: TrainConfig) -> None:
        """Start ``config`` in ``slot``: the weights ``train`` would initialize, fresh optimizer state."""
        for name in _SHARED:
            if getattr(config, name) != getattr(self.shape, name):
                raise ConfigError(f"every member of a batch needs the same {name}: {getattr(config, name)!r} is not "
                                  f"{getattr(self.shape, name)!r}")
        torch.manual_seed(config.seed)
        model = build_model(config, self.data)
        stack, index = self._where[slot]
        stack.load(index, model)
        shuffle = torch.Generator(device=self.device)
        shuffle.manual_seed(config.seed)
        steps_per_epoch = math.ceil(self.data.n_train / config.batch_size)
        multipliers = lr_multipliers(
            config.schedule, total_steps=steps_per_epoch * config.epochs, steps_per_epoch=steps_per_epoch,
            warmup=config.warmup, min_lr_ratio=config.min_lr_ratio, step_size=config.step_size, gamma=config.gamma,
            decay_fraction=config.decay_fraction)
        self.members[slot] = _Member(config=config, shuffle=shuffle, lrs=[config.lr * m for m in multipliers])

    def retire(self, slot: int) -> None:
        """Leave ``slot`` empty: its stack trains without it until ``replace`` fills it again."""
        self.members[slot] = None

    def running(self) -> list[int]:
        return [slot for slot in range(self.k) if self._is_running(slot)]

    def run_epoch(self) -> dict[int, EpochMetrics]:
        """One epoch of every running member, in lockstep; returns each one's metrics by slot."""
        started = time.perf_counter()
        starting = self.running()
        if not starting:
            return {}
        start_lr = {slot: self._member(slot).lr for slot in starting}
        busy = [stack for stack in self.stacks if any(slot in start_lr for slot in stack.slots)]
        sums = {slot: member_sums for stack_sums in self._each(self._stack_epoch, busy)
                for slot, member_sums in stack_sums.items()}
        seconds = time.perf_counter() - started
        metrics = {}
        for slot, member_sums in sums.items():
            member = self._member(slot)
            member.epoch += 1
            steps = max(member_sums.steps, 1.0)
            metrics[slot] = EpochMetrics(
                epoch=member.epoch, train_loss=member_sums.loss / steps, val_loss=member_sums.val_loss,
                val_acc=member_sums.val_acc, lr=start_lr[slot], grad_norm=member_sums.norm / steps,
                samples_per_s=self.data.n_train / member_sums.seconds, seconds=seconds)
            member.history.append(metrics[slot])
            if member.status == Status.RUNNING and member.epoch >= member.config.epochs:
                member.status = Status.COMPLETED
        return metrics

    def result(self, slot: int) -> TrainResult:
        """The finished member of ``slot`` as ``train`` would report it."""
        member = self._member(slot)
        stack, index = self._where[slot]
        status = Status.COMPLETED if member.status in (Status.RUNNING, Status.COMPLETED) else member.status
        return TrainResult(config=member.config, status=status, reason=member.reason, history=member.history,
                           initial_loss=member.initial_loss, num_params=sum(p[index].numel() for p in stack.params),
                           device=str(self.device), seconds=time.perf_counter() - member.started, model=nn.Identity(),
                           chance=chance_level(member.config, self.data))

    def _each(self, work: Callable[[StackedMLP], _T], stacks: list[StackedMLP]) -> list[_T]:
        """``work`` on every stack: in this thread for one stack, else one thread per stack, one core each."""
        if len(stacks) == 1:
            return [work(stacks[0])]
        threads = torch.get_num_threads()
        per_stack = max(1, threads // len(stacks))

        def on_its_cores(stack: StackedMLP) -> _T:
            torch.set_num_threads(per_stack)  # this thread's own setting (OpenMP's is per thread)
            return work(stack)

        self._halt.clear()
        try:
            with ThreadPoolExecutor(max_workers=len(stacks), thread_name_prefix="hpsearch-stack") as pool:
                futures = [pool.submit(on_its_cores, stack) for stack in stacks]
                try:
                    return [future.result() for future in futures]
                except BaseException:  # Ctrl-C or a failure: the other stacks stop at their next step
                    self._halt.set()
                    raise
        finally:
            torch.set_num_threads(threads)  # torch also keeps the last setting for threads yet to start

    def _stack_epoch(self, stack: StackedMLP) -> dict[int, _EpochSums]:
        """One epoch of ``stack``'s running members; idle slots are left out rather than computed."""
        indices = [i for i, slot in enumerate(stack.slots) if self._is_running(slot)]
        if len(indices) == stack.k:
            return self._train_epoch(stack)
        part = stack.subset(indices)
        try:
            return self._train_epoch(part)
        finally:
            stack.write_back(part, indices)

    def _train_epoch(self, stack: StackedMLP) -> dict[int, _EpochSums]:
        """One epoch of ``stack``, whose members all run, then their validation metrics, by slot."""
        started = time.perf_counter()
        n, batch, device = self.data.n_train, self.shape.batch_size, self.device
        members = [self._member(slot) for slot in stack.slots]
        running = [True] * stack.k
        # Each member draws its order from its own generator, as its own run would.
        orders = torch.stack([torch.randperm(n, device=device, generator=m.shuffle) for m in members])
        clips = [m.config.clip if m.config.clip is not None else math.inf for m in members]
        clip = torch.tensor(clips, device=device) if any(math.isfinite(c) for c in clips) else None
        decays = [m.config.weight_decay for m in members]
        active = torch.ones(stack.k, device=device)
        loss_sum = torch.zeros(stack.k, device=device)
        norm_sum = torch.zeros(stack.k, device=device)
        steps = torch.zeros(stack.k, device=device)
        checked_sum, checked_steps = loss_sum.clone(), steps.clone()
        count = 0
        for start in range(0, n, batch):
            if self._halt.is_set():
                break
            index = orders[:, start:start + batch].reshape(-1)
            # index_select on the flat index: a fifth of the time of advanced indexing with [K, B]
            x = self._x_train.index_select(0, index).view(stack.k, -1, self.data.input_dim)
            y = self.data.y_train.index_select(0, index).view(stack.k, -1)
            lrs = [m.lr if run else 0.0 for m, run in zip(members, running, strict=True)]
            losses, norms = stack.step(x, y, lrs, decays, clip)
            loss_sum += losses * active
            norm_sum += norms * active
            steps += active
            count += 1
            for member, run in zip(members, running, strict=True):
                if run:
                    member.step += 1
            if count == 1:
                for member, loss in zip(members, losses.tolist(), strict=True):
                    if math.isnan(member.initial_loss):
                        member.initial_loss = loss
            if count % DIVERGENCE_CHECK_EVERY == 0 or start + batch >= n:
                self._check_divergence(members, running, active, (loss_sum - checked_sum) / (steps - checked_steps)
                                       .clamp(min=1))
                checked_sum, checked_steps = loss_sum.clone(), steps.clone()
                if not any(running):
                    break
        seconds = time.perf_counter() - started
        val_loss, val_acc = stack.evaluate(self._x_val, self.data.y_val)
        columns = zip(stack.slots, loss_sum.tolist(), norm_sum.tolist(), steps.tolist(), val_loss, val_acc, strict=True)
        return {slot: _EpochSums(loss=loss, norm=norm, steps=taken, seconds=seconds, val_loss=vl, val_acc=va)
                for slot, loss, norm, taken, vl, va in columns}

    @staticmethod
    def _check_divergence(members: list[_Member], running: list[bool], active: torch.Tensor,
                          window: torch.Tensor) -> None:
        """Stop each member whose mean loss since the last check has diverged, as ``training.train`` checks it."""
        for index, (member, loss) in enumerate(zip(members, window.tolist(), strict=True)):
            if not running[index]:
                continue
            reason = _divergence(loss, member.initial_loss)
            if reason is not None:  # frozen from here on, as its own run would have stopped
                member.status, member.reason = Status.DIVERGED, f"diverged at epoch {member.epoch + 1}: {reason}"
                running[index] = False
                active[index] = 0.0

    def _is_running(self, slot: int) -> bool:
        member = self.members[slot]
        return member is not None and member.status == Status.RUNNING

    def _member(self, slot: int) -> _Member:
        member = self.members[slot]
        assert member is not None, f"slot {slot} is empty"
        return member


def train_batched(configs: list[TrainConfig], data: Data, device: torch.device | str | None = None,
                  stacks: int | None = None) -> list[TrainResult]:
    """Train ``configs`` together to the end; the results in their order."""
    trainer = BatchedTrainer(configs, data, device, stacks)
    while trainer.running():
        trainer.run_epoch()
    return [trainer.result(slot) for slot in range(trainer.k)]
