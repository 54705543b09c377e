"""The detectors by name: one training step on fake-boxes, eval outputs with 0-based labels,
the transform at the data's size, --weights FILE and the packaged backbone."""

from __future__ import annotations

import pytest
import torch

from convscope.data import load_dataset
from convscope.errors import ConvscopeError, UsageError
from convscope.models import ModelInput, build_model, get_entry
from convscope.models.detection import detection_loss, detection_losses, detection_outputs
from convscope.models.pretrained import PRETRAINED

DETECTORS = ["fasterrcnn", "retinanet", "fcos", "ssdlite"]


@pytest.fixture(scope="module")
def boxes():
    return load_dataset("fake-boxes", task="detect")


def _inp(ds, channels=None) -> ModelInput:
    return ModelInput(channels or ds.channels, ds.num_classes,
                      tuple(ds.train.images[0].shape[1:]))


@pytest.mark.parametrize("name", DETECTORS)
def test_each_detector_trains_a_step_and_detects(boxes, name):
    torch.manual_seed(0)
    model = build_model(name, _inp(boxes), task="detect")
    assert get_entry(name).task == "detect"
    images = boxes.train.images[:2]  # uint8: the helpers scale them to [0, 1]
    targets = [boxes.train.target(i) for i in range(2)]
    model.train()
    parts = detection_losses(model, images, targets)
    assert parts and all(v.ndim == 0 for v in parts.values())
    loss = sum(parts.values())
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    found = detection_outputs(model, images)
    assert model.training  # left as it was
    assert len(found) == 2
    for d in found:
        m = len(d["scores"])
        assert d["boxes"].shape == (m, 4) and d["labels"].shape == (m,)
        assert ((d["labels"] >= 0) & (d["labels"] < boxes.num_classes)).all()
        assert (d["scores"][:-1] >= d["scores"][1:]).all()


def test_labels_go_in_one_based_and_come_out_zero_based(boxes):
    """num_classes + 1 outputs with 0 the background: a dataset's label 0 is class 1 inside."""
    model = build_model("fasterrcnn", _inp(boxes), task="detect")
    assert model.roi_heads.box_predictor.cls_score.out_features == boxes.num_classes + 1
    seen = {}

    def spy(_module, args):
        seen["labels"] = [t["labels"] for t in args[1]]
    handle = model.register_forward_pre_hook(spy)
    try:
        detection_loss(model.train(), boxes.train.images[:1], [boxes.train.target(0)])
    finally:
        handle.remove()
    assert torch.equal(seen["labels"][0], boxes.train.labels[0] + 1)
    with pytest.raises(ConvscopeError, match=r"training mode \(`model.train\(\)`\)"):
        detection_loss(model.eval(), boxes.train.images[:1], [boxes.train.target(0)])


def test_the_transform_keeps_the_data_size_and_grey_images_pass():
    inp = ModelInput(1, 10, (96, 128))
    for name in DETECTORS:
        model = build_model(name, inp, task="detect").eval()
        t = model.transform
        assert (min(t.min_size), t.max_size) == (96, 128), name
        assert t.image_mean == [127 / 255] and t.image_std == [128 / 255]
        assert next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels == 1
    torch.manual_seed(0)
    found = detection_outputs(model, torch.rand(2, 1, 96, 128))  # the last, ssdlite
    assert len(found) == 2


def test_weights_file_round_trip_and_a_wrong_one(boxes, tmp_path):
    inp = _inp(boxes)
    torch.manual_seed(1)
    model = build_model("fasterrcnn", inp, task="detect")
    path = tmp_path / "detector.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(2)
    again = build_model("fasterrcnn", inp, weights=str(path), task="detect")
    x = boxes.test.images[:2]
    with torch.no_grad():
        a, b = model.eval()([i.float() / 255 for i in x]), again.eval()([i.float() / 255 for i in x])
    for d, e in zip(a, b):
        assert torch.equal(d["boxes"], e["boxes"]) and torch.equal(d["scores"], e["scores"])
    other = ModelInput(inp.channels, inp.num_classes + 3, inp.image_size)
    with pytest.raises(ConvscopeError) as info:
        build_model("fasterrcnn", other, weights=str(path), task="detect")
    text = str(info.value)
    assert text.startswith(f"the weights in {path} do not fit fasterrcnn: roi_heads.box_predictor")
    assert text.count(". ") == 0 and text.endswith("pass a state dict saved from fasterrcnn.")


def test_the_packaged_backbone_carries_its_weights():
    if not PRETRAINED["efficientnet-lite0"].installed:
        pytest.skip("efficientnet-lite0's packages are not installed")
    lite = PRETRAINED["efficientnet-lite0"].open()
    model = build_model("fasterrcnn:backbone=efficientnet-lite0", ModelInput(1, 10, (128, 128)),
                        weights="pretrained", task="detect")
    body = model.backbone.body
    assert torch.equal(body.get_submodule("blocks.7.project_conv").weight,
                       lite.blocks[7].project_conv.weight)
    # a grey image meets the RGB filters as if repeated on three channels
    assert torch.allclose(body.stem_conv.weight, lite.stem_conv.weight.sum(1, keepdim=True))
    assert not hasattr(body, "fc")  # only the layers the maps need


def test_packaged_weights_only_where_a_package_has_them():
    inp = ModelInput(3, 2, (64, 64))
    with pytest.raises(UsageError, match="only backbone efficientnet-lite0 has"):
        build_model("retinanet", inp, weights="pretrained", task="detect")
    with pytest.raises(UsageError, match="^ssdlite has no packaged weights"):
        build_model("ssdlite", inp, weights="pretrained", task="detect")


def test_the_pyramid_width_is_an_option():
    model = build_model("retinanet:fpn_channels=64", ModelInput(3, 2, (64, 64)), task="detect")
    assert model.backbone.out_channels == 64
    assert model.head.classification_head.conv[0][0].in_channels == 64
    with pytest.raises(UsageError, match=r"^`fpn_channels` must be 8 to 1024, got 4\.$"):
        build_model("fcos:fpn_channels=4", ModelInput(3, 2, (64, 64)), task="detect")
