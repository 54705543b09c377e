"""Transfer learning from a packaged network: fine-tuning, and the linear probe (--freeze)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import convscope
from convscope.errors import UsageError
from convscope.models import ModelInput, build_model
from convscope.models.pretrained import pretrained_entry
from convscope.samples import sample_path
from convscope.train import loop
from convscope.train.config import TrainConfig
from tests.conftest import run_cli

LITE = pretrained_entry("efficientnet-lite0")
pytestmark = pytest.mark.skipif(not LITE.installed, reason="efficientnet-lite0 not installed")
DATA = "fake:size=32,channels=3,classes=3,n=24,test=9"


@pytest.fixture(scope="module")
def packaged() -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in LITE.open().state_dict().items()}


def _backbone(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith("fc.")}


def test_pretrained_weights_start_from_the_package_with_a_new_head(packaged):
    net = build_model("efficientnet-lite0", ModelInput(3, 7, (32, 32)), weights="pretrained")
    sd = net.state_dict()
    assert sd["fc.weight"].shape == (7, 1280)
    assert _backbone(sd).keys() == _backbone(packaged).keys()
    for k, v in _backbone(sd).items():
        assert torch.equal(v, packaged[k]), k
    scratch = build_model("efficientnet-lite0", ModelInput(3, 7, (32, 32)))
    assert not torch.equal(scratch.state_dict()["stem_conv.weight"], packaged["stem_conv.weight"])


def test_grayscale_keeps_the_stems_same_padding(packaged):
    """The stem is rebuilt for one channel as the same conv class (EfficientNet pads 'same'
    inside it), from the mean of the RGB filters."""
    rgb = build_model("efficientnet-lite0", ModelInput(3, 2, (32, 32)), weights="pretrained")
    gray = build_model("efficientnet-lite0", ModelInput(1, 2, (32, 32)), weights="pretrained")
    assert type(gray.stem_conv) is type(rgb.stem_conv)
    assert gray.stem_conv.weight.shape == (32, 1, 3, 3)
    assert torch.allclose(gray.stem_conv.weight[:, 0], packaged["stem_conv.weight"].sum(1))
    x = torch.rand(1, 1, 32, 32)
    assert gray.stem_conv(x).shape == rgb.stem_conv(x.expand(1, 3, 32, 32)).shape


def test_freeze_trains_the_head_alone_and_keeps_batch_norm(tmp_path, packaged):
    clf = convscope.train(DATA, model="efficientnet-lite0", weights="pretrained", freeze=True,
                          epochs=2, batch_size=8, out=str(tmp_path), progress=False,
                          verbose=False)
    sd = load_file(tmp_path / "model.safetensors")
    for k, v in _backbone(sd).items():  # weights and running statistics alike
        assert torch.equal(v, packaged[k]), k
    assert clf.meta.mean == pytest.approx([127 / 255] * 3)  # the package's own (x - 127) / 128
    assert clf.meta.std == pytest.approx([128 / 255] * 3)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["freeze"] is True and config["weights"] == "pretrained"


def test_fine_tuning_moves_the_backbone(tmp_path, packaged):
    convscope.train(DATA, model="efficientnet-lite0", weights="pretrained", epochs=1,
                    batch_size=8, out=str(tmp_path), progress=False, verbose=False)
    sd = load_file(tmp_path / "model.safetensors")
    assert not torch.equal(sd["stem_conv.weight"], packaged["stem_conv.weight"])
    assert not torch.equal(sd["blocks.0.depthwise_bn.running_mean"],
                           packaged["blocks.0.depthwise_bn.running_mean"])


def test_a_frozen_run_resumed_gives_the_same_weights(tmp_path, monkeypatch):
    options = dict(model="efficientnet-lite0", weights="pretrained", freeze=True, epochs=2,
                   batch_size=8, seed=4, progress=False, verbose=False)
    convscope.train(DATA, out=str(tmp_path / "straight"), **options)

    class Stop(Exception):
        pass

    real = loop.Trainer.checkpoint

    def stop_after_first(self):
        real(self)
        raise Stop

    monkeypatch.setattr(loop.Trainer, "checkpoint", stop_after_first)
    with pytest.raises(Stop):
        convscope.train(DATA, out=str(tmp_path / "stopped"), **options)
    monkeypatch.setattr(loop.Trainer, "checkpoint", real)
    assert not (tmp_path / "stopped" / "model.safetensors").exists()
    convscope.resume(tmp_path / "stopped", progress=False, verbose=False)
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "stopped" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_freeze_needs_weights_in_one_sentence():
    with pytest.raises(UsageError, match="needs `weights`"):
        TrainConfig(model="efficientnet-lite0", freeze=True).resolve()
    err = run_cli("train", "--data", DATA, "--model", "efficientnet-lite0", "--freeze",
                  check=2).stderr
    assert "--freeze trains only the head" in err and "--weights" in err
    assert "Traceback" not in err


def test_the_trained_model_opens_in_the_views(tmp_path):
    convscope.train(DATA, model="efficientnet-lite0", weights="pretrained", freeze=True,
                    epochs=1, batch_size=8, out=str(tmp_path), progress=False, verbose=False)
    model = tmp_path / "model.safetensors"
    out = run_cli("predict", model, "--json", sample_path("chelsea")).stdout
    top = json.loads(out)[0]["top"]
    assert len(top) == 3 and {t["label"] for t in top} == {"class0", "class1", "class2"}
    layers = run_cli("layers", model).stdout
    assert "blocks.15.project_bn" in layers and "stem_conv" in layers
