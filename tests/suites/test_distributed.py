"""torchrun with 2 CPU processes (gloo, loopback) computes what one process does."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, run_cli
from tests.suites.test_reliability import checkpoint_step

TORCHRUN = Path(sys.executable).with_name("torchrun")
# no batch norm (its statistics are per process under DDP on the CPU) and no dropout;
# flip + crop augmentation stays on: its random numbers are drawn for the global batch
TRAIN = ["train", "--data", "fake:size=12,n=192,test=40,classes=3", "--model",
         "convnet:width=6,fc=16,bn=false", "--epochs", "2", "--batch-size", "32", "--lr",
         "0.1", "--seed", "7", "--augment", "flip-crop", "--quiet"]
#: weights may differ by float rounding: gradients are summed in another order
ATOL = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, nproc: int = 2, wait: bool = True, timeout: int = 600, check: bool = True):
    cmd = [str(TORCHRUN), f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", *map(str, args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed")


def test_two_processes_train_the_same_weights_as_one(tmp_path):
    run_cli(*TRAIN, "--out", tmp_path / "one")
    torchrun("-m", "convscope", *TRAIN, "--out", tmp_path / "two")
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=ATOL, rtol=0), (k, (a[k] - b[k]).abs().max())
    ra = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    for x, y in zip(ra, rb, strict=True):
        assert x["test_acc"] == y["test_acc"]
        assert abs(x["train_loss"] - y["train_loss"]) < 1e-4
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["resolved"]["processes"] == 2


def test_a_linear_probe_under_torchrun_matches_one_process(tmp_path):
    """Transfer learning under torchrun: the frozen EfficientNet-Lite0 stays in eval mode (no
    per-process batch statistics, no dropout), so two processes train the head one does."""
    from convscope.models.pretrained import pretrained_entry

    if not pretrained_entry("efficientnet-lite0").installed:
        pytest.skip("efficientnet-lite0 is not installed")
    probe = ["train", "--data", "fake:size=32,channels=3,n=64,test=16,classes=3", "--model",
             "efficientnet-lite0", "--weights", "pretrained", "--freeze", "--epochs", "2",
             "--batch-size", "16", "--seed", "2", "--augment", "flip-crop", "--quiet"]
    run_cli(*probe, "--out", tmp_path / "one")
    torchrun("-m", "convscope", *probe, "--out", tmp_path / "two")
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=ATOL, rtol=0), (k, (a[k] - b[k]).abs().max())
    assert json.loads((tmp_path / "two" / "config.json").read_text())["resolved"]["processes"] == 2


EXTRACT = """
import sys, torch, convscope
from convscope import distributed
from convscope.inspect.features import extract
from convscope.train.loop import sharded_logits
d = distributed.init_from_env("cpu")
clf = convscope.load(sys.argv[1])
ds = convscope.load_dataset("digits")
feats = extract(clf, ds.test_images, ["fc1_relu", "pool1"], batch_size=64, progress=False)
logits = sharded_logits(clf, ds.test_images, 64)
if d.is_main:
    torch.save({**feats, "logits": logits}, sys.argv[2])
distributed.shutdown()
"""


def test_feature_extraction_is_identical(tmp_path, digits_model):
    script = tmp_path / "extract.py"
    script.write_text(EXTRACT)
    subprocess.run([sys.executable, script, digits_model, tmp_path / "one.pt"], check=True,
                   cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    torchrun(script, digits_model, tmp_path / "two.pt")
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys()
    for k in one:
        assert one[k].shape[0] == 360
        assert torch.equal(one[k], two[k]), k


def test_evaluate_under_torchrun_matches(tmp_path, digits_model):
    single = json.loads(run_cli("evaluate", digits_model, "--json").stdout)
    proc = torchrun("-m", "convscope", "evaluate", digits_model, "--json")
    double = json.loads(proc.stdout)
    assert double["top1"] == single["top1"] and double["confusion"] == single["confusion"]


def kill_all(needle: str) -> None:
    """SIGKILL every process whose command line mentions ``needle``."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes().decode(errors="ignore"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def test_kill_under_torchrun_resume_single_process_one_writer(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", "fake:size=16,n=1600,test=40,classes=3", "--model",
            "convnet:width=8,fc=16,bn=false", "--epochs", "4", "--batch-size", "16", "--seed",
            "1", "--quiet", "--out", out]
    proc = torchrun("-m", "convscope", *args, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if checkpoint_step(out) == (2, 0):  # epoch 1 finished and was checkpointed
            kill_all(str(out))  # torchrun and its workers (which have sessions of their own)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode != 0, "the run finished before it could be killed"
    time.sleep(1)
    assert not (out / "model.safetensors").exists()
    resumed_at = checkpoint_step(out)[0]
    assert resumed_at < 4
    # a checkpoint does not depend on the number of processes: resume with just one
    done = run_cli("train", "--resume", out, "--quiet")
    assert f"resuming at epoch {resumed_at}" in done.stdout, done.stdout
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # none logged twice
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.safetensors", "config.json", "metrics.jsonl", "model.safetensors"]


def test_torchrun_needs_out(tmp_path):
    proc = torchrun("-m", "convscope", "train", "--data", "digits", "--model", "linear",
                    check=False)
    assert proc.returncode != 0
    assert "under torchrun, pass --out DIR" in proc.stderr
    # torchrun itself reports a failed worker with its own traceback; ours has none
    assert "src/convscope" not in proc.stderr


# (no "--n": torchrun's own parser would take it for an abbreviation of its options)
@pytest.mark.parametrize("view", [
    ["patches", "--layer", "conv1_2", "--channels", "0-3", "--top-k", "5"],
    ["neighbors", "--top-k", "3"],
    ["embed", "--method", "pca"],
])
def test_views_under_torchrun_match_one_process(tmp_path, digits_model, view):
    """Sharded extraction gives exactly the single-process top-k patches, neighbours and
    embedding coordinates."""
    def result(text):
        data = json.loads(text)
        data.pop("config", None)
        return data

    one = run_cli(view[0], digits_model, *view[1:], "--json", "--quiet", "--out",
                  tmp_path / "one.png").stdout
    two = torchrun("-m", "convscope", view[0], digits_model, *view[1:], "--json", "--quiet",
                   "--out", tmp_path / "two.png").stdout
    assert result(one) == result(two)


def test_report_under_torchrun_matches_one_process(tmp_path, digits_model):
    """The report's dataset passes are sharded; one process writes the page, with the same
    measured figures as a single process's page."""
    import re

    def facts(path):
        html = path.read_text()
        m = re.search(r'<script type="application/json" id="convscope-config">(.*?)</script>',
                      html, re.S)
        return json.loads(m.group(1))["facts"]

    sections = ["--sections", "accuracy", "mistakes", "neighbours", "--quiet"]
    run_cli("report", digits_model, "--out", tmp_path / "one.html", *sections)
    proc = torchrun("-m", "convscope", "report", digits_model, "--out", tmp_path / "two.html",
                    *sections)
    assert proc.stdout.count("wrote ") == 1, proc.stdout  # one writer
    one, two = facts(tmp_path / "one.html"), facts(tmp_path / "two.html")
    assert one["top1"] == two["top1"] and one["wrong"] == two["wrong"]
    assert one["neighbour_agreement"] == two["neighbour_agreement"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.html", "two.html"]


def test_a_detector_and_a_segmenter_train_under_torchrun(tmp_path):
    """Boxes and masks under DDP: each process augments its share as one process would
    (tests/train/test_annotated.py), gradients are averaged, one process writes the files."""
    for data, model in (("fake-boxes:n=16,test=4,size=40", "fcos:fpn_channels=64"),
                        ("fake-masks:n=16,test=4,size=40", "lraspp")):
        out = tmp_path / model.split(":")[0]
        torchrun("-m", "convscope", "train", "--data", data, "--model", model, "--epochs", "1",
                 "--batch-size", "4", "--out", out, "--quiet")
        config = json.loads((out / "config.json").read_text())
        assert config["resolved"]["processes"] == 2
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["train_loss"] > 0
        assert not (out / ".pending").exists()
        ev = json.loads(run_cli("evaluate", out / "model.safetensors", "--json").stdout)
        assert ev["images"] == 4
