"""Models by name; the reference is an MLP sized to the data (784-256-128-10 on MNIST)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

from torch import nn

__all__ = ["MLP", "MODELS", "build_model", "count_parameters"]


class MLP(nn.Sequential):
    """Fully connected ReLU network: ``input_dim → hidden… → num_classes`` logits."""

    def __init__(self, input_dim: int, num_classes: int, hidden: Sequence[int] = (256, 128)) -> None:
        widths = [input_dim, *hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in pairwise(widths):
            # In place: Linear's backward needs its inputs, not its output, so ReLU may overwrite it.
            layers += [nn.Linear(width_in, width_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-1], num_classes))
        super().__init__(*layers)


MODELS: dict[str, Callable[[int, int, Sequence[int]], nn.Module]] = {"mlp": MLP}


def build_model(name: str, input_dim: int, num_classes: int, hidden: Sequence[int]) -> nn.Module:
    """Instantiate a registered model for data of ``input_dim`` features and ``num_classes`` classes."""
    return MODELS[name](input_dim, num_classes, hidden)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
