"""The stacked MLP's arithmetic: its written-out gradients are autograd's, and subsets go back where they came from."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hpsearch.engine.models import MLP
from hpsearch.engine.stacked_mlp import StackedMLP

SHAPES = [(16, 12), (8, 16), (5, 8)]  # 12 features -> 16 -> 8 -> 5 classes


def stack_of(models: list[MLP]) -> StackedMLP:
    stack = StackedMLP(list(range(len(models))), SHAPES, torch.device("cpu"))
    for index, model in enumerate(models):
        stack.load(index, model)
    return stack


def test_written_out_gradients_equal_autograd_s_for_every_member() -> None:
    torch.manual_seed(0)
    models = [MLP(12, 5, (16, 8)) for _ in range(3)]
    x, y = torch.randn(3, 7, 12), torch.randint(0, 5, (3, 7))
    losses, grads = stack_of(models).loss_and_grads(x, y)
    for index, model in enumerate(models):
        loss = F.cross_entropy(model(x[index]), y[index])
        loss.backward()
        assert losses[index].item() == pytest.approx(loss.item(), abs=1e-6)
        expected = [p.grad for p in model.parameters()]  # weight, bias of each layer, as params are ordered
        for mine, theirs in zip(grads, expected, strict=True):
            torch.testing.assert_close(mine[index].reshape(theirs.shape), theirs, atol=1e-6, rtol=1e-5)


def test_a_subset_trains_alone_and_is_written_back_to_its_own_members_only() -> None:
    torch.manual_seed(1)
    stack = stack_of([MLP(12, 5, (16, 8)) for _ in range(3)])
    before = [p.clone() for p in stack.params]
    part = stack.subset([2, 0])
    assert part.slots == [2, 0]
    torch.testing.assert_close(part.params[0][0], stack.params[0][2])
    part.step(torch.randn(2, 7, 12), torch.randint(0, 5, (2, 7)), lrs=[1e-2, 1e-2], decays=[0.0, 0.1], clip=None)
    stack.write_back(part, [2, 0])
    for now, then, trained in zip(stack.params, before, part.params, strict=True):
        torch.testing.assert_close(now[1], then[1])  # not in the subset: untouched
        torch.testing.assert_close(now[2], trained[0])
        torch.testing.assert_close(now[0], trained[1])
        assert not torch.equal(now[0], then[0])
    assert stack.counts == [1, 0, 1]
