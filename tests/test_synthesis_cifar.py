"""Class visualisation on real images: a small model trained on a 5,000-image CIFAR-10 subset.

Skipped when ../shared/data is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

import convscope
from convscope.inspect.synthesis import class_images

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def cifar_model(cifar_subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("cifar_synthesis")
    return convscope.train(f"folder:{cifar_subset}", model="convnet:width=16", epochs=2,
                           out=str(out), progress=False, verbose=False)


def test_every_cifar_class_becomes_top1_with_the_default_recipe(cifar_model):
    clf = cifar_model
    res = class_images(clf, clf.classes, progress=False)
    proba = clf.predict_proba(res.uint8())
    assert list(proba.argmax(1)) == list(range(10))
    assert proba[np.arange(10), np.arange(10)].min() > 0.9, proba.diagonal()
    img = res.uint8().float() / 255
    assert res.images.shape == (10, 3, 32, 32) and float(img.std()) > 0.05
