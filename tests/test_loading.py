"""The one model layer: ``open_model`` for every kind of MODEL, ``describe()``, tasks."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

import convscope
from convscope.errors import ConvscopeError, UsageError
from convscope.loading import TASKS, as_classifier, open_model, open_network, register_task
from convscope.modelfile import ModelDescription
from tests.conftest import call_cli


def test_a_model_file_opens_as_its_task_with_its_description(digits_model):
    clf = open_model(digits_model, device="cpu")
    assert isinstance(clf, convscope.Classifier) and clf.task == "classify"
    d = clf.describe()
    assert isinstance(d, ModelDescription)
    assert d.task == "classify" and d.name == "convnet"
    assert d.labels == tuple(str(i) for i in range(10))
    assert d.channels == 1 and d.image_size == (8, 8)
    assert len(d.mean) == len(d.std) == 1
    assert d.provenance.startswith(f"trained by convscope {convscope.__version__} on digits")
    assert "none stated" in d.licence
    assert json.loads(json.dumps(d.to_dict()))["labels"][3] == "3"
    # a model object passes through; the same object, not a copy
    assert open_model(clf) is clf and as_classifier(clf) is clf


def test_torchvision_names_open_with_imagenet_labels_and_their_provenance():
    clf = open_model("resnet18", device="cpu")
    d = clf.describe()
    assert d.name == "torchvision:resnet18" and len(d.labels) == 1000
    assert d.labels[1] == "goldfish" and d.input_size == (224, 224)
    assert d.mean == pytest.approx((0.485, 0.456, 0.406))
    assert "random weights" in d.provenance and "BSD-3-Clause" in d.licence


def test_a_local_state_dict_is_named_in_the_provenance(tmp_path):
    torch.manual_seed(0)
    net = convscope.open_model("torchvision:mobilenet_v3_small", device="cpu").model
    path = tmp_path / "mobile.pth"
    torch.save(net.state_dict(), path)
    clf = open_model("torchvision:mobilenet_v3_small", str(path), device="cpu")
    assert str(path) in clf.describe().provenance
    loaded = clf.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())


def test_architectures_open_only_untrained_and_on_the_meta_device_allocate_nothing():
    with pytest.raises(ConvscopeError, match="names an untrained architecture"):
        open_model("convnet:width=8")
    clf = open_model("convnet:width=8", device="meta", untrained=True, input="16x16x1",
                     classes=3)
    assert next(clf.model.parameters()).device.type == "meta"
    d = clf.describe()
    assert d.provenance.startswith("untrained: convnet") and d.labels == ("0", "1", "2")
    assert d.channels == 1 and d.image_size == (16, 16)
    assert clf.meta.options["width"] == 8  # the name's options, as a model file records them
    # a bad option is named, even where no architecture is wanted
    with pytest.raises(UsageError, match="width"):
        open_model("convnet:width=x")


def test_weights_with_a_model_file_or_object_is_refused(digits_model):
    with pytest.raises(UsageError, match="`weights`"):
        open_model(digits_model, "DEFAULT")
    with pytest.raises(UsageError, match="`weights`"):
        open_model(open_model(digits_model), "DEFAULT")


def test_unknown_names_and_missing_files_are_one_sentence(tmp_path):
    with pytest.raises(UsageError, match="neither a file nor a model name"):
        open_model("nonsense")
    with pytest.raises(ConvscopeError, match="does not exist"):
        open_model(str(tmp_path / "gone.safetensors"))
    with pytest.raises(UsageError, match="not a int"):
        open_model(3)


def test_a_file_of_an_unknown_task_asks_for_an_upgrade(digits_model, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(digits_model), "pt") as f:
        meta = json.loads(f.metadata()["convscope"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["task"] = "teleport"
    path = tmp_path / "future.safetensors"
    save_file(tensors, str(path), metadata={"convscope": json.dumps(meta)})
    with pytest.raises(ConvscopeError, match="'teleport' model, a task this convscope does not know"):
        open_model(path)


def test_a_new_task_plugs_in_with_one_registration(tmp_path):
    @dataclass
    class Counter:
        task: str = "count"

        def describe(self):
            return "counts things"

    def by_name(text, weights, device):
        return Counter() if text == "counter" else None

    @register_task("count", Counter, "a count per image", by_name)
    def read(path, device):
        raise AssertionError("no file of this task here")

    try:
        model = open_model("counter")
        assert isinstance(model, Counter) and open_model(model) is model
        with pytest.raises(UsageError, match="is a count model, and this needs a classify"):
            as_classifier("counter")
    finally:
        del TASKS["count"]


def test_summary_opens_through_the_same_layer(digits_model):
    opened = open_network(digits_model)
    assert opened.name == f"convnet ({digits_model})" and opened.input.depth == 1
    assert open_network("spec:CONV3-4-POOL2-FC", "8x8x1", classes=2).name == "spec:CONV3-4-POOL2-FC"


def test_info_describes_files_names_and_architectures(digits_model):
    out = call_cli("info", digits_model, check=0).stdout
    assert "task        classify" in out and "provenance  trained by convscope" in out
    data = json.loads(call_cli("info", "resnet18", "--json", check=0).stdout)
    assert data["description"]["labels"][1] == "goldfish"
    assert data["description"]["licence"].startswith("torchvision's code: BSD-3-Clause")
    out = call_cli("info", "convnet:width=8", check=0).stdout
    assert "untrained: convnet" in out and "created" not in out
    err = call_cli("info", "nonsense", check=2).stderr
    assert "neither a file nor a model name" in err and err.count("\n") == 1
