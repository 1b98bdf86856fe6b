"""Pre-flight checks of a training setup, the practitioner's checklist before tuning anything.

Each check measures one thing about the data, the model, the loss or the optimizer as the training
engine would use them, compares it with what a healthy setup shows, and says what a failure usually
means and what to try. A search on a setup that fails one of these would return a confident answer
about a broken model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.config import TrainConfig
from hpsearch.data import Data
from hpsearch.models import build_model
from hpsearch.training import make_optimizer

__all__ = ["FAIL", "PASS", "QUICK_CHECKS", "WARN", "CheckResult", "run_checks"]

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
# Relative errors of backprop against finite differences, as the textbook (CS231n) grades them.
# The textbook calls < 1e-7 fine; ReLU kinks and float64 round-off of a difference quotient reach
# ~1e-6 on a correct model, so PASS goes up to GRADCHECK_PASS. Gradients below GRADIENT_FLOOR are
# compared absolutely: their difference quotients are mostly round-off.
GRADCHECK_FINE, GRADCHECK_PASS, GRADCHECK_WRONG = 1e-7, 1e-5, 1e-4
GRADIENT_FLOOR, DIFFERENCE_STEP = 1e-4, 1e-5
OVERFIT_EXAMPLES, OVERFIT_STEPS, OVERFIT_LR, OVERFIT_TARGET = 8, 300, 1e-2, 0.05
RATIO_LOW, RATIO_HIGH = 1e-5, 1e-2


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome with the measured and expected values and plain advice."""

    name: str
    outcome: str
    measured: str
    expected: str
    meaning: str = ""
    advice: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def check_data(config: TrainConfig, data: Data) -> CheckResult:
    """Shapes, finite values, label range, class balance and the training split's normalization."""
    x, y, c = data.x_train, data.y_train, data.num_classes
    problems, warnings = [], []
    if x.ndim != 2 or len(x) != len(y) or data.x_val.shape[1:] != x.shape[1:]:
        problems.append(f"shapes x {tuple(x.shape)}, y {tuple(y.shape)}, x_val {tuple(data.x_val.shape)}")
    if not bool(torch.isfinite(x).all()):
        problems.append("NaN or infinite features")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= c):
        problems.append(f"labels {int(y.min())}..{int(y.max())} outside 0..{c - 1}")
    counts = torch.bincount(y.clamp(0, c - 1), minlength=c).float()
    smallest = float(counts.min() / counts.sum()) if counts.sum() > 0 else 0.0
    if smallest < 1 / (5 * c):
        warnings.append(f"smallest class {smallest:.1%} of samples")
    mean, std = float(x.mean()), float(x.std())
    if abs(mean) > 0.5 or not 0.5 <= std <= 2:
        warnings.append(f"features mean {mean:.2f}, std {std:.2f}")
    measured = "; ".join(problems + warnings) or f"{len(x)}x{x.shape[1]}, {c} classes, mean {mean:.2f}, std {std:.2f}"
    outcome = FAIL if problems else WARN if warnings else PASS
    return CheckResult("data", outcome, measured, f"finite, labels 0..{c - 1}, each class >= {1 / (5 * c):.1%}, "
                       "mean ~0 and std ~1", "broken inputs or labels train a model that learns nothing useful",
                       "check the loader, the label encoding and the normalization")


def check_initial_loss(config: TrainConfig, data: Data) -> CheckResult:
    """At initialization the loss should be near log(C): the model has no preference yet."""
    model = _model(config, data)
    with torch.no_grad():
        loss = float(F.cross_entropy(model(data.x_train[:512]), data.y_train[:512]))
    expected = math.log(data.num_classes)
    ratio = loss / expected if math.isfinite(loss) else math.inf
    outcome = PASS if 0.8 <= ratio <= 1.25 else WARN if 0.5 <= ratio <= 2 else FAIL
    return CheckResult("initial loss", outcome, f"{loss:.4g}", f"~log({data.num_classes}) = {expected:.4g}",
                       "far from log(C): a bad initialization scale, inputs not normalized, or a wrong loss",
                       "check the output layer's scale and that the loss gets raw logits")


def check_weight_decay(config: TrainConfig, data: Data) -> CheckResult:
    """The engine's optimizer with weight decay must shrink the weights more than without it."""
    norms = []
    for decay in (0.0, 0.5):
        model = _model(config, data)
        optimizer = make_optimizer(model, config.replace(weight_decay=decay, lr=1e-3), data.x_train.device)
        for start in range(0, 5 * 32, 32):
            loss = F.cross_entropy(model(data.x_train[start:start + 32]), data.y_train[start:start + 32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        norms.append(float(torch.sqrt(sum((p.detach() ** 2).sum() for p in model.parameters()))))
    changed = norms[1] < norms[0] * (1 - 1e-4)
    return CheckResult("weight decay", PASS if changed else FAIL,
                       f"weight norm {norms[1]:.6g} with decay 0.5, {norms[0]:.6g} without",
                       "smaller with decay", "weight decay is never applied: searching it is searching noise",
                       "check that the optimizer receives weight_decay")


def check_gradients(config: TrainConfig, data: Data) -> CheckResult:
    """Backprop against centered finite differences in float64 on a small copy of the model."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, data.input_dim, data.num_classes, [4 for _ in config.hidden]).double()
    x, y = data.x_train[:4].double(), data.y_train[:4]
    loss = F.cross_entropy(model(x), y)
    model.zero_grad()
    loss.backward()
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            analytic = param.grad if param.grad is not None else torch.zeros_like(param)
            flat = param.view(-1)
            for index in torch.randperm(flat.numel(), generator=generator)[:20].tolist():
                numeric = _centered_difference(lambda: float(F.cross_entropy(model(x), y)), flat, index)
                a = float(analytic.view(-1)[index])
                worst = max(worst, abs(a - numeric) / max(abs(a) + abs(numeric), GRADIENT_FLOOR))
    outcome = PASS if worst < GRADCHECK_PASS else WARN if worst < GRADCHECK_WRONG else FAIL
    return CheckResult("gradients", outcome, f"max relative error {worst:.2g}",
                       f"< {GRADCHECK_PASS:g} (textbook {GRADCHECK_FINE:g}; ReLU kinks and round-off add ~1e-6), "
                       f"> {GRADCHECK_WRONG:g} wrong",
                       "backprop disagrees with the function: a detached layer, an in-place op or a custom op",
                       "look for .detach(), .data or numpy round trips in the forward pass")


def check_overfit(config: TrainConfig, data: Data) -> CheckResult:
    """A healthy model drives the loss on 8 examples to near zero within a few hundred steps."""
    model = _model(config, data)
    x, y = data.x_train[:OVERFIT_EXAMPLES], data.y_train[:OVERFIT_EXAMPLES]
    optimizer = torch.optim.Adam(model.parameters(), lr=OVERFIT_LR)
    loss, steps = math.inf, 0
    while steps < OVERFIT_STEPS and loss >= OVERFIT_TARGET:
        output = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        output.backward()
        optimizer.step()
        loss, steps = float(output.detach()), steps + 1
    outcome = PASS if loss < OVERFIT_TARGET else FAIL
    return CheckResult("overfit one batch", outcome, f"loss {loss:.3g} after {steps} steps",
                       f"< {OVERFIT_TARGET} within {OVERFIT_STEPS} steps (Adam, lr {OVERFIT_LR})",
                       "the model cannot memorize 8 examples: dead units, outputs squashed before the loss, or "
                       "labels that do not match inputs", "check activations, the output layer and the loss inputs")


def check_update_ratio(config: TrainConfig, data: Data) -> CheckResult:
    """Size of each step's update relative to the weights at the configured lr (healthy near 1e-3)."""
    model = _model(config, data)
    optimizer = make_optimizer(model, config, data.x_train.device)
    ratios = []
    for start in range(0, 10 * config.batch_size, config.batch_size):
        before = [p.detach().clone() for p in model.parameters()]
        index = torch.arange(start, start + config.batch_size, device=data.x_train.device) % data.n_train
        loss = F.cross_entropy(model(data.x_train[index]), data.y_train[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        update = math.sqrt(sum(float(((p.detach() - b) ** 2).sum()) for p, b in zip(model.parameters(), before,
                                                                                     strict=True)))
        weight = math.sqrt(sum(float((b ** 2).sum()) for b in before))
        ratios.append(update / max(weight, 1e-12))
    ratio = sum(ratios) / len(ratios)
    outcome = PASS if RATIO_LOW <= ratio <= RATIO_HIGH else WARN
    return CheckResult("update/weight ratio", outcome, f"{ratio:.2g} at lr {config.lr:g}",
                       f"~1e-3 ({RATIO_LOW:g} to {RATIO_HIGH:g})",
                       "too small: the lr barely moves the weights; too large: it may overshoot and diverge",
                       "search an lr range around where this ratio is ~1e-3 (see hpsearch lr-find)")


Check = Callable[[TrainConfig, Data], CheckResult]
ALL_CHECKS: tuple[Check, ...] = (check_data, check_initial_loss, check_weight_decay, check_gradients, check_overfit,
                                 check_update_ratio)
# Those `hpsearch run` does before its first trial: a second or two on the reference model.
QUICK_CHECKS: tuple[Check, ...] = (check_data, check_initial_loss, check_gradients, check_overfit)


def run_checks(config: TrainConfig, data: Data, checks: tuple[Check, ...] = ALL_CHECKS) -> list[CheckResult]:
    """Run ``checks`` in order on the device the data is on. Every one runs, even after a failure,
    except after a failed data check: the others would only trip over the same broken data."""
    results = []
    for check in checks:
        results.append(check(config, data))
        if check is check_data and results[-1].outcome == FAIL:
            break
    return results


def _model(config: TrainConfig, data: Data) -> nn.Module:
    torch.manual_seed(config.seed)
    return build_model(config.model, data.input_dim, data.num_classes, config.hidden).to(data.x_train.device)


def _centered_difference(loss: Callable[[], float], flat: torch.Tensor, index: int,
                         step: float = DIFFERENCE_STEP) -> float:
    original = float(flat[index])
    flat[index] = original + step
    plus = loss()
    flat[index] = original - step
    minus = loss()
    flat[index] = original
    return (plus - minus) / (2 * step)
