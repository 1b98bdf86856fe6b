"""Pre-flight checks of a training setup, the practitioner's checklist before tuning anything.

Each check measures one thing about the data, the model, the loss or the optimizer as the training
engine would use them, compares it with what a healthy setup shows, and says what a failure usually
means and what to try. A search on a setup that fails one of these would return a confident answer
about a broken model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from hpsearch.engine.config import TrainConfig
from hpsearch.engine.data import Data, TaskData
from hpsearch.engine.step import Stepper
from hpsearch.engine.task import build_model, initial_loss_expected, is_classification

__all__ = ["FAIL", "PASS", "QUICK_CHECKS", "SKIP", "WARN", "CheckResult", "run_checks"]

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
# Relative errors of backprop against finite differences, as the textbook (CS231n) grades them.
# The textbook calls < 1e-7 fine; ReLU kinks and float64 round-off of a difference quotient reach
# ~1e-6 on a correct model, so PASS goes up to GRADCHECK_PASS. Gradients below GRADIENT_FLOOR are
# compared absolutely: their difference quotients are mostly round-off.
GRADCHECK_FINE, GRADCHECK_PASS, GRADCHECK_WRONG = 1e-7, 1e-5, 1e-4
GRADIENT_FLOOR, DIFFERENCE_STEP = 1e-4, 1e-5
# The gradient check perturbs this many coordinates of each parameter tensor, and of at most
# GRADCHECK_TENSORS tensors (spread over the model) when it has more: a large model is sampled.
GRADCHECK_COORDINATES, GRADCHECK_TENSORS = 20, 12
# Samples the data check reads when the data streams (a Dataset is not read whole for a check).
DATA_CHECK_SAMPLES = 2048
OVERFIT_EXAMPLES, OVERFIT_STEPS, OVERFIT_LR, OVERFIT_TARGET = 8, 300, 1e-2, 0.05
# The update/weight check: each parameter tensor's step over its size, averaged over UPDATE_STEPS steps, the
# largest of each kind judged. Adam and AdamW move every coordinate by about lr, so their ratio is about
# lr / rms(weight) whatever the gradients. SGD moves each coordinate by lr x its gradient, summed by momentum over
# up to 1 / (1 - momentum) steps, so its largest ratio sits where the first steps' gradients are largest (the output
# layer) and is larger at its own best lr: it has its own band. Measured by scripts/diagnosis_accuracy.py at the best
# lr of a small search and at ten times it (digits and synthetic MLPs, the README CNN): the largest weight ratio is
# 0.006-0.12 at the best lr and 0.24-0.49 at 10x with AdamW; 0.05-0.22 and 0.54-0.77 with SGD (momentum 0.9).
# Each upper bound sits between the two, near their geometric mean. One case it cannot catch: the synthetic MLP's
# best lr (3.2e-4) is 10x below digits' and 10x it still trains (val_loss 0.60 against 0.56); there its ratio, 0.05,
# is digits' at its best lr (the same output layer at the same lr), so no band on the ratio tells the two apart.
UPDATE_STEPS = 10
CONV, LINEAR, OTHERS = "conv weights", "linear weights", "biases and norm scales"  # the kinds judged apart
WEIGHTS_LOW, WEIGHTS_HIGH = 3e-4, 0.15  # conv and linear weights
SGD_WEIGHTS_HIGH = 0.35  # conv and linear weights under SGD
OTHERS_HIGH = 0.5  # biases and norm scales (no floor: a norm scale of 1 barely moves at any good lr)
ZERO_NORM = 1e-8  # a tensor this small (a bias initialized at zero) has no ratio


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


def check_data(config: TrainConfig, data: TaskData) -> CheckResult:
    """Shapes, finite values, label range, class balance and the training split's normalization (of the first
    DATA_CHECK_SAMPLES samples when the data streams)."""
    x, y = data.head(data.n_train if isinstance(data, Data) else DATA_CHECK_SAMPLES)
    classification, c = is_classification(config, data), data.num_classes
    problems, warnings = [], []
    if len(x) != len(y) or tuple(x.shape[1:]) != tuple(data.sample_shape):
        problems.append(f"shapes x {tuple(x.shape)}, y {tuple(y.shape)}, samples {tuple(data.sample_shape)}")
    if not bool(torch.isfinite(x.float()).all()):
        problems.append("NaN or infinite features")
    expected = "finite, mean ~0 and std ~1"
    if classification:
        expected = f"finite, labels 0..{c - 1}, each class >= {1 / (5 * c):.1%}, mean ~0 and std ~1"
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= c):
            problems.append(f"labels {int(y.min())}..{int(y.max())} outside 0..{c - 1}")
        counts = torch.bincount(y.long().clamp(0, c - 1), minlength=c).float()
        smallest = float(counts.min() / counts.sum()) if counts.sum() > 0 else 0.0
        if smallest < 1 / (5 * c):
            warnings.append(f"smallest class {smallest:.1%} of samples")
    elif not bool(torch.isfinite(y).all()):
        problems.append("NaN or infinite targets")
    mean, std = float(x.float().mean()), float(x.float().std())
    if abs(mean) > 0.5 or not 0.5 <= std <= 2:
        warnings.append(f"features mean {mean:.2f}, std {std:.2f}")
    kind = f"{c} classes" if classification else f"{c} target(s)"
    shape = "x".join(str(d) for d in (len(x), *data.sample_shape))
    measured = "; ".join(problems + warnings) or f"{shape}, {kind}, mean {mean:.2f}, std {std:.2f}"
    outcome = FAIL if problems else WARN if warnings else PASS
    return CheckResult("data", outcome, measured, expected,
                       "broken inputs or labels train a model that learns nothing useful",
                       "check the loader, the label encoding and the normalization")


def check_initial_loss(config: TrainConfig, data: TaskData) -> CheckResult:
    """At initialization the loss should be near its no-preference value: log(C) for cross-entropy, the
    targets' mean square for mse (a fresh model outputs about zero). Skipped for a custom loss."""
    x, y = data.head(512)
    known = initial_loss_expected(config, data, y)
    if known is None:
        return CheckResult("initial loss", SKIP, "-", "-", f"no expected start is known for the custom loss "
                           f"{config.loss!r}", "compare the first epoch's loss with what your loss should start at")
    expected, written = known
    stepper = Stepper(_model(config, data), config, data.device)
    with torch.no_grad():
        loss = float(stepper.forward_loss(x, y))
    ratio = loss / expected if math.isfinite(loss) and expected > 0 else math.inf
    outcome = PASS if 0.8 <= ratio <= 1.25 else WARN if 0.5 <= ratio <= 2 else FAIL
    return CheckResult("initial loss", outcome, f"{loss:.4g}", f"{written} = {expected:.4g}",
                       "far from it: a bad initialization scale, inputs not normalized, or a wrong loss",
                       "check the output layer's scale and that the loss gets raw outputs (logits)")


def check_weight_decay(config: TrainConfig, data: TaskData) -> CheckResult:
    """The engine's optimizer with weight decay must shrink the weights more than without it."""
    norms = []
    x, y = data.head(5 * 32)
    for decay in (0.0, 0.5):
        model = _model(config, data)
        stepper = Stepper(model, config.replace(weight_decay=decay, lr=1e-3), data.device)
        for start in range(0, len(x), 32):
            stepper.step(x[start:start + 32], y[start:start + 32])
        norms.append(float(torch.sqrt(sum((p.detach() ** 2).sum() for p in model.parameters()))))
    changed = norms[1] < norms[0] * (1 - 1e-4)
    return CheckResult("weight decay", PASS if changed else FAIL,
                       f"weight norm {norms[1]:.6g} with decay 0.5, {norms[0]:.6g} without",
                       "smaller with decay", "weight decay is never applied: searching it is searching noise",
                       "check that the optimizer receives weight_decay")


def check_gradients(config: TrainConfig, data: TaskData) -> CheckResult:
    """Backprop against centered finite differences in float64, on a copy of the model in eval mode (so
    batch norm and dropout are deterministic) with a batch of 4; a large model is sampled."""
    model = copy.deepcopy(_model(config, data)).double().eval()
    x, y = data.head(4)
    # A little noise breaks the exact ties of constant image backgrounds, where max pooling and ReLU have no
    # derivative and finite differences would disagree with any backprop; what is checked is the model.
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(x.device)
    x = x.double() + 1e-2 * noise
    y = y.double() if y.is_floating_point() else y
    fp64 = config.replace(precision="fp32", label_smoothing=0.0)
    stepper = Stepper(model, fp64, data.device)

    def loss() -> float:
        return float(stepper.forward_loss(x, y))

    model.zero_grad()
    stepper.forward_loss(x, y).backward()
    params = [p for p in model.parameters() if p.requires_grad]
    picked = params if len(params) <= GRADCHECK_TENSORS else [
        params[round(i * (len(params) - 1) / (GRADCHECK_TENSORS - 1))] for i in range(GRADCHECK_TENSORS)]
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in picked:
            analytic = param.grad if param.grad is not None else torch.zeros_like(param)
            flat = param.view(-1)
            for index in torch.randperm(flat.numel(), generator=generator)[:GRADCHECK_COORDINATES].tolist():
                numeric = _centered_difference(loss, flat, index)
                a = float(analytic.view(-1)[index])
                worst = max(worst, abs(a - numeric) / max(abs(a) + abs(numeric), GRADIENT_FLOOR))
    outcome = PASS if worst < GRADCHECK_PASS else WARN if worst < GRADCHECK_WRONG else FAIL
    sampled = (f" ({GRADCHECK_COORDINATES} coordinates in each of {len(picked)} of the {len(params)} parameter "
               f"tensors)") if len(picked) < len(params) else ""
    return CheckResult("gradients", outcome, f"max relative error {worst:.2g}{sampled}",
                       f"< {GRADCHECK_PASS:g} (textbook {GRADCHECK_FINE:g}; ReLU kinks and round-off add ~1e-6), "
                       f"> {GRADCHECK_WRONG:g} wrong",
                       "backprop disagrees with the function: a detached layer, an in-place op or a custom op",
                       "look for .detach(), .data or numpy round trips in the forward pass")


def check_overfit(config: TrainConfig, data: TaskData) -> CheckResult:
    """A healthy model drives the loss on 8 examples to near zero within a few hundred steps (for a loss
    with no known scale, to OVERFIT_TARGET of where it started)."""
    model = _model(config, data)
    x, y = data.head(OVERFIT_EXAMPLES)
    adam = config.replace(optimizer="adam", optimizer_args={}, lr=OVERFIT_LR, weight_decay=0.0, momentum=None,
                          nesterov=False, beta1=None, beta2=None, label_smoothing=0.0)
    stepper = Stepper(model, adam, data.device)
    relative = config.loss != "cross-entropy"
    loss, steps, target = math.inf, 0, OVERFIT_TARGET
    while steps < OVERFIT_STEPS and loss >= target:
        value = float(stepper.step(x, y)[0])
        if steps == 0 and relative:
            target = OVERFIT_TARGET * value
        loss, steps = value, steps + 1
    outcome = PASS if loss < target else FAIL
    goal = f"< {target:.3g}" + (f" ({OVERFIT_TARGET}x the first loss)" if relative else "")
    return CheckResult("overfit one batch", outcome, f"loss {loss:.3g} after {steps} steps",
                       f"{goal} within {OVERFIT_STEPS} steps (Adam, lr {OVERFIT_LR})",
                       "the model cannot memorize 8 examples: dead units, outputs squashed before the loss, or "
                       "labels that do not match inputs", "check activations, the output layer and the loss inputs")


def check_update_ratio(config: TrainConfig, data: TaskData) -> CheckResult:
    """Each step's update relative to the weights at the configured lr, per kind of parameter: the largest
    ratio among conv weights, among linear weights, among biases and norm scales. One global ratio would
    mix tensors of different scales (a norm scale of 1, a conv kernel of rms 0.05) and fire at good lrs."""
    ratios = _update_ratios(config, data)
    kinds: dict[str, tuple[float, str]] = {}
    for name, (kind, ratio) in ratios.items():
        if ratio > kinds.get(kind, (-1.0, ""))[0]:
            kinds[kind] = (ratio, name)
    weights_high = SGD_WEIGHTS_HIGH if config.optimizer == "sgd" else WEIGHTS_HIGH
    problems = [kind for kind, (ratio, _) in kinds.items()
                if ratio > (OTHERS_HIGH if kind == OTHERS else weights_high)
                or (kind != OTHERS and ratio < WEIGHTS_LOW)]
    scale = ("~lr per coordinate" if config.optimizer in ("adam", "adamw") else "lr x gradient"
             if config.optimizer == "sgd" else "by its own rule")
    measured = ", ".join(f"{kind} {ratio:.2g} ({name})" for kind, (ratio, name) in kinds.items())
    return CheckResult("update/weight ratio", WARN if problems else PASS,
                       f"largest step/weight per step at lr {config.lr:g} ({config.optimizer} moves {scale}): "
                       f"{measured}" + (f"; out of band: {', '.join(problems)}" if problems else ""),
                       f"weights {WEIGHTS_LOW:g} to {weights_high:g}, {OTHERS} <= {OTHERS_HIGH:g}",
                       "too small: the lr barely moves the weights; too large: it overshoots and may diverge or "
                       "collapse", "search an lr range around this one (see hpsearch lr-find)")


def _update_ratios(config: TrainConfig, data: TaskData) -> dict[str, tuple[str, float]]:
    """Per named parameter tensor: its kind and |update| / |weight| averaged over UPDATE_STEPS steps of the
    configured optimizer; tensors at zero (a bias initialized at 0) are left out."""
    model = _model(config, data)
    stepper = Stepper(model, config, data.device)
    x, y = data.head(UPDATE_STEPS * config.batch_size)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    sums = dict.fromkeys(params, 0.0)
    for start in range(0, UPDATE_STEPS * config.batch_size, config.batch_size):
        before = {name: p.detach().clone() for name, p in params.items()}
        index = torch.arange(start, start + config.batch_size, device=x.device) % len(x)
        stepper.step(x[index], y[index])
        for name, p in params.items():
            size = float(before[name].norm())
            sums[name] += float((p.detach() - before[name]).norm()) / size if size > ZERO_NORM else math.nan
    kind = {name: CONV if p.dim() > 2 else LINEAR if p.dim() == 2 else OTHERS for name, p in params.items()}
    return {name: (kind[name], total / UPDATE_STEPS) for name, total in sums.items() if math.isfinite(total)}


Check = Callable[[TrainConfig, TaskData], CheckResult]
ALL_CHECKS: tuple[Check, ...] = (check_data, check_initial_loss, check_weight_decay, check_gradients, check_overfit,
                                 check_update_ratio)
# Those `hpsearch run` does before its first trial: a second or two on the reference model.
QUICK_CHECKS: tuple[Check, ...] = (check_data, check_initial_loss, check_gradients, check_overfit)


def run_checks(config: TrainConfig, data: TaskData, checks: tuple[Check, ...] = ALL_CHECKS) -> list[CheckResult]:
    """Run ``checks`` in order on the device the data is on. Every one runs, even after a failure,
    except after a failed data check: the others would only trip over the same broken data."""
    results = []
    for check in checks:
        results.append(check(config, data))
        if check is check_data and results[-1].outcome == FAIL:
            break
    return results


def _model(config: TrainConfig, data: TaskData) -> nn.Module:
    torch.manual_seed(config.seed)
    return build_model(config, data)


def _centered_difference(loss: Callable[[], float], flat: torch.Tensor, index: int,
                         step: float = DIFFERENCE_STEP) -> float:
    original = float(flat[index])
    flat[index] = original + step
    plus = loss()
    flat[index] = original - step
    minus = loss()
    flat[index] = original
    return (plus - minus) / (2 * step)
