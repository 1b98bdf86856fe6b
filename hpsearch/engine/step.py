"""The forward / loss / backward / step sequence, written once: training, the LR test and the checks use it.

Mixed precision lives here too: ``bf16`` and ``fp16`` run the forward pass under autocast (the loss is
computed in float32 from the model's output), and ``fp16`` scales the loss with a GradScaler so that
small gradients do not underflow. fp16 needs a GPU: torch's CPU autocast has no float16 kernels worth
training with.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.task import LossFunction, MetricsFunction, build_loss, build_optimizer, check_precision

__all__ = ["Stepper", "autocast", "evaluate"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Autocast for ``precision`` on ``device`` (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    check_precision(precision, device)
    return torch.autocast(device.type, dtype=_DTYPES[precision])


class Stepper:
    """One optimizer step on a batch for ``model`` with the config's loss, optimizer, clipping and precision."""

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device,
                 optimizer: torch.optim.Optimizer | None = None, loss: LossFunction | None = None) -> None:
        self.model = model
        self.config = config
        self.device = device
        self.loss_function = loss or build_loss(config)
        self._optimizer = optimizer
        self._params: list[nn.Parameter] | None = None  # those that train, found at the first step
        check_precision(config.precision, device)  # refuse fp16 on a CPU before the first step
        self.scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """Built on first use: a stepper that only measures losses (the checks) needs none."""
        if self._optimizer is None:
            self._optimizer = build_optimizer(self.model, self.config, self.device)
        return self._optimizer

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of a batch, forward under the config's precision, the loss itself in float32."""
        if self.config.precision == "fp32":  # the hot path: no context manager per step
            return self.loss_function(self.model(x), y)
        with autocast(self.config.precision, self.device):
            output = self.model(x)
        return self.loss_function(_full_precision(output), y)

    def step(self, x: torch.Tensor, y: torch.Tensor, clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward, optional global-norm clip, step; returns the loss and the pre-clip gradient norm
        (as tensors, unsynced: reading them would synchronize a GPU every step)."""
        optimizer = self.optimizer
        loss = self.forward_loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
        else:
            loss.backward()
        if self._params is None:
            self._params = [p for p in self.model.parameters() if p.requires_grad]
        params = [p for p in self._params if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        if clip is not None:
            torch.nn.utils.clip_grads_with_norm_(params, clip, grad_norm, foreach=True)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        return loss.detach(), grad_norm


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], loss: LossFunction,
             precision: str, device: torch.device, classification: bool, metrics: MetricsFunction | None = None,
             ) -> tuple[float, float, dict[str, float]]:
    """Mean loss and accuracy (NaN for a regression) over ``batches``, in eval mode, and ``metrics`` of the
    outputs and targets of all the batches at once (so that F1 or AUROC are the set's, not a mean of batches')."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    outputs: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    try:
        for x, y in batches:
            with autocast(precision, device):
                output = model(x)
            output = _full_precision(output)
            loss_sum += loss(output, y) * len(x)
            if classification:
                correct += (output.argmax(dim=1) == y).sum()
            count += len(x)
            if metrics is not None:
                outputs.append(output)
                targets.append(y)
    finally:
        model.train()
    values = metrics(torch.cat(outputs), torch.cat(targets)) if metrics is not None else {}
    return loss_sum.item() / count, correct.item() / count if classification else math.nan, values


def _full_precision(output: torch.Tensor) -> torch.Tensor:
    """An autocast output (bf16, fp16) as float32 for the loss; float32 and float64 as they are."""
    return output.float() if output.dtype in (torch.float16, torch.bfloat16) else output
