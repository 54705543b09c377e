"""Every model name builds for every input shape the datasets produce; options; weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.errors import ConvscopeError, UsageError
from convscope.models import ModelInput, build_model, get_entry, list_models, parse_model_name

SHAPES = [ModelInput(1, 10, (8, 8)), ModelInput(1, 10, (28, 28)), ModelInput(3, 7, (32, 32))]


def test_registry_names():
    assert list_models() == ["linear", "mlp", "convnet", "resnet", "fastnet", "spec:SPEC",
                             "alexnet", "vgg16", "googlenet", "resnet18", "resnet50",
                             "resnet101", "densenet121", "efficientnet-lite0",
                             "efficientnet-lite1", "efficientnet-lite2"]


@pytest.mark.parametrize("name", ["linear", "mlp", "convnet", "resnet", "fastnet", "alexnet",
                                  "vgg16", "googlenet", "resnet18", "resnet50", "resnet101",
                                  "densenet121"])
def test_every_model_builds_for_every_dataset_shape(name):
    entry = get_entry(name)
    for inp in SHAPES:
        model = build_model(name, inp).eval()
        size = entry.input_size(inp.image_size)
        assert min(size) >= min(inp.image_size)
        with torch.no_grad():
            out = model(torch.zeros(2, inp.channels, *size))
        assert out.shape == (2, inp.num_classes), (name, inp)


def test_linear_and_mlp_are_the_lecture_formulas():
    inp = ModelInput(1, 3, (2, 2))
    lin = build_model("linear", inp)
    x = torch.randn(5, 1, 2, 2)
    w, b = lin.classifier.weight, lin.classifier.bias
    assert torch.allclose(lin(x), x.flatten(1) @ w.T + b)
    mlp = build_model("mlp:hidden=7", inp)
    assert mlp.fc1.out_features == 7
    expected = torch.relu(x.flatten(1) @ mlp.fc1.weight.T + mlp.fc1.bias) @ mlp.classifier.weight.T
    assert torch.allclose(mlp(x), expected + mlp.classifier.bias, atol=1e-6)


def test_convnet_follows_the_pattern():
    net = build_model("convnet:n=3,m=2,k=2,width=4,bn=false", ModelInput(1, 10, (28, 28)))
    names = [n for n, _ in net.named_children()]
    assert names[:8] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "conv1_3", "relu1_3",
                         "pool1", "conv2_1"]
    assert [n for n in names if n.startswith("fc")] == ["fc1", "fc1_relu", "fc2", "fc2_relu"]
    assert net.conv2_1.out_channels == 8  # width doubles per block
    assert net.fc1.in_features == 8 * 7 * 7
    assert names[-1] == "classifier"


def test_resnet_depth():
    net = build_model("resnet:depth=32", ModelInput(3, 10, (32, 32)))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 32  # 6n+1 3x3 convs plus the classifier
    with pytest.raises(UsageError, match="6n\\+2"):
        build_model("resnet:depth=21", ModelInput(3, 10, (32, 32)))


def test_option_errors_are_clear():
    with pytest.raises(UsageError, match="its options are: hidden=256"):
        parse_model_name("mlp:width=3")
    with pytest.raises(UsageError, match="must be int"):
        parse_model_name("convnet:n=two")
    with pytest.raises(UsageError, match="choose one of: linear, mlp"):
        parse_model_name("lenet")
    with pytest.raises(UsageError, match="`weights` applies to the pretrained models"):
        build_model("convnet", SHAPES[0], weights="DEFAULT")


def test_weights_file_is_loaded_and_adapted(tmp_path):
    """An ImageNet-shaped state dict is loaded, then the head and stem are adapted."""
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(0)
    ref = resnet18(num_classes=1000)
    save_file(ref.state_dict(), tmp_path / "r18.safetensors")
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    for f in ("r18.safetensors", "r18.pth"):
        net = build_model("resnet18", ModelInput(1, 4, (32, 32)), weights=str(tmp_path / f))
        assert torch.equal(net.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
        # grayscale stem: the RGB filters' mean times 3, so a gray image gives the same response
        assert net.conv1.weight.shape[1] == 1
        assert torch.allclose(net.conv1.weight[:, 0], ref.conv1.weight.sum(1), atol=1e-6)
        assert net.fc.out_features == 4


def test_default_weights_offline_error(monkeypatch):
    from torchvision.models import ResNet18_Weights

    def offline(self, *a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(ResNet18_Weights, "get_state_dict", offline)
    with pytest.raises(ConvscopeError, match="could not download .* as `weights`"):
        build_model("resnet18", SHAPES[2], weights="DEFAULT")


def test_weights_that_do_not_fit(tmp_path):
    torch.save({"foo": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ConvscopeError, match="do not fit resnet18"):
        build_model("resnet18", SHAPES[2], weights=str(tmp_path / "bad.pt"))


def test_weights_with_the_wrong_shapes_are_named_or_adapted(tmp_path, caplog):
    """A 10-class ResNet-18 state dict: the head is adapted (training and views) and said so;
    a mismatch elsewhere names the tensor with both shapes, with no traceback."""
    from torchvision.models import resnet18

    from convscope.loading import open_model
    from tests.conftest import call_cli

    torch.manual_seed(0)
    ten = resnet18(num_classes=10)
    torch.save(ten.state_dict(), tmp_path / "r10.pt")
    net = build_model("resnet18", ModelInput(3, 10, (32, 32)), weights=str(tmp_path / "r10.pt"))
    assert torch.equal(net.fc.weight, ten.fc.weight)  # same class count: the head is kept
    net = build_model("resnet18", ModelInput(1, 4, (32, 32)), weights=str(tmp_path / "r10.pt"))
    assert net.fc.out_features == 4 and torch.equal(net.layer4[1].conv2.weight,
                                                    ten.layer4[1].conv2.weight)
    with caplog.at_level("WARNING", logger="convscope"):
        clf = open_model("resnet18", weights=str(tmp_path / "r10.pt"))
    assert "10-class head (fc)" in caplog.text  # the CLI prints it on stderr
    assert clf.classes == [str(i) for i in range(10)]
    assert torch.equal(clf.model.fc.weight, ten.fc.weight)
    proc = call_cli("layers", "resnet18", "--weights", tmp_path / "r10.pt")
    assert "conv1" in proc.stdout
    sd = ten.state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(sd, tmp_path / "odd.pt")
    err = call_cli("layers", "resnet18", "--weights", tmp_path / "odd.pt", check=1).stderr
    assert "layer1.0.conv1.weight [64, 64, 1, 1] (needs [64, 64, 3, 3])" in err
    assert err.count("\n") == 1
    with pytest.raises(ConvscopeError, match=r"layer1.0.conv1.weight \[64, 64, 1, 1\]"):
        build_model("resnet18", SHAPES[2], weights=str(tmp_path / "odd.pt"))


def test_each_task_names_its_own_models():
    """A detector or segmenter is never built where a classifier is asked for (train's
    --model, a model file's rebuild), and the classifiers' list stays theirs."""
    assert list_models("detect") == ["fasterrcnn", "retinanet", "fcos", "ssdlite"]
    assert list_models("segment") == ["fcn", "deeplabv3", "lraspp"]
    assert set(list_models(None)) == set(list_models()) | set(list_models("detect")) | \
        set(list_models("segment"))
    assert get_entry("fcos").task == "detect" and get_entry("convnet").task == "classify"
    with pytest.raises(UsageError, match=r"^model fasterrcnn is a detector \(task detect\), not "
                                         r"a classifier; choose one of: linear, mlp"):
        build_model("fasterrcnn", ModelInput(3, 2, (64, 64)))
    with pytest.raises(UsageError, match="model convnet is a classifier .*choose one of: fcn, "):
        parse_model_name("convnet", task="segment")
    entry, options = parse_model_name("lraspp:backbone=resnet18", task=None)
    assert options == {"backbone": "resnet18", "trainable_layers": 5, "low_stride": 4}
    assert parse_model_name("fcos:fpn_channels=64", task="detect")[1]["fpn_channels"] == 64
