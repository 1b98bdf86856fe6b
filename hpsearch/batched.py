"""K trials trained in lockstep as stacked models: batched matmuls, one AdamW update per member.

A small MLP leaves the device launch-bound; stacking K members as weights of shape [K, out, in]
gives every kernel K times the work. Each member keeps what makes it its own trial: its initial
weights (those ``training.train`` would draw with its seed), its data order, its learning rate and
weight decay, its schedule, its clipping and its divergence check. Members may be replaced between
epochs, so a pruned trial's slot takes the next one.

On a CPU the slots are split into one stack per core, each trained by its own thread on one core:
the members are independent, so the cores never wait on each other, while one trial split across
cores leaves one idle in every small kernel (scripts/bench_batched.py measures both). On a GPU all
slots form one stack.

Written by hand because torch has no optimizer with per-member settings over stacked weights:
each member's slices go through torch's fused AdamW kernel with its own lr and weight decay (or,
without that kernel, the same update written tensor-wide). The backward pass is written out too,
for speed (see ``_Stack.loss_and_grads``).
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
import torch.nn.functional as F
from torch import nn

from hpsearch.config import TrainConfig
from hpsearch.data import Data
from hpsearch.errors import ConfigError
from hpsearch.models import build_model
from hpsearch.schedules import lr_multipliers
from hpsearch.training import (
    DIVERGENCE_CHECK_EVERY,
    EVAL_CHUNK,
    EpochMetrics,
    TrainResult,
    _divergence,
    check_batch_size,
)

__all__ = ["BatchedTrainer", "train_batched"]

# AdamW's defaults, as torch.optim.AdamW has them.
BETAS = (0.9, 0.999)
EPS = 1e-8
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
    status: str = "running"
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


class _Stack:
    """The stacked weights, AdamW moments and step counts of some slots: what one thread trains."""

    def __init__(self, slots: list[int], shapes: list[tuple[int, int]], device: torch.device) -> None:
        self.slots = slots  # the trainer's slot numbers, in stacking order
        self.shapes = shapes  # each layer's (out, in)
        k = len(slots)
        # nn.Linear's layout, [out, in] per member: the gradients below come out in it without a transpose.
        self.weights = [torch.zeros(k, out, in_, device=device) for out, in_ in shapes]
        self.biases = [torch.zeros(k, 1, out, device=device) for out, _ in shapes]
        self.params = [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # The fused kernel's step counters, one per member and tensor as torch.optim.AdamW keeps them; a
        # member's tensors always share a count, so they share one counter (the kernel only reads it).
        self.state_steps = [[torch.zeros((), device=device)] * len(self.params) for _ in range(k)]
        self.counts = [0] * k  # the same counts in Python, for the tensor-wide update: no device sync
        # Each member's slices, taken once: slicing in the hot loop costs as much as a small kernel.
        self.member_params = [[p[i] for p in self.params] for i in range(k)]
        self.member_exp_avg = [[m[i] for m in self.exp_avg] for i in range(k)]
        self.member_exp_avg_sq = [[v[i] for v in self.exp_avg_sq] for i in range(k)]
        # On a CPU the fused kernel per member is a fifth of the time of the tensor-wide update; on a GPU
        # the tensor-wide update launches the same few kernels for any K, the fused one K times as many.
        self.fused = hasattr(torch, "_fused_adamw_") and device.type == "cpu"

    @property
    def k(self) -> int:
        return len(self.slots)

    @torch.no_grad()
    def subset(self, indices: list[int]) -> _Stack:
        """A stack of copies of the members at ``indices``, to train them alone while the others idle."""
        part = _Stack([self.slots[i] for i in indices], self.shapes, self.params[0].device)
        chosen = torch.tensor(indices, device=part.params[0].device)
        for mine, theirs in zip(self._state(), part._state(), strict=True):
            torch.index_select(mine, 0, chosen, out=theirs)
        for new, old in enumerate(indices):
            part.state_steps[new][0].copy_(self.state_steps[old][0])
            part.counts[new] = self.counts[old]
        part.fused = self.fused
        return part

    @torch.no_grad()
    def write_back(self, part: _Stack, indices: list[int]) -> None:
        """Take back the members that ``subset(indices)`` copied into ``part``, as trained there."""
        chosen = torch.tensor(indices, device=part.params[0].device)
        for mine, theirs in zip(self._state(), part._state(), strict=True):
            mine.index_copy_(0, chosen, theirs)
        for new, old in enumerate(indices):
            self.state_steps[old][0].copy_(part.state_steps[new][0])
            self.counts[old] = part.counts[new]
        self.fused = part.fused

    def _state(self) -> list[torch.Tensor]:
        return self.params + self.exp_avg + self.exp_avg_sq

    @torch.no_grad()
    def load(self, index: int, model: nn.Module) -> None:
        """Member ``index`` takes ``model``'s weights and starts its AdamW state afresh."""
        linears = [layer for layer in model if isinstance(layer, nn.Linear)]
        for weight, bias, layer in zip(self.weights, self.biases, linears, strict=True):
            weight[index].copy_(layer.weight)
            bias[index, 0].copy_(layer.bias)
        for state in self.exp_avg + self.exp_avg_sq:
            state[index].zero_()
        self.state_steps[index][0].zero_()
        self.counts[index] = 0

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's output for inputs [K, B, D], member k through its own weights: the ReLU
        activations [K, B, H], then the logits as [K, C, B].

        Classes before the batch is cross-entropy's own layout, and a softmax over that middle
        dimension runs some 20 times faster on a CPU than over a last dimension of 10 classes.
        """
        outputs = []
        last = len(self.weights) - 1
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if index < last:
                # ReLU in place: only its output is needed, by the next layer and the backward
                x = torch.relu_(torch.baddbmm(bias, x, weight.transpose(1, 2)))
            else:
                x = torch.baddbmm(bias.transpose(1, 2), weight, x.transpose(1, 2))
            outputs.append(x)
        return outputs

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Each member's mean cross-entropy on its batch ([K]) and its gradients, in ``params``' order.

        Backpropagation written out rather than left to autograd: each weight's gradient is then one
        batched matmul in the layout MKL runs fastest, and no graph is built; with the logits' layout
        that is about 15% of a CPU step (measured against autograd over the same stack).
        """
        outputs = self.forward(x)
        hidden = [x, *outputs[:-1]]  # each layer's input
        log_probs = torch.log_softmax(outputs[-1], dim=1)  # [K, C, B]
        picked = y.unsqueeze(1)
        losses = -log_probs.gather(1, picked).squeeze(1).mean(dim=1)
        # d(mean cross-entropy)/d(logits) = (softmax - one_hot(y)) / batch
        grad = log_probs.exp_().scatter_add_(1, picked, torch.full_like(picked, -1, dtype=log_probs.dtype))
        grad.div_(y.shape[1])
        last = len(self.weights) - 1
        weight_grads = [torch.bmm(grad, hidden[last])]
        bias_grads = [grad.sum(dim=2, keepdim=True).transpose(1, 2)]
        grad = torch.bmm(grad.transpose(1, 2), self.weights[last])  # [K, B, H] from here on
        for layer in reversed(range(last)):
            grad = torch.ops.aten.threshold_backward(grad, hidden[layer + 1], 0)  # through the ReLU
            weight_grads.append(torch.bmm(grad.transpose(1, 2), hidden[layer]))
            bias_grads.append(grad.sum(dim=1, keepdim=True))
            if layer > 0:  # the data needs no gradient
                grad = torch.bmm(grad, self.weights[layer])
        pairs = zip(reversed(weight_grads), reversed(bias_grads), strict=True)
        return losses, [g for pair in pairs for g in pair]

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor, lrs: list[float], decays: list[float], clip: torch.Tensor | None,
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward, clip and AdamW for every member; per-member loss and pre-clip norm ([K] each).

        A member with lr 0 is not updated; ``clip`` holds each member's max norm (inf: none), or is
        None when no member clips.
        """
        losses, grads = self.loss_and_grads(x, y)
        norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dim=(1, 2)) for g in grads]),
                                         dim=0)  # [K]: each member's global norm
        if clip is not None:
            scale = torch.clamp(clip / (norms + 1e-6), max=1.0)  # torch.nn.utils.clip_grads_with_norm_'s rule
            for grad in grads:
                grad.mul_(scale.view(-1, 1, 1))
        self._adamw(grads, lrs, decays)
        return losses, norms

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        """Validation loss and accuracy of every member on ``x``, ``y``."""
        loss_sum = torch.zeros(self.k, device=x.device)
        correct = torch.zeros(self.k, device=x.device)
        for start in range(0, len(x), EVAL_CHUNK):
            chunk = x[start:start + EVAL_CHUNK]
            logits = self.forward(chunk.unsqueeze(0).expand(self.k, -1, -1))[-1]  # [K, C, B]
            labels = y[start:start + EVAL_CHUNK].unsqueeze(0).expand(self.k, -1)
            loss_sum += F.cross_entropy(logits, labels, reduction="none").sum(dim=1)
            correct += (logits.argmax(dim=1) == labels).sum(dim=1)
        return (loss_sum / len(x)).tolist(), (correct / len(x)).tolist()

    def _adamw(self, grads: list[torch.Tensor], lrs: list[float], decays: list[float]) -> None:
        """torch.optim.AdamW's update with each member's own lr and weight decay.

        On a CPU each member's slices of the stacked tensors go through the very kernel that
        ``torch.optim.AdamW(fused=True)`` runs in the sequential engine, one call per member (a
        fifth of the time of the elementwise version below, and the same numbers). That kernel is
        torch's private ``_fused_adamw_``; on other devices, or where it is missing or fails, the
        elementwise version runs instead.
        """
        if self.fused:
            try:
                self._fused_adamw(grads, lrs, decays)
                return
            except (AttributeError, RuntimeError, TypeError):  # not in this torch, or not for this device
                self.fused = False
        self._elementwise_adamw(grads, lrs, decays)

    def _fused_adamw(self, grads: list[torch.Tensor], lrs: list[float], decays: list[float]) -> None:
        for index, (lr, decay) in enumerate(zip(lrs, decays, strict=True)):
            if lr > 0:
                step = self.state_steps[index][0]
                step.add_(1)  # torch.optim counts the step before the kernel runs
                try:
                    torch._fused_adamw_(  # type: ignore[attr-defined]
                        self.member_params[index], [g[index] for g in grads], self.member_exp_avg[index],
                        self.member_exp_avg_sq[index], [], self.state_steps[index], amsgrad=False, lr=lr,
                        beta1=BETAS[0], beta2=BETAS[1], weight_decay=decay, eps=EPS, maximize=False)
                except BaseException:
                    step.sub_(1)  # not counted: the elementwise update takes this step over
                    raise
                self.counts[index] += 1

    def _elementwise_adamw(self, grads: list[torch.Tensor], lrs: list[float], decays: list[float]) -> None:
        """The same update as torch's, tensor-wide: every member at once, per-member step counts."""
        beta1, beta2 = BETAS
        device = self.params[0].device
        for index, lr in enumerate(lrs):
            if lr > 0:
                self.counts[index] += 1
        # Bias corrections in double precision, as torch computes them from a Python step count: in
        # float32, 1 - 0.999**t loses four digits early on and the runs drift apart.
        steps = [max(1, count) for count in self.counts]
        rows = torch.tensor([[lr / (1 - beta1 ** t) for lr, t in zip(lrs, steps, strict=True)],
                             [math.sqrt(1 - beta2 ** t) for t in steps], lrs, decays], dtype=torch.float64)
        # One copy to the device for the whole step, queued without waiting for the device.
        step3, correction3, lr3, decay3 = rows.to(device, torch.float32, non_blocking=True).view(4, -1, 1, 1)
        # A member that does not run has lr 0: its weights stay; its moments change, but load() clears
        # them before a slot's next member starts, and a diverged member is never updated again.
        for param, grad, exp_avg, exp_avg_sq in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            param.mul_(1 - lr3 * decay3)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = exp_avg_sq.sqrt().div_(correction3).add_(EPS)
            param.addcdiv_(exp_avg * step3, denom, value=-1)


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
        self.shape = configs[0]
        check_batch_size(self.shape.batch_size, self.data)
        k = len(configs)
        if stacks is None:
            stacks = min(k, torch.get_num_threads()) if self.device.type == "cpu" else 1
        if not 1 <= stacks <= k:
            raise ConfigError(f"stacks must be between 1 and the {k} members, got {stacks}")
        template = build_model(self.shape.model, self.data.input_dim, self.data.num_classes, self.shape.hidden)
        shapes = [(layer.out_features, layer.in_features) for layer in template if isinstance(layer, nn.Linear)]
        self.stacks = [_Stack(list(range(k))[index::stacks], shapes, self.device) for index in range(stacks)]
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
        model = build_model(config.model, self.data.input_dim, self.data.num_classes, config.hidden)
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
            if member.status == "running" and member.epoch >= member.config.epochs:
                member.status = "completed"
        return metrics

    def result(self, slot: int) -> TrainResult:
        """The finished member of ``slot`` as ``train`` would report it."""
        member = self._member(slot)
        stack, index = self._where[slot]
        status = "completed" if member.status in ("running", "completed") else member.status
        return TrainResult(config=member.config, status=status, reason=member.reason, history=member.history,
                           initial_loss=member.initial_loss, num_params=sum(p[index].numel() for p in stack.params),
                           device=str(self.device), seconds=time.perf_counter() - member.started, model=nn.Identity())

    def _each(self, work: Callable[[_Stack], _T], stacks: list[_Stack]) -> list[_T]:
        """``work`` on every stack: in this thread for one stack, else one thread per stack, one core each."""
        if len(stacks) == 1:
            return [work(stacks[0])]
        threads = torch.get_num_threads()
        per_stack = max(1, threads // len(stacks))

        def on_its_cores(stack: _Stack) -> _T:
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

    def _stack_epoch(self, stack: _Stack) -> dict[int, _EpochSums]:
        """One epoch of ``stack``'s running members; idle slots are left out rather than computed."""
        indices = [i for i, slot in enumerate(stack.slots) if self._is_running(slot)]
        if len(indices) == stack.k:
            return self._train_epoch(stack)
        part = stack.subset(indices)
        try:
            return self._train_epoch(part)
        finally:
            stack.write_back(part, indices)

    def _train_epoch(self, stack: _Stack) -> dict[int, _EpochSums]:
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
            x = self.data.x_train.index_select(0, index).view(stack.k, -1, self.data.input_dim)
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
        val_loss, val_acc = stack.evaluate(self.data.x_val, self.data.y_val)
        columns = zip(stack.slots, loss_sum.tolist(), norm_sum.tolist(), steps.tolist(), val_loss, val_acc, strict=True)
        return {slot: _EpochSums(loss=loss, norm=norm, steps=count, seconds=seconds, val_loss=vl, val_acc=va)
                for slot, loss, norm, count, vl, va in columns}

    @staticmethod
    def _check_divergence(members: list[_Member], running: list[bool], active: torch.Tensor,
                          window: torch.Tensor) -> None:
        """Stop each member whose mean loss since the last check has diverged, as ``training.train`` checks it."""
        for index, (member, loss) in enumerate(zip(members, window.tolist(), strict=True)):
            if not running[index]:
                continue
            reason = _divergence(loss, member.initial_loss)
            if reason is not None:  # frozen from here on, as its own run would have stopped
                member.status, member.reason = "diverged", f"diverged at epoch {member.epoch + 1}: {reason}"
                running[index] = False
                active[index] = 0.0

    def _is_running(self, slot: int) -> bool:
        member = self.members[slot]
        return member is not None and member.status == "running"

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
