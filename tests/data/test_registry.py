"""Every dataset name: splits, classes, sizes, normalisation, local copies, errors."""

from __future__ import annotations

import pickle
import urllib.error

import numpy as np
import pytest
import torch

from convscope.data import list_datasets, load_dataset
from convscope.errors import ConvscopeError, UsageError
from tests.conftest import call_cli, write_image_folder


def test_registry_lists_every_name():
    assert list_datasets("classify") == ["mnist5k", "digits", "fake[:OPTIONS]", "cifar10",
                                         "mnist", "folder:PATH"]
    assert list_datasets("detect") == ["digits-boxes[:OPTIONS]", "fake-boxes[:OPTIONS]",
                                       "coco:PATH", "voc:PATH", "yolo:PATH"]
    assert list_datasets("segment") == ["digits-masks[:OPTIONS]", "fake-masks[:OPTIONS]",
                                        "masks:PATH"]
    assert list_datasets() == [*list_datasets("classify"), *list_datasets("detect"),
                               *list_datasets("segment")]


def test_mnist5k_is_the_real_split():
    ds = load_dataset("mnist5k")
    assert (len(ds.train_labels), len(ds.test_labels)) == (4000, 1000)
    assert ds.image_size == (28, 28) and ds.channels == 1 and ds.classes == list("0123456789")
    assert np.bincount(ds.test_labels.numpy()).tolist() == [100] * 10  # stratified
    again = load_dataset("mnist5k")
    assert torch.equal(ds.test_images, again.test_images)  # the fixed seed gives the same split
    mean, std = ds.normalization()
    assert 0.12 < mean[0] < 0.14 and 0.29 < std[0] < 0.32  # MNIST's well-known 0.13 / 0.31
    assert not ds.natural


def test_digits():
    ds = load_dataset("digits")
    assert ds.image_size == (8, 8) and ds.channels == 1
    assert len(ds.train_labels) + len(ds.test_labels) == 1797
    assert ds.train_images.max() == 255  # 0..16 scaled to 0..255


def test_fake_options_and_errors():
    ds = load_dataset("fake:size=8,channels=1,classes=3,n=30,test=9")
    assert ds.image_size == (8, 8) and ds.channels == 1 and ds.num_classes == 3
    assert (len(ds.train_labels), len(ds.test_labels)) == (30, 9)
    assert torch.equal(ds.train_images, load_dataset("fake:size=8,channels=1,classes=3,n=30,"
                                                     "test=9").train_images)
    with pytest.raises(UsageError, match="bad fake option 'colour=2'"):
        load_dataset("fake:colour=2")


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UsageError) as exc:
        load_dataset("imagenet")
    assert "mnist5k" in str(exc.value) and "folder:PATH" in str(exc.value)
    with pytest.raises(UsageError, match="needs an argument"):
        load_dataset("folder")


def test_image_size_resizes_any_dataset():
    ds = load_dataset("digits", image_size=16)
    assert ds.image_size == (16, 16)
    assert ds.train_images.dtype == torch.uint8


def _write_cifar(root):
    """CIFAR-10's python layout, with random images, as torchvision expects it."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, 20)], "batch_label": "x",
                 "filenames": ["f"] * 20}
        with open(d / fname, "wb") as f:
            pickle.dump(batch, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": 20, "num_vis": 3072}, f)
    return root


def test_cifar10_reads_a_local_copy(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tvc

    monkeypatch.setattr(tvc.CIFAR10, "_check_integrity", lambda self: True)  # md5s of real files
    monkeypatch.setattr(tvc, "check_integrity", lambda *a, **k: True)
    root = _write_cifar(tmp_path)
    for arg in (root, root / "cifar-10-batches-py"):
        ds = load_dataset("cifar10", data_root=arg)
        assert (len(ds.train_labels), len(ds.test_labels)) == (100, 20)
        assert ds.image_size == (32, 32) and ds.channels == 3 and ds.classes[0] == "airplane"
        assert ds.natural


def test_cifar10_offline_error_says_what_to_do(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvu, "download_url", offline)
    with pytest.raises(ConvscopeError) as exc:
        load_dataset("cifar10", data_root=tmp_path / "empty")
    msg = str(exc.value)
    assert "could not be downloaded" in msg and "`data_root`" in msg and "no network" in msg


def _write_idx(path, arr):
    import struct

    with open(path, "wb") as f:
        if arr.ndim == 3:
            f.write(struct.pack(">IIII", 0x0803, *arr.shape))
        else:
            f.write(struct.pack(">II", 0x0801, len(arr)))
        f.write(arr.astype(np.uint8).tobytes())


def test_mnist_reads_local_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    ds = load_dataset("mnist", data_root=tmp_path)
    assert (len(ds.train_labels), len(ds.test_labels)) == (30, 10)
    assert ds.image_size == (28, 28) and ds.channels == 1


def test_mnist_offline_error(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as tvm

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvm, "download_and_extract_archive", offline)
    with pytest.raises(ConvscopeError, match="MNIST is not in .* mnist5k"):
        load_dataset("mnist", data_root=tmp_path)


def test_folder_split_skips_bad_files_and_caches(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "pets", per_class=10)
    (root / "cat" / "broken.jpg").write_bytes(b"not an image")
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "README.txt").write_text("ignored")
    ds = load_dataset(f"folder:{root}", progress=False)
    assert ds.classes == ["cat", "dog"]
    assert len(ds.train_labels) + len(ds.test_labels) == 20
    assert len(ds.test_labels) == 4  # 20% stratified
    assert set(ds.skipped) == {"cat/broken.jpg", "dog/empty.png"}
    assert any("skipped 2 unreadable" in n for n in ds.notes)
    assert any("ignored 1 file" in n for n in ds.notes)
    assert ds.image_size == (10, 10)  # 12x10 images: the shorter side, centre-cropped

    import convscope.data.folder as folder

    def no_decoding(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(folder, "open_image", no_decoding)
    cached = load_dataset(f"folder:{root}", progress=False)
    assert torch.equal(cached.train_images, ds.train_images)
    assert cached.skipped == ds.skipped


def test_folder_train_test_subfolders_and_grayscale(tmp_path):
    write_image_folder(tmp_path / "d" / "train", classes=("a", "b", "c"), per_class=4, mode="L")
    write_image_folder(tmp_path / "d" / "val", classes=("a", "b", "c"), per_class=2, mode="L",
                       seed=1)
    ds = load_dataset(f"folder:{tmp_path / 'd'}", progress=False)
    assert (len(ds.train_labels), len(ds.test_labels)) == (12, 6)
    assert ds.channels == 1 and ds.classes == ["a", "b", "c"]
    assert all(f.startswith("val/") for f in ds.test_files)
    assert all(f.startswith("train/") for f in ds.train_files)


def test_folder_archive_is_extracted_once(tmp_path):
    import tarfile

    root = write_image_folder(tmp_path / "src" / "mydata", per_class=5)
    tar = tmp_path / "images.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(root, arcname="mydata")
    ds = load_dataset(f"folder:{tar}", progress=False)
    assert ds.classes == ["cat", "dog"] and len(ds.train_labels) + len(ds.test_labels) == 10


def test_folder_errors(tmp_path):
    with pytest.raises(ConvscopeError, match="not a directory"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    write_image_folder(tmp_path / "one", classes=("only",), per_class=3)
    with pytest.raises(ConvscopeError, match="at least two"):
        load_dataset(f"folder:{tmp_path / 'one'}")


def _cache_files(root_cache):
    return sorted(root_cache.glob("*.npy")), sorted(root_cache.glob("*.json"))


@pytest.mark.parametrize("damage", ["json", "npy", "mismatch"])
def test_folder_damaged_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch, damage):
    import json

    from convscope.data import DataWarning

    monkeypatch.setenv("CONVSCOPE_CACHE", str(tmp_path / "cache"))
    root = write_image_folder(tmp_path / "pets", per_class=5)
    ds = load_dataset(f"folder:{root}", progress=False)
    (npy,), (js,) = _cache_files(tmp_path / "cache" / "folder")
    if damage == "json":
        js.write_text(js.read_text()[:40])  # a truncated write
    elif damage == "npy":
        npy.write_bytes(npy.read_bytes()[:200])
    else:  # a well-formed cache that doesn't describe these files
        meta = json.loads(js.read_text())
        js.write_text(json.dumps({**meta, "labels": meta["labels"][:-1]}))
    with pytest.warns(DataWarning, match="could not be read.*decoding the images again"):
        again = load_dataset(f"folder:{root}", progress=False)
    assert torch.equal(again.train_images, ds.train_images) and again.classes == ds.classes
    assert [p.name for p in (tmp_path / "cache" / "folder").iterdir()] and not list(
        (tmp_path / "cache" / "folder").glob(".*tmp"))  # no temp file left behind
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten cache reads cleanly: no second warning
        third = load_dataset(f"folder:{root}", progress=False)
    assert torch.equal(third.test_images, ds.test_images)


def test_folder_cache_is_written_atomically(tmp_path, monkeypatch):
    import convscope.data.cache as cache
    import convscope.fileio as fileio

    monkeypatch.setenv("CONVSCOPE_CACHE", str(tmp_path / "cache"))
    root = write_image_folder(tmp_path / "pets", per_class=5)
    calls = []
    real = fileio.atomic_path

    def spy(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(cache, "atomic_path", spy)
    load_dataset(f"folder:{root}", progress=False)
    assert [p.suffix for p in calls] == [".npy"]  # the metadata goes through write_text_atomic

    def interrupted(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.np, "save", interrupted)
    (tmp_path / "cache").rename(tmp_path / "old-cache")
    from convscope.data import DataWarning

    with pytest.warns(DataWarning, match="not cached.*No space left"):
        ds = load_dataset(f"folder:{root}", progress=False)
    assert ds.classes == ["cat", "dog"]
    assert list((tmp_path / "cache" / "folder").iterdir()) == []  # nothing half-written


@pytest.mark.parametrize(("per_class", "holdout", "said"), [
    (3, None, "holds out 2 of 9 images.*count from 3 to 6, or a fraction from 0.334 to 0.666"),
    (15, 0.9999, "holds out 45 of 45 images, leaving 0.*count from 3 to 42"),
    (15, 44, "holds out 44 of 45 images, leaving 1.*count from 3 to 42"),
    (1, None, "only 1 image.*at least 2 images per class.*`holdout=0`"),
])
def test_folder_small_splits_say_what_they_need(tmp_path, per_class, holdout, said):
    root = write_image_folder(tmp_path / "d", classes=("a", "b", "c"), per_class=per_class)
    with pytest.raises(ConvscopeError, match=said):
        load_dataset(f"folder:{root}", holdout=holdout, progress=False)
    # the values the message offers work
    if per_class > 1:
        n = 3 * per_class
        for ok in (3, n - 3):
            ds = load_dataset(f"folder:{root}", holdout=ok, progress=False)
            assert set(ds.train_labels.tolist()) == set(ds.test_labels.tolist()) == {0, 1, 2}


def test_split_refuses_a_class_left_without_training_images():
    from convscope.data.base import stratified_split

    labels = np.array([0, 0, 1, 1] + [2] * 96)
    tr, te = stratified_split(labels, 0.2, 0)
    assert set(labels[tr]) == {0, 1, 2}
    with pytest.raises(ConvscopeError, match="no training image of class 'a'"):
        stratified_split(labels, 97, 0, classes=["a", "b", "c"])
    with pytest.raises(ConvscopeError, match="class 'b' has only 1 image.*give the test images"):
        stratified_split(np.array([0, 0, 1, 2, 2]), 0.4, 0, classes=["a", "b", "c"])


def test_folder_class_without_readable_images_is_dropped_or_refused(tmp_path):
    from convscope.data import DataWarning

    root = write_image_folder(tmp_path / "three", per_class=5)
    (root / "bird").mkdir()
    (root / "bird" / "x.jpg").write_bytes(b"not an image")
    (root / "fish").mkdir()  # a class folder with nothing in it
    (root / "fish" / "notes.txt").write_text("todo")
    with pytest.warns(DataWarning, match="left out class folder.*bird, fish"):
        ds = load_dataset(f"folder:{root}", progress=False)
    assert ds.classes == ["cat", "dog"] and ds.skipped == {"bird/x.jpg": ds.skipped["bird/x.jpg"]}
    assert set(ds.train_labels.tolist()) == {0, 1}
    assert any("left out class folder(s) bird, fish" in n for n in ds.notes)
    with pytest.warns(DataWarning, match="left out"):  # also when read from the cache
        assert load_dataset(f"folder:{root}", progress=False).classes == ["cat", "dog"]

    one = write_image_folder(tmp_path / "one", classes=("cat",), per_class=5)
    (one / "dog").mkdir()
    (one / "dog" / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(ConvscopeError, match=r"only 1 class folder.*\(cat\).*at least two; dog "
                                             r"had none \(skipped: dog/x.jpg"):
        load_dataset(f"folder:{one}", progress=False)


def test_folder_train_class_unreadable_drops_its_test_images(tmp_path):
    from convscope.data import DataWarning

    write_image_folder(tmp_path / "d" / "train", classes=("a", "b"), per_class=3)
    write_image_folder(tmp_path / "d" / "test", classes=("a", "b", "c"), per_class=2)
    (tmp_path / "d" / "train" / "c").mkdir()
    (tmp_path / "d" / "train" / "c" / "bad.png").write_bytes(b"")
    with pytest.warns(DataWarning, match="left out class folder.*c.*2 test image"):
        ds = load_dataset(f"folder:{tmp_path / 'd'}", progress=False)
    assert ds.classes == ["a", "b"] and len(ds.test_labels) == 4
    assert not any(f.startswith("test/c/") for f in ds.test_files)


def test_folder_lists_links_fifos_and_folders_named_like_images(tmp_path):
    import json
    import os

    root = write_image_folder(tmp_path / "pets", per_class=5)
    os.symlink(tmp_path / "gone.jpg", root / "cat" / "broken.jpg")
    os.symlink(root / "cat" / "loop.jpg", root / "cat" / "loop.jpg")
    os.mkfifo(root / "cat" / "pipe.png")
    (root / "dog" / "album.jpg").mkdir()
    (root / "dog" / "sub").mkdir()
    os.symlink(root / "dog", root / "dog" / "sub" / "up")  # a folder loop
    os.symlink(root / "cat" / "000.png", root / "dog" / "sub" / "linked.png")  # a good link
    (root / "stray.jpg").write_bytes((root / "cat" / "000.png").read_bytes())
    ds = load_dataset(f"folder:{root}", progress=False)
    assert ds.skipped == {
        "cat/broken.jpg": "broken link: its target does not exist",
        "cat/loop.jpg": "symlink loop",
        "cat/pipe.png": "not a regular file: a FIFO, socket or device",
        "dog/album.jpg": "folder named like an image, not an image file",
        "dog/sub/up": "folder already scanned through another path: a link loop or a second link",
        "stray.jpg": "image outside any class folder",
    }
    assert "dog/sub/linked.png" in ds.train_files + ds.test_files  # links to files are read
    assert len(ds.train_labels) + len(ds.test_labels) == 11
    note = next(n for n in ds.notes if n.startswith("skipped"))
    assert note.startswith("skipped 6 unreadable file(s): cat/broken.jpg (broken link")
    out = json.loads(call_cli("datasets", f"folder:{root}", "--json").stdout)
    assert out["skipped"] == ds.skipped
    text = call_cli("datasets", f"folder:{root}").stdout
    assert "skipped 6 unreadable file(s)" in text and "dog/sub/up" in text


def test_folder_that_cannot_be_listed_is_one_sentence(tmp_path, monkeypatch):
    from pathlib import Path

    root = write_image_folder(tmp_path / "pets", per_class=3)
    real = Path.iterdir

    def denied(self):
        if self == root:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", denied)  # root ignores permissions, so simulate them
    with pytest.raises(ConvscopeError, match="could not be read .Permission denied.; check"):
        load_dataset(f"folder:{root}", progress=False)


def _flat_photos(root, n=5):
    """A folder of photos with no class folders (a user's own, unlabelled)."""
    root.mkdir(parents=True)
    write_image_folder(root / "tmp", classes=("x",), per_class=n)
    for f in sorted((root / "tmp" / "x").iterdir()):
        f.rename(root / f.name)
    (root / "tmp" / "x").rmdir()
    (root / "tmp").rmdir()
    return root


def test_a_folder_without_class_folders_is_one_unlabelled_set(tmp_path):
    from convscope.data.base import UNLABELLED

    ds = load_dataset(f"folder:{_flat_photos(tmp_path / 'photos')}", progress=False)
    assert ds.classes == [UNLABELLED]
    assert len(ds.train_images) == 0 and len(ds.test_images) == 5  # every image is looked at
    assert ds.skipped == {}  # the photos are not "outside any class folder"
    mean, std = ds.normalization()
    assert all(np.isfinite(mean)) and all(s > 0 for s in std)
    assert any("unlabelled" in n for n in ds.notes)


def test_training_on_an_unlabelled_folder_is_refused(tmp_path):
    root = _flat_photos(tmp_path / "photos")
    proc = call_cli("train", "--data", f"folder:{root}", "--model", "linear", "--epochs", "1",
                    "--out", tmp_path / "run", check=1)
    assert "one folder per class" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()
