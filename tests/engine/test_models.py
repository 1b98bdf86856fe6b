from __future__ import annotations

import pytest
import torch

from hpsearch.engine.models import CNN, MLP, count_parameters


def test_reference_mlp_has_235146_parameters() -> None:
    assert count_parameters(MLP(784, 10, (256, 128))) == 235_146


def test_mlp_flattens_samples_of_any_shape_and_sizes_itself_to_them() -> None:
    model = MLP((1, 8, 8), 7, "32")
    assert model(torch.zeros(5, 1, 8, 8)).shape == (5, 7)
    assert count_parameters(model) == 64 * 32 + 32 + 32 * 7 + 7


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_cnn_takes_digits_mnist_and_cifar_shaped_images(shape: tuple[int, int, int]) -> None:
    model = CNN(shape, 10, width=8)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_cnn_refuses_flat_samples() -> None:
    with pytest.raises(ValueError, match=r"cnn needs samples of shape \(channels, height, width\), got \(64,\)"):
        CNN((64,), 10)
