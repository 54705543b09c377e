"""Deletion and insertion curves: by hand on a linear model, and on a trained convnet the maps
beat a random map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convscope.classifier import Classifier
from convscope.errors import UsageError
from convscope.inspect.faithfulness import FaithfulnessResult, faithfulness, perturbation_curves
from convscope.modelfile import ModelMeta


def linear_classifier() -> Classifier:
    """Class 0's logit is 1*x0 + 2*x1 + 3*x2 + 4*x3 on a 2x2 image, class 1's is 0, so
    P(class 0) = sigmoid(w . x).  Normalising is the identity (mean 0, std 1/255)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]))
    meta = ModelMeta(model="linear", options={}, classes=["a", "b"], channels=1,
                     image_size=[2, 2], input_size=[2, 2], mean=[0.0], std=[1 / 255])
    return Classifier(net, meta)


def test_curves_by_hand():
    clf = linear_classifier()
    image = torch.tensor([[[[1.0, 1.0], [-1.0, 0.5]]]])     # w . x = 1 + 2 - 3 + 2 = 2
    black = torch.zeros_like(image)
    importance = torch.tensor([[[0.1, 0.9], [0.5, 0.2]]])   # order: x1, x2, x3, x0
    target = torch.tensor([0])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    deletion = perturbation_curves(clf, image, black, importance, target, steps=4)
    # delete x1 (w.x: 2 -> 0), then x2 (-> 3), then x3 (-> 1), then x0 (-> 0)
    np.testing.assert_allclose(deletion[0], sig(np.array([2, 0, 3, 1, 0])), rtol=1e-6)
    insertion = perturbation_curves(clf, black, image, importance, target, steps=2)
    # insert x1 and x2 (w.x = 2 - 3), then all
    np.testing.assert_allclose(insertion[0], sig(np.array([0, -1, 2])), rtol=1e-6)

    result = FaithfulnessResult(None, np.linspace(0, 1, 5), {"m": np.vstack([deletion] * 2)},
                                {"m": np.vstack([deletion] * 2)})
    d = sig(np.array([2, 0, 3, 1, 0]))
    expected = sum((d[i] + d[i + 1]) / 2 * 0.25 for i in range(4))
    mean, sem = result.auc("deletion")["m"]
    assert mean == pytest.approx(expected) and sem == pytest.approx(0)


@pytest.mark.slow
def test_occlusion_and_gradcam_beat_a_random_map_on_deletion(mnist_model):
    r = faithfulness(mnist_model, "mnist5k", n=24, steps=8, methods=("occlusion", "gradcam"))
    auc = r.auc("deletion")
    assert set(auc) == {"occlusion", "gradcam", "random"}
    for m in ("occlusion", "gradcam"):
        assert auc[m][0] < auc["random"][0] - 0.05, r.format()
    table = r.format().splitlines()
    assert "deletion AUC" in table[0] and [t.split()[0] for t in table[1:]] == [
        "occlusion", "gradcam", "random"]
    # deleting everything ends at the same black image for every method
    ends = [c[:, -1] for c in r.deletion.values()]
    assert all(np.allclose(e, ends[0]) for e in ends)
    d = r.to_dict()
    assert d["n"] == 24 and d["config"]["steps"] == 8
    assert d["resolved"]["gradcam"]["layer"] == "pool2"
    assert d["resolved"]["occlusion"]["window"] == 4


def test_bad_options(digits_model):
    with pytest.raises(UsageError, match="unknown attribution method 'lime'"):
        faithfulness(digits_model, "digits", n=2, methods=("lime",))
    with pytest.raises(UsageError, match="at least one method"):
        faithfulness(digits_model, "digits", n=2, methods=())


def test_any_images_will_do_since_the_target_is_the_prediction(digits_model):
    # RGB 12x12 images of 3 classes, scored by an 8x8 grayscale 10-class model
    r = faithfulness(digits_model, "fake:size=12,channels=3,classes=3", n=4, steps=2,
                     methods=("saliency",))
    assert r.deletion["saliency"].shape == (4, 3) and set(r.methods) == {"saliency", "random"}
    import dataclasses

    import convscope

    clf = convscope.load(digits_model)
    clf.meta = dataclasses.replace(clf.meta, dataset="arrays")
    with pytest.raises(UsageError, match="trained on arrays.*pass a dataset as `data`"):
        faithfulness(clf, n=2)
