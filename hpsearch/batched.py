"""K trials trained in lockstep as one stacked model: batched matmuls, one AdamW update for all.

A small MLP leaves the device launch-bound; stacking K members as weights of shape [K, in, out]
gives every kernel K times the work. Each member keeps what makes it its own trial: its initial
weights (those ``training.train`` would draw with its seed), its data order, its learning rate and
weight decay, its schedule, its clipping and its divergence check. Members may be replaced between
epochs, so a pruned trial's slot takes the next one.

Written by hand because torch has no optimizer with per-member settings over stacked weights:
each member's slices go through torch's fused AdamW kernel with its own lr and weight decay (or,
without that kernel, the same update written tensor-wide).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.config import TrainConfig
from hpsearch.data import Data
from hpsearch.errors import ConfigError
from hpsearch.models import build_model
from hpsearch.schedules import build_scheduler
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


@dataclass
class _Member:
    """One slot's trial: its config, data order, schedule and progress."""

    config: TrainConfig
    shuffle: torch.Generator
    schedule: torch.optim.lr_scheduler.LRScheduler  # drives a one-parameter optimizer: our lr source
    step: int = 0
    epoch: int = 0
    initial_loss: float = math.nan
    history: list[EpochMetrics] = field(default_factory=list)
    status: str = "running"
    reason: str | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def lr(self) -> float:
        return float(self.schedule.optimizer.param_groups[0]["lr"])


class BatchedTrainer:
    """K slots of one MLP shape on one device; ``run_epoch`` advances every running member by one epoch."""

    def __init__(self, configs: list[TrainConfig], data: Data, device: torch.device | str | None = None) -> None:
        if not configs:
            raise ConfigError("a batch needs at least one config")
        self.device = torch.device(device) if device is not None else data.x_train.device
        self.data = data.to(self.device)
        self.shape = configs[0]
        check_batch_size(self.shape.batch_size, self.data)
        template = build_model(self.shape.model, self.data.input_dim, self.data.num_classes, self.shape.hidden)
        linears = [layer for layer in template if isinstance(layer, nn.Linear)]
        k = len(configs)
        self.weights = [torch.zeros(k, layer.in_features, layer.out_features, device=self.device) for layer in linears]
        self.biases = [torch.zeros(k, 1, layer.out_features, device=self.device) for layer in linears]
        self.params = [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]
        for param in self.params:
            param.requires_grad_(True)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # The fused kernel's step counters: one per member and tensor, as torch.optim.AdamW keeps them.
        self.state_steps = [[torch.zeros((), device=self.device) for _ in self.params] for _ in range(k)]
        self._fused = hasattr(torch, "_fused_adamw_") and self.device.type in ("cpu", "cuda")
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
        with torch.no_grad():
            linears = [layer for layer in model if isinstance(layer, nn.Linear)]
            for weight, bias, layer in zip(self.weights, self.biases, linears, strict=True):
                weight[slot].copy_(layer.weight.T)
                bias[slot, 0].copy_(layer.bias)
            for state in self.exp_avg + self.exp_avg_sq:
                state[slot].zero_()
            for step in self.state_steps[slot]:
                step.zero_()
        shuffle = torch.Generator(device=self.device)
        shuffle.manual_seed(config.seed)
        holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
        steps_per_epoch = math.ceil(self.data.n_train / config.batch_size)
        schedule = build_scheduler(
            holder, config.schedule, total_steps=steps_per_epoch * config.epochs, steps_per_epoch=steps_per_epoch,
            warmup=config.warmup, min_lr_ratio=config.min_lr_ratio, step_size=config.step_size, gamma=config.gamma,
            decay_fraction=config.decay_fraction)
        self.members[slot] = _Member(config=config, shuffle=shuffle, schedule=schedule)

    def retire(self, slot: int) -> None:
        """Leave ``slot`` empty: it still computes (shapes are fixed) but is never updated or reported."""
        self.members[slot] = None

    def running(self) -> list[int]:
        return [slot for slot, m in enumerate(self.members) if m is not None and m.status == "running"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [K, B, C] for inputs [K, B, D]: member k through its own weights."""
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(bias, x, weight)
            if index < len(self.weights) - 1:
                x = torch.relu(x)
        return x

    def run_epoch(self) -> dict[int, EpochMetrics]:
        """One epoch of every running member, in lockstep; returns each one's metrics by slot."""
        started = time.perf_counter()
        slots = self.running()
        if not slots:
            return {}
        n, batch = self.data.n_train, self.shape.batch_size
        # Each running member draws its order from its own generator, as its own run would; others idle.
        orders = torch.stack([torch.randperm(n, device=self.device, generator=self._member(slot).shuffle)
                              if slot in slots else torch.arange(n, device=self.device) for slot in range(self.k)])
        active = torch.zeros(self.k, device=self.device)
        active[slots] = 1.0
        start_lr = {slot: self._member(slot).lr for slot in slots}
        loss_sum = torch.zeros(self.k, device=self.device)
        norm_sum = torch.zeros(self.k, device=self.device)
        steps = torch.zeros(self.k, device=self.device)
        checked_sum, checked_steps = loss_sum.clone(), steps.clone()
        count = 0
        for start in range(0, n, batch):
            index = orders[:, start:start + batch]
            losses, norms = self._step(self.data.x_train[index], self.data.y_train[index], active)
            loss_sum += losses.detach() * active
            norm_sum += norms * active
            steps += active
            count += 1
            if count == 1:
                first = losses.tolist()
                for slot in slots:
                    member = self._member(slot)
                    if math.isnan(member.initial_loss):
                        member.initial_loss = first[slot]
            if count % DIVERGENCE_CHECK_EVERY == 0 or start + batch >= n:
                # The mean loss since the last check, per member, as training.train checks it.
                window = ((loss_sum - checked_sum) / (steps - checked_steps).clamp(min=1)).tolist()
                checked_sum, checked_steps = loss_sum.clone(), steps.clone()
                for slot in list(slots):
                    member = self._member(slot)
                    reason = _divergence(window[slot], member.initial_loss)
                    if reason is not None:  # frozen from here on, as its own run would have stopped
                        member.status, member.reason = "diverged", f"diverged at epoch {member.epoch + 1}: {reason}"
                        active[slot] = 0.0
                        slots.remove(slot)
                if not slots:
                    break
        per_member_steps = steps.clamp(min=1).tolist()
        seconds = time.perf_counter() - started
        val_loss, val_acc = self.evaluate()
        metrics = {}
        for slot in self.running() + [s for s in start_lr if self._member(s).status == "diverged"]:
            member = self._member(slot)
            member.epoch += 1
            metrics[slot] = EpochMetrics(
                epoch=member.epoch, train_loss=float(loss_sum[slot]) / per_member_steps[slot], val_loss=val_loss[slot],
                val_acc=val_acc[slot], lr=start_lr[slot], grad_norm=float(norm_sum[slot]) / per_member_steps[slot],
                samples_per_s=n / seconds, seconds=seconds)
            member.history.append(metrics[slot])
            if member.status == "running" and member.epoch >= member.config.epochs:
                member.status = "completed"
        return metrics

    @torch.no_grad()
    def evaluate(self) -> tuple[list[float], list[float]]:
        """Validation loss and accuracy of every slot."""
        loss_sum = torch.zeros(self.k, device=self.device)
        correct = torch.zeros(self.k, device=self.device)
        x, y = self.data.x_val, self.data.y_val
        for start in range(0, len(x), EVAL_CHUNK):
            chunk = x[start:start + EVAL_CHUNK]
            logits = self.forward(chunk.unsqueeze(0).expand(self.k, -1, -1))
            labels = y[start:start + EVAL_CHUNK].unsqueeze(0).expand(self.k, -1)
            loss_sum += F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").sum(dim=1)
            correct += (logits.argmax(dim=2) == labels).sum(dim=1)
        return (loss_sum / len(x)).tolist(), (correct / len(x)).tolist()

    def result(self, slot: int) -> TrainResult:
        """The finished member of ``slot`` as ``train`` would report it."""
        member = self._member(slot)
        status = "completed" if member.status in ("running", "completed") else member.status
        return TrainResult(config=member.config, status=status, reason=member.reason, history=member.history,
                           initial_loss=member.initial_loss, num_params=sum(p[slot].numel() for p in self.params),
                           device=str(self.device), seconds=time.perf_counter() - member.started, model=nn.Identity())

    def _step(self, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward, clip and AdamW for all members at once; per-member loss and pre-clip norm."""
        logits = self.forward(x)
        losses = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(dim=1)  # [K]
        for param in self.params:
            param.grad = None
        losses.sum().backward()  # members share no weights, so each gets its own loss's gradient
        grads = [p.grad for p in self.params]
        norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dim=(1, 2)) for g in grads]),
                                         dim=0)  # [K]: each member's global norm
        lr = torch.zeros(self.k, device=self.device)
        decay = torch.zeros(self.k, device=self.device)
        clip = torch.full((self.k,), math.inf, device=self.device)
        for slot in self.running():
            member = self._member(slot)
            lr[slot], decay[slot] = member.lr, member.config.weight_decay
            if member.config.clip is not None:
                clip[slot] = member.config.clip
        scale = torch.clamp(clip / (norms + 1e-6), max=1.0)  # torch.nn.utils.clip_grads_with_norm_'s rule
        self._adamw(grads, lr * active, decay, scale)
        for slot in self.running():
            if active[slot] > 0:
                member = self._member(slot)
                member.step += 1
                member.schedule.optimizer.step()  # a no-op (no gradient) that lets the scheduler step quietly
                member.schedule.step()
        return losses, norms

    @torch.no_grad()
    def _adamw(self, grads: list[torch.Tensor], lr: torch.Tensor, decay: torch.Tensor, scale: torch.Tensor) -> None:
        """torch.optim.AdamW's update with per-member lr, weight decay and clipping scale ([K] each).

        Each member's slices of the stacked tensors go through the very kernel that
        ``torch.optim.AdamW(fused=True)`` runs in the sequential engine, one call per member (a
        fifth of the time of the elementwise version below on a CPU, and the same numbers). That
        kernel is torch's private ``_fused_adamw_``; where it is missing or refuses the device, the
        elementwise version runs instead.
        """
        for grad in grads:
            grad.mul_(scale.view(-1, 1, 1))
        if self._fused:
            try:
                self._fused_adamw(grads, lr.tolist(), decay.tolist())
                return
            except (AttributeError, RuntimeError, TypeError):  # not in this torch, or not for this device
                self._fused = False
        self._elementwise_adamw(grads, lr, decay)

    def _fused_adamw(self, grads: list[torch.Tensor], lr: list[float], decay: list[float]) -> None:
        for slot in range(self.k):
            if lr[slot] > 0:
                for step in self.state_steps[slot]:  # torch.optim counts the step before the kernel runs
                    step.add_(1)
                torch._fused_adamw_(  # type: ignore[attr-defined]
                    [p[slot] for p in self.params], [g[slot] for g in grads], [m[slot] for m in self.exp_avg],
                    [v[slot] for v in self.exp_avg_sq], [], self.state_steps[slot], amsgrad=False, lr=lr[slot],
                    beta1=BETAS[0], beta2=BETAS[1], weight_decay=decay[slot], eps=EPS, maximize=False)

    def _elementwise_adamw(self, grads: list[torch.Tensor], lr: torch.Tensor, decay: torch.Tensor) -> None:
        """The same update as torch's, tensor-wide: every member at once, per-member step counts."""
        beta1, beta2 = BETAS
        # Bias corrections in double precision, as torch computes them from a Python step count: in
        # float32, 1 - 0.999**t loses four digits early on and the runs drift apart.
        steps = [self._member(s).step + 1 if self.members[s] else 1 for s in range(self.k)]
        step_size = lr.double().cpu() / torch.tensor([1 - beta1 ** t for t in steps], dtype=torch.float64)
        correction2_sqrt = torch.tensor([math.sqrt(1 - beta2 ** t) for t in steps], dtype=torch.float64)
        step3 = step_size.to(self.device, torch.float32).view(-1, 1, 1)
        correction3 = correction2_sqrt.to(self.device, torch.float32).view(-1, 1, 1)
        lr3, decay3 = lr.view(-1, 1, 1), decay.view(-1, 1, 1)
        # Members that do not run have lr 0: their weights stay; their moments change, but replace()
        # clears the moments of a slot before its next member starts.
        for param, grad, exp_avg, exp_avg_sq in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            param.mul_(1 - lr3 * decay3)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = exp_avg_sq.sqrt().div_(correction3).add_(EPS)
            param.addcdiv_(exp_avg * step3, denom, value=-1)

    def _member(self, slot: int) -> _Member:
        member = self.members[slot]
        assert member is not None, f"slot {slot} is empty"
        return member


def train_batched(configs: list[TrainConfig], data: Data, device: torch.device | str | None = None,
                  ) -> list[TrainResult]:
    """Train ``configs`` together to the end; the results in their order."""
    trainer = BatchedTrainer(configs, data, device)
    while trainer.running():
        trainer.run_epoch()
    return [trainer.result(slot) for slot in range(trainer.k)]
