"""K MLPs of one shape held as stacked weights: batched forward, a written-out backward, per-member AdamW.

The weights of layer l are one [K, out, in] tensor (nn.Linear's layout per member), so one batched
matmul serves every member. ``hpsearch.engine.batched`` trains such stacks as trials; this module is their
arithmetic.

Written by hand because torch has no optimizer with per-member settings over stacked weights:
each member's slices go through torch's fused AdamW kernel with its own lr and weight decay (or
the same update written tensor-wide). The backward pass is written out too, for speed (see
``StackedMLP.loss_and_grads``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.engine.data import EVAL_CHUNK

__all__ = ["BETAS", "EPS", "StackedMLP"]

# AdamW's defaults, as torch.optim.AdamW has them.
BETAS = (0.9, 0.999)
EPS = 1e-8


class StackedMLP:
    """K members of one MLP shape: stacked weights, AdamW moments and step counts (what one thread trains).

    ``slots`` names the members for the trainer; ``shapes`` gives each layer's (out, in).
    """

    def __init__(self, slots: list[int], shapes: list[tuple[int, int]], device: torch.device) -> None:
        self.slots = slots  # in stacking order
        self.shapes = shapes
        self.device = device
        k = len(slots)
        # nn.Linear's layout, [out, in] per member: the gradients below come out in it without a transpose.
        self.weights = [torch.zeros(k, out, in_, device=device) for out, in_ in shapes]
        self.biases = [torch.zeros(k, 1, out, device=device) for out, _ in shapes]
        self.params = [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.counts = [0] * k  # each member's AdamW steps, in Python: no device sync to read them
        # The fused kernel reads a step count per tensor; a member's tensors share its count, and the
        # kernel only reads it, so one scratch tensor, set from ``counts`` before each call, serves all.
        self._step = torch.zeros((), device=device)
        self._steps = [self._step] * len(self.params)
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
    def subset(self, indices: list[int]) -> StackedMLP:
        """A stack of copies of the members at ``indices``, to train them alone while the others idle."""
        part = StackedMLP([self.slots[i] for i in indices], self.shapes, self.device)
        chosen = torch.tensor(indices, device=self.device)
        for mine, theirs in zip(self._state(), part._state(), strict=True):
            torch.index_select(mine, 0, chosen, out=theirs)
        part.counts = [self.counts[i] for i in indices]
        part.fused = self.fused
        return part

    @torch.no_grad()
    def write_back(self, part: StackedMLP, indices: list[int]) -> None:
        """Take back the members that ``subset(indices)`` copied into ``part``, as trained there."""
        chosen = torch.tensor(indices, device=self.device)
        for mine, theirs in zip(self._state(), part._state(), strict=True):
            mine.index_copy_(0, chosen, theirs)
        for new, old in enumerate(indices):
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
                self._step.fill_(self.counts[index] + 1)  # torch.optim counts the step before the kernel runs
                torch._fused_adamw_(  # type: ignore[attr-defined]
                    self.member_params[index], [g[index] for g in grads], self.member_exp_avg[index],
                    self.member_exp_avg_sq[index], [], self._steps, amsgrad=False, lr=lr, beta1=BETAS[0],
                    beta2=BETAS[1], weight_decay=decay, eps=EPS, maximize=False)
                self.counts[index] += 1

    def _elementwise_adamw(self, grads: list[torch.Tensor], lrs: list[float], decays: list[float]) -> None:
        """The same update as torch's, tensor-wide: every member at once, per-member step counts."""
        beta1, beta2 = BETAS
        for index, lr in enumerate(lrs):
            if lr > 0:
                self.counts[index] += 1
        # Bias corrections in double precision, as torch computes them from a Python step count: in
        # float32, 1 - 0.999**t loses four digits early on and the runs drift apart.
        steps = [max(1, count) for count in self.counts]
        rows = torch.tensor([[lr / (1 - beta1 ** t) for lr, t in zip(lrs, steps, strict=True)],
                             [math.sqrt(1 - beta2 ** t) for t in steps], lrs, decays], dtype=torch.float64)
        # One copy to the device for the whole step, queued without waiting for the device.
        step3, correction3, lr3, decay3 = rows.to(self.device, torch.float32, non_blocking=True).view(4, -1, 1, 1)
        # A member that does not run has lr 0: its weights stay; its moments change, but load() clears
        # them before a slot's next member starts, and a diverged member is never updated again.
        for param, grad, exp_avg, exp_avg_sq in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            param.mul_(1 - lr3 * decay3)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = exp_avg_sq.sqrt().div_(correction3).add_(EPS)
            param.addcdiv_(exp_avg * step3, denom, value=-1)
