from __future__ import annotations

import torch

from hpsearch.models import MLP, build_model, count_parameters


def test_reference_mlp_has_235146_parameters() -> None:
    assert count_parameters(MLP(784, 10, (256, 128))) == 235_146


def test_mlp_sizes_itself_to_the_input_and_classes() -> None:
    model = build_model("mlp", 64, 7, (32,))
    assert model(torch.zeros(5, 64)).shape == (5, 7)
    assert count_parameters(model) == 64 * 32 + 32 + 32 * 7 + 7
