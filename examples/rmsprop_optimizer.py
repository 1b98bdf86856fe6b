"""Your own optimizer: a factory ``f(params, lr, weight_decay, **optimizer_args) -> torch.optim.Optimizer``.

Name it on the command line as an entry point, as a model or a loss is named::

    hpsearch train --optimizer examples/rmsprop_optimizer.py:rmsprop --optimizer-arg alpha=0.95 --lr 2e-3

hpsearch calls the factory once per run (and in the checks and the LR range test) with ``params``, the
model's trainable parameters as a list in ``model.parameters()`` order, the run's ``lr`` and
``weight_decay``, and ``optimizer_args`` as keywords: ``--optimizer-arg NAME=VALUE``, a spec's
``[optimizer_args]`` (fixed) or ``[space.optimizer_args]`` (searched, as ``optimizer_args.NAME``).
Schedules scale the lr of every parameter group. ``studies/rmsprop.toml`` searches ``alpha``.
"""

from __future__ import annotations

import torch
from torch import nn


def rmsprop(params: list[nn.Parameter], lr: float, weight_decay: float, alpha: float = 0.99,
            momentum: float = 0.0) -> torch.optim.Optimizer:
    """torch's RMSprop: each coordinate's step is the gradient over a running RMS of the gradients, whose
    decay is ``alpha``; weight decay is L2, added to the gradient."""
    return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, alpha=alpha, momentum=momentum)


def adamw_no_decay_on_biases(params: list[nn.Parameter], lr: float, weight_decay: float,
                             beta2: float = 0.999) -> torch.optim.Optimizer:
    """AdamW in two parameter groups: weight decay on the weights of linear and conv layers (2-D and up),
    none on biases and norm scales (1-D), which it would only pull towards zero for no gain in
    regularization; the rule nanoGPT and timm use."""
    decayed = [p for p in params if p.ndim >= 2]
    kept = [p for p in params if p.ndim < 2]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, beta2))
