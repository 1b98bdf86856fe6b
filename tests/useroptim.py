"""A practitioner's own optimizer factories and metrics functions, as tests copy them into a temporary folder:
healthy ones and broken ones. Not imported by the tests directly: they name it as ``useroptim.py:attr``.
"""

from __future__ import annotations

import os

import torch
from sklearn.metrics import f1_score


def rmsprop(params, lr, weight_decay, alpha=0.99, momentum=0.0):
    """RMSprop; logs each alpha it is built with when USEROPTIM_LOG names a file."""
    if "USEROPTIM_LOG" in os.environ:
        with open(os.environ["USEROPTIM_LOG"], "a") as log:
            log.write(f"{alpha}\n")
    return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, alpha=alpha, momentum=momentum)


def no_decay_on_biases(params, lr, weight_decay):
    """AdamW with weight decay on the weights (2-D and up) and none on biases and norm scales (1-D)."""
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def ignores_weight_decay(params, lr, weight_decay):
    return torch.optim.SGD(params, lr=lr)


def raises(params, lr, weight_decay):
    raise ValueError("lion needs a GPU")


def returns_none(params, lr, weight_decay):
    return None


def macro_f1(outputs, targets):
    """Macro-F1 and how many samples it saw, of whatever outputs and targets it is given."""
    predicted = outputs.argmax(dim=1).cpu().numpy()
    return {"macro_f1": f1_score(targets.cpu().numpy(), predicted, average="macro"), "samples": len(targets)}


def metrics_list(outputs, targets):
    return [0.5]


def metrics_raises(outputs, targets):
    raise RuntimeError("no positive class")


def metrics_named_val_acc(outputs, targets):
    return {"val_acc": 1.0}


def metrics_text(outputs, targets):
    return {"macro_f1": "high"}
