"""Shared by the look-inside tests: the trained MNIST model and data, and any module as a
Classifier."""

from __future__ import annotations

import pytest
from torch import nn

import convscope
from convscope.classifier import Classifier
from convscope.modelfile import ModelMeta


def wrap(model: nn.Module, channels: int, image: int, net_input: int | None = None,
         classes: int = 2) -> Classifier:
    """Any module as a Classifier (its input resized from ``image`` to ``net_input``)."""
    meta = ModelMeta(model="custom", options={}, classes=[str(i) for i in range(classes)],
                     channels=channels, image_size=[image, image],
                     input_size=[net_input or image] * 2, mean=[0.5] * channels,
                     std=[0.25] * channels)
    return Classifier(model.eval(), meta)


@pytest.fixture(scope="module")
def mnist(mnist_model):
    return convscope.load(mnist_model)


@pytest.fixture(scope="module")
def mnist_data():
    return convscope.load_dataset("mnist5k")

