"""Model files that can't run code, malformed files, and every odd image answered."""

from __future__ import annotations

import json
import pickle
import re
import struct

import numpy as np
import pytest
import torch

import convscope
from convscope.errors import ImageError, ModelFileError
from convscope.images import open_image
from tests.conftest import call_cli, run_cli
from tests.corpus import build_corpus, upright


class Evil:
    """Unpickling this runs a shell command that creates a sentinel file."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.sentinel}",))


@pytest.fixture
def evil_files(tmp_path):
    sentinel = tmp_path / "PWNED"
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps({"weight": Evil(sentinel)}))
    zipped = tmp_path / "evil.pth"
    torch.save({"weight": Evil(sentinel)}, zipped)  # torch's zip format, code in data.pkl
    disguised = tmp_path / "evil.safetensors"
    disguised.write_bytes(plain.read_bytes())
    assert not sentinel.exists()
    return sentinel, [plain, zipped, disguised]


def test_pickles_are_refused_without_running(evil_files, tmp_path):
    sentinel, files = evil_files
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(img)
    for f in files:
        for args in (["info", f], ["predict", f, img], ["evaluate", f, "--data", "digits"],
                     ["train", "--data", "digits", "--model", "resnet18", "--weights", f,
                      "--epochs", "1", "--out", tmp_path / "run", "--force"]):
            proc = call_cli(*args, check=None)
            assert proc.returncode != 0
            assert "error:" in proc.stderr
        with pytest.raises(convscope.ConvscopeError):
            convscope.load(f)
    assert not sentinel.exists(), "a pickle was executed"


def _craft(path, tensors: dict, data: bytes, metadata=None, header_len=None):
    header = dict(tensors)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    n = len(raw) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + raw + data)
    return path


def test_malformed_safetensors_each_get_a_clean_error(tmp_path, digits_model):
    good = digits_model.read_bytes()
    meta = {"convscope": json.dumps({"format": "convscope-model"})}
    f32 = lambda shape, b, e: {"dtype": "F32", "shape": shape, "data_offsets": [b, e]}  # noqa: E731
    cases = {
        "truncated": (lambda p: p.write_bytes(good[: len(good) // 2]), "truncated"),
        "tiny": (lambda p: p.write_bytes(b"\x01\x02"), "truncated"),
        "huge header": (lambda p: _craft(p, {}, b"", header_len=2**40), "more than the 100 MB"),
        "header past end": (lambda p: _craft(p, {}, b"", header_len=4096), "truncated"),
        "offsets past end": (lambda p: _craft(p, {"w": f32([4], 0, 16)}, b"\0" * 8, meta),
                             "past the end"),
        "overlap": (lambda p: _craft(p, {"a": f32([2], 0, 8), "b": f32([2], 4, 12)},
                                     b"\0" * 12, meta), "overlap"),
        "size vs shape": (lambda p: _craft(p, {"a": f32([3], 0, 8)}, b"\0" * 8, meta),
                          "needs 12"),
        "bad dtype": (lambda p: _craft(p, {"a": {"dtype": "Q9", "shape": [1],
                                                 "data_offsets": [0, 1]}}, b"\0", meta),
                      "no valid dtype"),
        "not json": (lambda p: p.write_bytes(struct.pack("<Q", 3) + b"\xff\xfe\x00"),
                     "not JSON"),
        "no metadata": (lambda p: _craft(p, {"a": f32([1], 0, 4)}, b"\0" * 4), "not a convscope"),
    }
    for name, (make, needle) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        make(path)
        with pytest.raises(ModelFileError, match=needle):
            convscope.load(path)
        err = call_cli("info", path, check=1).stderr
        assert needle in err and err.count("\n") == 1, (name, err)


def test_shape_that_does_not_match_metadata(tmp_path, digits_model):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(digits_model), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    tensors["classifier.weight"] = torch.zeros(3, 5)
    save_file(tensors, tmp_path / "m.safetensors", metadata=metadata)
    with pytest.raises(ModelFileError, match="classifier.weight.*shape \\[3, 5\\]"):
        convscope.load(tmp_path / "m.safetensors")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, build_corpus(folder)


def test_corpus_has_at_least_15_cases(corpus):
    _, cases = corpus
    assert len(cases) >= 15
    assert sum(not c.accepted for c in cases) >= 8


def test_every_corpus_image_gets_its_documented_outcome(corpus):
    folder, cases = corpus
    for case in cases:
        if case.accepted:
            img = open_image(folder / case.name)
            assert img.mode in ("L", "RGB"), case.name
        else:
            with pytest.raises(ImageError, match=case.reason) as exc:
                open_image(folder / case.name)
            assert case.name in str(exc.value)


def test_exif_rotated_images_are_predicted_upright(corpus, digits_model):
    folder, _ = corpus
    clf = convscope.load(digits_model)
    want = clf.as_batch(upright())
    for n in range(1, 9):
        got = clf.as_batch(str(folder / f"exif{n}.jpg"))
        assert (got.int() - want.int()).abs().max() <= 12, n  # JPEG noise only
    up = np.asarray(open_image(folder / "exif6.jpg").convert("L"))
    assert up.shape == (24, 32) and up[:8, :8].mean() > 200 and up[-4:].mean() < 150


def test_predict_answers_the_whole_corpus(corpus, digits_model):
    folder, cases = corpus
    proc = run_cli("predict", digits_model, *[folder / c.name for c in cases], "--json",
                   check=1)
    results = {r["image"].rsplit("/", 1)[-1]: r for r in json.loads(proc.stdout)}
    for case in cases:
        r = results[case.name]
        if case.accepted:
            assert len(r["top"]) == 5, case.name
        else:
            assert case.reason in r["error"] and case.name in r["error"], case.name
    assert proc.stderr.count("error:") == sum(not c.accepted for c in cases)


def test_folder_training_skips_and_lists_bad_files(corpus, tmp_path):
    import shutil

    from tests.conftest import write_image_folder

    folder, cases = corpus
    root = write_image_folder(tmp_path / "data", per_class=8)
    for i, case in enumerate(cases):
        shutil.copy(folder / case.name, root / ("cat" if i % 2 else "dog") / case.name)
    out = tmp_path / "run"
    proc = run_cli("train", "--data", f"folder:{root}", "--model", "linear", "--epochs", "1",
                   "--image-size", "16", "--out", out, "--quiet")
    bad = [c.name for c in cases if not c.accepted]
    skipped_line = next(line for line in proc.stdout.splitlines() if "skipped" in line)
    assert f"skipped {len(bad)} unreadable file(s)" in skipped_line
    for name in bad:
        assert name in skipped_line
    assert (out / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def model_corpus(tmp_path_factory, digits_model):
    from tests.corpus import build_model_corpus

    folder = tmp_path_factory.mktemp("model_corpus")
    sentinel = folder / "PWNED"
    cases = build_model_corpus(folder, digits_model, sentinel)
    assert not sentinel.exists()
    return folder, sentinel, cases


def test_model_corpus_is_refused_with_one_sentence_each(model_corpus, tmp_path):
    from PIL import Image

    folder, sentinel, cases = model_corpus
    assert len(cases) >= 15
    img = tmp_path / "x.png"
    Image.new("L", (8, 8), 100).save(img)
    for case in cases:
        path = folder / case.name
        with pytest.raises(convscope.ConvscopeError, match=re.escape(case.reason)):
            convscope.load(path)
        commands = [["predict", path, img], ["layers", path]]
        if case.what.startswith("metadata `") or path.suffix != ".safetensors":
            commands.append(["info", path])  # info reads the metadata, never the weights
        for args in commands:
            err = call_cli(*args, check=1).stderr
            assert case.reason in err and err.count("\n") == 1, (case.name, args, err)
    assert not sentinel.exists(), "a pickle inside a model file was executed"


def test_pt2_and_torchscript_need_trust_code(model_corpus, tmp_path):
    from tests.corpus import TS_MARKER, _tiny_export

    folder, sentinel, _ = model_corpus
    for name in ("payload.pt2", "payload.ts"):
        proc = run_cli("summary", folder / name, "--input", "8x8x1", check=1)
        assert "--trust-code" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert TS_MARKER not in proc.stdout + proc.stderr
        with pytest.raises(convscope.ConvscopeError, match="trust_code=True"):
            convscope.summarize(folder / name, "8x8x1")
    assert not sentinel.exists(), "a .pt2 entry was unpickled without --trust-code"
    # a torch.save'd state dict named .pt is a pickle: refused, never unpickled
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    err = call_cli("summary", tmp_path / "weights.pt", "--input", "8x8x1", check=1).stderr
    assert "never unpickles" in err
    # with --trust-code a file made by the user opens as before, and the help says what it allows
    good = _tiny_export(tmp_path / "good.pt2")
    out = call_cli("summary", good, "--trust-code").stdout
    assert "on a 8x8x1 input" in out
    helptext = call_cli("summary", "--help").stdout
    assert "--trust-code" in helptext and "runs code inside the file" in " ".join(helptext.split())


def test_non_finite_scores_are_refused(digits_model, tmp_path):
    """Finite weights so large that the scores overflow: no "nan" probabilities, exit 1."""
    clf = convscope.load(digits_model)
    with torch.no_grad():
        for p in clf.model.parameters():
            p.mul_(1e30)
    clf.save(tmp_path / "overflow.safetensors")
    with pytest.raises(convscope.ConvscopeError, match="NaN or infinite scores"):
        clf.topk(np.zeros((8, 8), np.uint8))
    from PIL import Image

    Image.new("L", (8, 8), 100).save(tmp_path / "x.png")
    proc = call_cli("predict", tmp_path / "overflow.safetensors", tmp_path / "x.png", check=1)
    assert "nan" not in proc.stdout and "NaN or infinite scores" in proc.stderr


def test_huge_model_names_are_refused_before_allocating():
    from convscope.models import ModelInput, build_model

    with pytest.raises(convscope.ConvscopeError, match="90,065,100,010 parameters"):
        build_model("spec:CONV3-100000-CONV3-100000-FC", ModelInput(1, 10, (8, 8)))
    with pytest.raises(convscope.ConvscopeError, match="at layer conv1_1"):
        build_model("spec:CONV3-64-GAP-FC", ModelInput(1, 10, (8192, 8192)))
