"""The segmenters by name: one training step on fake-masks (255 ignored), class-index
outputs, --weights FILE and the packaged backbone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convscope.data import load_dataset
from convscope.errors import UsageError
from convscope.models import ModelInput, build_model
from convscope.models.pretrained import PRETRAINED
from convscope.models.segmentation import segmentation_loss, segmentation_outputs

SEGMENTERS = ["fcn", "deeplabv3", "lraspp", "fcn:aux=true"]


@pytest.fixture(scope="module")
def masks():
    return load_dataset("fake-masks", task="segment")


def _inp(ds, channels=None) -> ModelInput:
    return ModelInput(channels or ds.channels, ds.num_classes,
                      tuple(ds.train.images[0].shape[1:]))


@pytest.mark.parametrize("name", SEGMENTERS)
def test_each_segmenter_trains_a_step_and_segments(masks, name):
    torch.manual_seed(0)
    model = build_model(name, _inp(masks), task="segment").train()
    x, y = torch.stack(masks.train.images[:2]), torch.stack(masks.train.masks[:2])
    loss = segmentation_loss(model, x, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    out = segmentation_outputs(model, x)
    assert model.training
    assert out.shape == y.shape and out.dtype == torch.int64
    assert 0 <= out.min() and out.max() < masks.num_classes
    assert ("aux" in model(x.float() / 255)) == name.endswith("aux=true")


def test_ignored_pixels_do_not_count(masks):
    torch.manual_seed(0)
    model = build_model("lraspp", _inp(masks), task="segment").eval()
    x, y = torch.stack(masks.train.images[:2]), torch.stack(masks.train.masks[:2]).long()
    y[:, :, :20] = 255
    with torch.no_grad():
        scores = model(x.float() / 255)["out"]
        loss = segmentation_loss(model, x, y)
    keep = y != 255
    expected = F.cross_entropy(scores.permute(0, 2, 3, 1)[keep], y[keep])
    assert torch.allclose(loss, expected, atol=1e-5)


def test_weights_file_round_trip_keeps_torchvisions_names(masks, tmp_path):
    inp = _inp(masks, channels=1)
    model = build_model("deeplabv3", inp, task="segment").eval()
    sd = model.state_dict()
    assert not {"mean", "std"} & set(sd)  # the normalisation is no weight
    assert {k.partition(".")[0] for k in sd} == {"backbone", "classifier"}
    torch.save(sd, tmp_path / "seg.pt")
    again = build_model("deeplabv3", inp, weights=str(tmp_path / "seg.pt"), task="segment")
    x = torch.rand(2, 1, *inp.image_size)
    with torch.no_grad():
        assert torch.equal(model(x)["out"], again.eval()(x)["out"])


def test_the_packaged_backbone_carries_its_weights():
    if not PRETRAINED["efficientnet-lite0"].installed:
        pytest.skip("efficientnet-lite0's packages are not installed")
    lite = PRETRAINED["efficientnet-lite0"].open()
    model = build_model("lraspp:backbone=efficientnet-lite0", ModelInput(3, 11, (96, 96)),
                        weights="pretrained", task="segment")
    assert torch.equal(model.backbone.stem_conv.weight, lite.stem_conv.weight)
    assert torch.equal(model.backbone.get_submodule("blocks.10.depthwise_bn").running_var,
                       lite.blocks[10].depthwise_bn.running_var)
    layers = dict(model.backbone.named_modules())
    assert "blocks.10" in layers and "blocks.11" not in layers  # stride 16 is the last map


def test_lraspp_reads_its_low_level_branch_at_stride_4_or_8():
    x = torch.rand(1, 1, 64, 96)
    for backbone in ("mobilenet-v3-large", "resnet18"):
        for stride in (4, 8):
            model = build_model(f"lraspp:backbone={backbone},low_stride={stride}",
                                ModelInput(1, 3, (96, 96)), task="segment").eval()
            maps = model.backbone(x)
            assert maps["low"].shape[-2:] == (64 // stride, 96 // stride)
            assert maps["high"].shape[-2:] == (4, 6)
            assert model(x)["out"].shape == (1, 3, 64, 96)
    with pytest.raises(UsageError, match="`low_stride` must be 4 or 8"):
        build_model("lraspp:low_stride=16", ModelInput(1, 3, (96, 96)), task="segment")
