"""The layer table: parameter and multiply-add totals against torchvision, volumes against
the forward pass, and every kind of MODEL the command accepts."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from convscope.errors import ConvscopeError, UsageError
from convscope.inspect.hooks import get_layer
from convscope.inspect.summary import layer_table, summarize
from tests.conftest import run_cli
from tests.conftest import run_main as cli


def _meta(name: str) -> nn.Module:
    with torch.device("meta"):  # torchvision's own constructor, no weights allocated
        return tvm.get_model(name, weights=None)


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "alexnet"])
def test_parameter_totals_match_the_model(name):
    net = _meta(name)
    table = layer_table(net, (3, 224, 224))
    numel = sum(p.numel() for p in net.parameters())
    assert table.totals["params"] == numel  # the rows' formulas, summed
    assert numel == tvm.get_model_weights(name).DEFAULT.meta["num_params"]
    assert all(r.check == "ok" for r in table.checked) and len(table.checked) > 5


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "alexnet", "googlenet", "densenet121"])
def test_multiply_adds_match_torchvision(name):
    """torchvision publishes each model's GFLOPS (multiply-adds) at 224x224: a peer oracle."""
    table = summarize(name)  # the registry's build, on the meta device
    ops = tvm.get_model_weights(name).DEFAULT.meta["_ops"]
    assert round(table.totals["macs"] / 1e9, 3) == ops
    assert table.totals["params"] == table.totals["model_params"]


def test_rows_use_layer_names_and_formulas():
    net = _meta("alexnet")
    table = layer_table(net, (3, 224, 224))
    for row in table.rows:
        get_layer(net, row.name)  # every name is one --layer accepts
    conv1 = table.row("features.0")
    assert (conv1.K, conv1.F, conv1.S, conv1.P) == (64, (11, 11), (4, 4), (2, 2))
    assert conv1.volume == "55x55x64" and not conv1.arithmetic.fits
    assert conv1.weights == 11 * 11 * 3 * 64 and conv1.biases == 64
    assert conv1.macs == 55 * 55 * 64 * 11 * 11 * 3
    assert conv1.field.size == (11, 11) and conv1.field.jump == (4, 4)
    assert any("(224 - 11 + 2*2)/4 + 1 = 55.25, which torch rounds down to 55" in n
               for n in table.notes)
    fc = table.row("classifier.6")
    assert fc.volume == "1x1x1000" and fc.field.is_global and fc.K == 1000


def test_cross_check_catches_a_wrong_formula():
    class ScaledConv(nn.Conv2d):  # one extra parameter the conv formula does not know
        def __init__(self):
            super().__init__(3, 10, 5, padding=2)
            self.scale = nn.Parameter(torch.ones(1))

    table = layer_table(nn.Sequential(ScaledConv()), (3, 32, 32))
    assert table.totals["params"] == 760 and table.totals["model_params"] == 761
    assert "formula gives 760 parameters but the module holds 761" in table.rows[0].check
    assert "but the model holds sum(p.numel()) = 761" in table.format()


def test_spec_table_and_output_volumes():
    table = summarize("spec:[(CONV3-32-RELU)*2-POOL2]*3-(FC256-RELU)*1-FC", "32x32x3")
    names = [r.name for r in table.rows]
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert table.row("pool3").volume == "4x4x32" and table.row("fc1").weights == 512 * 256
    assert table.row("conv1_2").field.size == (5, 5) and table.row("pool3").field.jump == (8, 8)
    assert table.totals["params"] == table.totals["model_params"]
    with pytest.raises(ConvscopeError, match="spec layer pool3 .* 3.5"):
        summarize("spec:[(CONV3-32-RELU)*2-POOL2]*3-FC", "28x28x1")
    stem = "spec:CONV7-64/S2/P3-BN-RELU-MAXPOOL3/S2/P1-[(CONV3-64-BN-RELU)*2]*2-GAP-FC"
    assert summarize(stem, "225x225x3").row("pool1").volume == "57x57x64"  # '/' is no path
    with pytest.raises(ConvscopeError, match=r"\(224 - 7 \+ 2\*3\)/2 \+ 1 = 112.5"):
        summarize(stem, "224x224x3")


def test_model_file_table_and_cli(digits_model):
    table = summarize(digits_model)
    assert table.input.width == 8 and table.input.depth == 1
    assert table.rows[0].name == "conv1_1" and table.totals["params"] == table.totals[
        "model_params"]
    data = json.loads(run_cli("summary", digits_model, "--json").stdout)
    assert data["input"] == {"width": 8, "height": 8, "depth": 1}
    assert data["layers"][0]["name"] == "conv1_1"
    assert data["layers"][0]["receptive_field"]["size"] == [3, 3]
    assert data["totals"]["params"] == table.totals["params"] and "config" in data
    proc = run_cli("summary", digits_model, "--input", "16x16", check=1)  # its FC wants 8x8
    assert "does not accept a 16x16x1 input" in proc.stderr


def test_torch_export_and_torchscript_files(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 8 * 8, 5)).eval()
    reference = layer_table(net, (3, 16, 16))
    x = torch.zeros(1, 3, 16, 16)
    torch.export.save(torch.export.export(net, (x,)), tmp_path / "net.pt2")
    exported = summarize(tmp_path / "net.pt2", trust_code=True)  # input size from the program
    assert exported.input.width == 16
    assert [r.name for r in exported.rows] == [r.name for r in reference.rows]
    assert exported.totals == reference.totals
    assert [r.field for r in exported.rows] == [r.field for r in reference.rows]
    torch.jit.save(torch.jit.trace(net, x), tmp_path / "traced.ts")
    traced = summarize(tmp_path / "traced.ts", "16x16x3", trust_code=True)
    assert traced.totals == reference.totals
    assert traced.row("0").field == reference.row("0").field
    assert traced.row("0").check == "ok" and traced.row("0").F == (3, 3)
    torch.jit.save(torch.jit.script(net), tmp_path / "scripted.pt")
    scripted = summarize(tmp_path / "scripted.pt", "16x16x3", trust_code=True)  # by weights
    assert scripted.totals == reference.totals
    assert [r.name for r in scripted.rows] == ["0", "4"]
    assert scripted.row("0").type == "Conv2d" and scripted.row("4").volume == "1x1x5"
    assert scripted.row("4").field == reference.row("4").field
    with pytest.raises(UsageError, match="TorchScript, which does not record its input size"):
        summarize(tmp_path / "traced.ts", trust_code=True)


class Payload:
    """Unpickling this writes a file: proof that a file was (not) unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_modules_are_refused_not_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    torch.save({"model": Payload(marker)}, tmp_path / "model.pt")
    assert not marker.exists()
    proc = run_cli("summary", tmp_path / "model.pt", "--input", "8x8x3", check=1)
    assert "never unpickles" in proc.stderr and not marker.exists()


def test_cli_errors_are_one_sentence(tmp_path, capsys):
    code, _, err = cli(capsys, "summary", "lenet")
    assert code == 2 and "neither a file nor a model name" in err and err.count("\n") == 1
    code, _, err = cli(capsys, "summary", tmp_path / "missing.safetensors")
    assert code == 1 and "does not exist" in err
    code, out, _ = cli(capsys, "summary", "convnet:m=1,k=0", "--input", "4x4x1", "--classes", "3")
    assert code == 0 and "conv1_1" in out and "on a 4x4x1 input" in out
    code, _, err = cli(capsys, "summary", "mlp", "--input", "0x3x3")
    assert code == 2 and "positive" in err


def test_torchvision_names_and_an_unseen_architecture():
    table = summarize("torchvision:mobilenet_v2")  # depthwise convs, never seen in our code
    ops = tvm.get_model_weights("mobilenet_v2").DEFAULT.meta["_ops"]
    assert round(table.totals["macs"] / 1e9, 3) == ops
    assert table.totals["params"] == table.totals["model_params"]
    assert all(r.check == "ok" for r in table.checked)
    with pytest.raises(ConvscopeError, match="unknown torchvision model"):
        summarize("torchvision:lenet")


def test_resnet18_rows_are_the_lectures_blocks_with_aggregated_numbers():
    """Issue 18: `summary resnet18` listed only leaves; layer1..layer4 (the stages of the
    lecture's diagram) are rows now, with their output, parameters, RF and multiply-adds."""
    from convscope.inspect.receptive import receptive_fields

    table = summarize("resnet18")  # depth auto
    assert [r.name for r in table.rows] == ["conv1", "bn1", "relu", "maxpool", "layer1",
                                            "layer2", "layer3", "layer4", "avgpool", "fc"]
    net = _meta("resnet18")
    fields = receptive_fields(net, (3, 224, 224))
    full = layer_table(net, (3, 224, 224))
    for name, volume in [("layer1", "56x56x64"), ("layer2", "28x28x128"),
                         ("layer3", "14x14x256"), ("layer4", "7x7x512")]:
        row = table.row(name)
        assert row.volume == volume and row.type == "2x BasicBlock"
        assert row.params == sum(p.numel() for p in get_layer(net, name).parameters())
        assert row.field == fields[name]  # the block's output unit sees what receptive_fields says
        inside = [r for r in full.rows if r.name.startswith(name + ".")]
        assert row.macs == sum(r.macs for r in inside) > 0 and row.folded == len(inside)
    assert table.row("layer4").field.size == (435, 435)
    assert table.totals == full.totals  # folding moves numbers, never loses them
    assert table.row("layer2.0.conv1").K == 128  # a layer inside a block is still found
    assert "23 of 23 conv/pool/FC layers" in table.format()  # checks count every layer
    assert "layer1, layer2, layer3, layer4: each row sums up" in table.format()


def test_depth_levels_like_torchinfo():
    net = _meta("resnet18")
    two = layer_table(net, (3, 224, 224), depth=2)
    assert [r.name for r in two.rows][4:6] == ["layer1.0", "layer1.1"]
    assert two.row("layer2.0").type == "BasicBlock" and two.row("layer2.0").volume == "28x28x128"
    deep = layer_table(net, (3, 224, 224), depth=9)  # deeper than the net: every leaf
    assert [r.name for r in deep.rows] == [r.name for r in layer_table(net, (3, 224, 224)).rows]
    vgg = layer_table(_meta("vgg16"), (3, 224, 224), depth=1)
    assert [r.name for r in vgg.rows] == ["features", "avgpool", "classifier"]
    assert vgg.row("features").volume == "7x7x512" and vgg.row("features").field.size == (212, 212)
    flat = layer_table(_meta("vgg16"), (3, 224, 224), depth="auto")  # a flat net: its leaves
    assert len(flat.rows) == 39 and not any(r.folded for r in flat.rows)
    auto = summarize("googlenet")
    assert "inception3a" in [r.name for r in auto.rows]
    with pytest.raises(UsageError, match="depth must be"):
        layer_table(net, (3, 224, 224), depth=0)


def test_cli_depth(capsys):
    code, out, _ = cli(capsys, "summary", "resnet18", "--depth", "2", "--json")
    data = json.loads(out)
    assert code == 0 and data["config"]["depth"] == 2
    block = next(r for r in data["layers"] if r["name"] == "layer4.1")
    assert block["output"] == "7x7x512" and block["receptive_field"]["size"] == [435, 435]
    assert block["folded"] == 5 and block["params"] == 2 * (512 * 512 * 9 + 2 * 512)
    code, out, _ = cli(capsys, "summary", "resnet18")
    assert "\nlayer3   2x BasicBlock" in out and "\nlayer3.0.conv1 " not in out
    code, out, _ = cli(capsys, "summary", "resnet18", "--depth", "all")
    assert "\nlayer3.0.conv1 " in out
    code, _, err = cli(capsys, "summary", "resnet18", "--depth", "0")
    assert code == 2 and "whole number >= 1, auto or all" in err
