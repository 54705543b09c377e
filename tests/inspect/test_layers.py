"""list_layers: names, output shapes and default layers, on our nets and torchvision's."""

from __future__ import annotations

from convscope.inspect.layers import list_layers


def test_layers_name_shapes_and_defaults(mnist):
    table = list_layers(mnist)
    rows = {r.name: r for r in table.layers}
    assert rows["conv1_1"].output_shape == (32, 28, 28) and rows["pool2"].output_shape == (64, 7, 7)
    assert rows["fc1_relu"].output_shape == (128,) and rows["classifier"].calls == 1
    assert table.defaults == {"filters": "conv1_1", "activations": "relu1_1",
                              "neighbors": "fc1_relu", "embed": "fc1_relu", "patches": "pool2"}
    text = table.format()
    assert "pool2       MaxPool2d    7x7x64" in text and "neighbors, embed" in text


def test_layers_of_torchvision_nets():
    r18 = list_layers("resnet18")
    assert r18.defaults == {"filters": "conv1", "activations": "relu", "neighbors": "avgpool",
                            "embed": "avgpool", "patches": "layer4"}
    rows = {r.name: r for r in r18.layers}
    assert rows["layer1.0.relu"].calls == 2        # one ReLU module applied twice per block
    assert rows["layer4"].output_shape == (512, 7, 7)
    alex = list_layers("alexnet").defaults
    assert (alex["filters"], alex["activations"], alex["neighbors"]) == (
        "features.0", "features.1", "classifier.5")


