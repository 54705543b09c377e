"""Spec strings: the grammar, errors that point at the spot, fit checks, and a real training run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.errors import ConvscopeError
from convscope.models import ModelInput, build_model, canonical_name, parse_model_name
from convscope.models.arithmetic import DoesNotFit
from convscope.models.spec import SpecError, build_spec, parse_spec
from tests.conftest import run_cli

EXAMPLE = "[(CONV3-32-RELU)*2-POOL2]*3-(FC256-RELU)*1-FC"
CIFAR = ModelInput(3, 10, (32, 32))


def test_the_issue_example_builds_with_convnet_names():
    net = build_spec(EXAMPLE, CIFAR)
    names = [n for n, _ in net.named_children()]
    assert names == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
                     "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
                     "conv3_1", "relu3_1", "conv3_2", "relu3_2", "pool3",
                     "flatten", "fc1", "fc1_relu", "classifier"]
    assert net.conv1_1.padding == (1, 1)  # "same" padding by default
    assert net.fc1.in_features == 4 * 4 * 32 and net.classifier.out_features == 10
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_every_layer_kind_and_modifier():
    spec = parse_spec("CONV7-8/S2/P3-BN-RELU-MAXPOOL3/S2/P1-CONV3-8/D2-AVGPOOL2-GAP-"
                      "FC16-BN-RELU-DROPOUT0.25-FC-SOFTMAX")
    kinds = [layer.kind for layer in spec.layers]
    assert kinds == ["conv", "bn", "relu", "pool", "conv", "pool", "gap", "fc", "bn", "relu",
                     "dropout", "fc", "softmax"]
    conv = spec.layers[0]
    assert (conv.size, conv.filters, conv.stride, conv.pad) == (7, 8, 2, 3)
    assert spec.layers[4].pad == 2  # same padding for a 3x3 dilated by 2: (5 - 1)/2
    assert spec.layers[5].pool == "avg" and spec.layers[3].stride == 2
    net = build_spec(spec, ModelInput(1, 5, (37, 37)))
    assert isinstance(net.bn1_1, nn.BatchNorm2d) and net.conv1_1.bias is None  # BN follows
    assert isinstance(net.fc1_bn, nn.BatchNorm1d) and net.fc1_dropout.p == 0.25
    assert not any(isinstance(m, nn.Softmax) for m in net.modules())  # the loss applies it
    assert net.eval()(torch.zeros(1, 1, 37, 37)).shape == (1, 5)


def test_repetition_and_lowercase():
    spec = parse_spec("[ (conv3-4 - relu) * 2 - pool2 ] * 2 - fc")
    assert [layer.text.upper() for layer in spec.layers] == [
        "CONV3-4", "RELU", "CONV3-4", "RELU", "POOL2"] * 2 + ["FC"]
    net = build_spec(spec, ModelInput(1, 3, (8, 8)))
    assert net.conv1_1 is not net.conv1_2  # each copy has its own weights


@pytest.mark.parametrize("spec,position,message", [
    ("[(CONV3-32-RELU)*2-POOL2", 24, "expected ']' to close the '\\[' at character 1"),
    ("CONV3-RELU-FC", 6, "number of filters K after CONV3-"),
    ("CONV-8-FC", 4, "filter size F after CONV"),
    ("CONV3-8-POOL2-XX-FC", 14, "unknown layer 'XX'"),
    ("CONV3-8*0-FC", 8, "must be at least 1"),
    ("CONV3-8 POOL2-FC", 8, "expected '-' between layers"),
    ("CONV4-8-FC", 0, "'same' padding .* 1.5 .* /P, e.g. CONV4-8/P2"),
    ("FC-FC", 0, "only the last FC may leave out its size"),
    ("CONV3-8-RELU", 8, "must end with FC"),
    ("FC10-SOFTMAX-FC", 5, "SOFTMAX may only end the spec"),
    ("CONV3-8/Q2-FC", 8, "CONV and POOL take /S"),
    ("RELU/S2-FC", 5, "unexpected modifier after RELU"),
    ("DROPOUT1.5-FC", 7, "dropout probability must be in"),
    ("", 0, "the spec is empty"),
    ("(CONV3-8-FC", 11, "expected '\\)'"),
])
def test_errors_point_at_the_offending_position(spec, position, message):
    with pytest.raises(SpecError, match=message) as info:
        parse_spec(spec)
    assert info.value.position == position
    assert f"at character {position + 1}" in str(info.value)
    assert "^" in str(info.value) and "\n" not in str(info.value)


def test_layer_order_errors_have_positions():
    with pytest.raises(SpecError, match="CONV3-3 cannot follow FC") as info:
        build_spec("FC10-CONV3-3-FC", CIFAR)
    assert info.value.position == 5
    with pytest.raises(SpecError, match="one output per class \\(10\\), not 7"):
        build_spec("CONV3-8-FC7", CIFAR)


def test_a_spec_that_does_not_fit_names_the_layer_and_its_arithmetic():
    with pytest.raises(DoesNotFit) as info:
        build_spec("[(CONV3-32-RELU)*2-POOL2]*3-FC", ModelInput(3, 10, (28, 28)))
    msg = str(info.value)
    assert msg.startswith("spec layer pool3 (POOL2 at character 20) does not fit its 7x7x32 input")
    assert "(7 - 2)/2 + 1 = 3.5, not a whole number" in msg
    with pytest.raises(DoesNotFit, match=r"conv1_1 \(CONV3-8/S2 at character 1\).*"
                                         r"\(32 - 3 \+ 2\*1\)/2 \+ 1 = 16\.5"):
        build_spec("CONV3-8/S2-FC", CIFAR)


def test_registry_round_trip():
    entry, options = parse_model_name("spec:" + EXAMPLE)
    assert entry.name == "spec" and options == {"spec": EXAMPLE}
    assert canonical_name(entry, options) == "spec:" + EXAMPLE
    assert isinstance(build_model("spec:" + EXAMPLE, CIFAR), nn.Sequential)
    with pytest.raises(SpecError):  # syntax is checked wherever the name is parsed
        parse_model_name("spec:CONV3-")


@pytest.mark.slow
def test_a_spec_model_trains_saves_and_loads(tmp_path):
    import convscope

    spec = "spec:[(CONV3-8-BN-RELU)*1-POOL2]*2-(FC32-RELU)-FC-SOFTMAX"
    clf = convscope.train("digits", model=spec, epochs=1, out=str(tmp_path), progress=False,
                          verbose=False)
    assert clf.meta.model == "spec" and clf.meta.options == {"spec": spec[5:]}
    assert clf.meta.metrics["test_acc"] > 0.3  # learns something in one epoch (chance: 0.1)
    again = convscope.load(tmp_path / "model.safetensors")
    x = torch.randint(0, 255, (4, 1, 8, 8), dtype=torch.uint8)
    assert torch.allclose(again.logits(x), clf.logits(x), atol=1e-5)
    assert [n for n, _ in again.model.named_children()][:4] == ["conv1_1", "bn1_1", "relu1_1",
                                                                "pool1"]


def test_cli_rejects_non_fitting_spec_before_training(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", "--data", "digits", "--model", "spec:[(CONV3-8-RELU)-POOL2]*4-FC",
                   "--epochs", "1", "--out", str(out), "--quiet", check=1)
    assert "spec layer pool4 (POOL2 at character 17) does not fit its 1x1x8 input" in proc.stderr
    assert not out.exists()  # rejected before anything was written or trained
    proc = run_cli("train", "--data", "digits", "--model", "spec:CONV3-8-POOL2-", "--out",
                   str(out), check=2)
    assert "at character 15" in proc.stderr and not out.exists()


def test_spec_errors_are_convscope_errors():
    assert issubclass(SpecError, ConvscopeError) and issubclass(DoesNotFit, ConvscopeError)


def test_views_given_an_architecture_name_say_how_to_train_it(capsys):
    from tests.conftest import run_main

    code, _, err = run_main(capsys, "layers", "spec:CONV3-8-FC")
    assert code == 1 and "names an untrained architecture" in err
    assert "convscope train --model 'spec:CONV3-8-FC' --out DIR" in err
    code, _, err = run_main(capsys, "filters", "convnet:width=4", "--out", "x.png")
    assert code == 1 and "convscope summary 'convnet:width=4'" in err
