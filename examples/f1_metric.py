"""Your own metrics: ``f(outputs, targets) -> dict[str, float]`` on the whole validation set each epoch.

Name it with ``--metrics``; each epoch's history then holds its values beside val_loss and val_acc,
and ``--metric NAME --direction maximize`` makes a study optimize one of them::

    hpsearch run --metrics examples/f1_metric.py:metrics --metric macro_f1 --direction maximize

hpsearch concatenates the model's outputs (float32, shape (N, classes)) and the targets of every
validation batch first, so a score that is not a mean over samples (F1, AUROC) is the set's, not an
average of the batches'. The function is called once before the first trial, on a fresh model's
outputs for a few samples: one that raises or returns no dict stops the run with one line.
"""

from __future__ import annotations

import torch
from sklearn.metrics import f1_score


def metrics(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Macro-F1 (the mean of the classes' F1 scores, so a rare class counts as much as a common one) and
    top-3 accuracy (the label among the three highest outputs)."""
    predicted = outputs.argmax(dim=1)
    top3 = (outputs.topk(min(3, outputs.shape[1]), dim=1).indices == targets[:, None]).any(dim=1)
    return {"macro_f1": float(f1_score(targets.cpu(), predicted.cpu(), average="macro")),
            "top3_acc": float(top3.float().mean())}
