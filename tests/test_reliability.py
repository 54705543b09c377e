"""Crash-safe training: kill and resume, half-written checkpoints, Ctrl-C, divergence."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import convscope
from convscope.errors import ConvscopeError
from convscope.train.checkpoint import CHECKPOINT_NAME
from tests.conftest import ROOT, run_cli

# long enough to be killed mid-epoch: 2 epochs of 50 steps with random crop+flip on
TRAIN = ["train", "--data", "fake:size=12,n=800,test=100,classes=4", "--model",
         "convnet:width=8,fc=32,dropout=0.2", "--epochs", "2", "--batch-size", "16", "--seed",
         "3", "--quiet"]


def python_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "convscope", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpoint_step(folder: Path) -> tuple[int, int] | None:
    """(epoch, step) of the checkpoint in folder, read from its header, or None."""
    from convscope.modelfile import verify_file

    try:
        header = verify_file(folder / CHECKPOINT_NAME)
    except ConvscopeError:
        return None
    loop = json.loads(header["__metadata__"]["convscope-checkpoint"])["loop"]
    return loop["epoch"], loop["step"]


def metrics(folder: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if "sec" not in k}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    run_cli(*TRAIN, "--out", out)
    return out


def test_kill_mid_epoch_then_resume_gives_identical_weights(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    proc = python_cli(*TRAIN, "--out", out, "--checkpoint-every", "10")
    deadline = time.time() + 300
    where = None
    while time.time() < deadline and proc.poll() is None:
        where = checkpoint_step(out)
        if where and where[0] == 1 and where[1] >= 10:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    where = checkpoint_step(out)
    assert where[0] == 1 and 0 < where[1] < 50  # the checkpoint resumed from is mid-epoch
    assert not (out / "model.safetensors").exists()

    proc = run_cli("train", "--resume", out, "--quiet")
    assert "resuming at epoch 1" in proc.stdout
    a = load_file(uninterrupted / "model.safetensors")
    b = load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert metrics(out) == metrics(uninterrupted)


def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path):
    """A writer killed half-way leaves only a temp file; the last checkpoint still loads and
    resume ignores (and removes) the partial file."""
    out = tmp_path / "run"
    script = f"""
import os, time, safetensors.torch as st
import convscope
real = st.save_file
calls = []
def slow_save(tensors, path, metadata=None):
    calls.append(path)
    if len(calls) == 2:  # the second checkpoint: write half a file, then hang
        with open(path, "wb") as f:
            f.write(b"x" * 1000)
            f.flush()
        open({str(tmp_path / 'hanging')!r}, "w").close()
        time.sleep(600)
    real(tensors, path, metadata=metadata)
st.save_file = slow_save
convscope.train("fake:size=8,n=64,test=16,classes=2", model="convnet:width=4,fc=8", epochs=3,
                batch_size=16, out={str(out)!r}, progress=False, verbose=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.time() + 300
    while not (tmp_path / "hanging").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert (tmp_path / "hanging").exists()
    partial = list(out.glob(f".{CHECKPOINT_NAME}.*.tmp"))
    assert partial, "the killed writer should have left its temp file"
    assert checkpoint_step(out) == (2, 0)  # the first (epoch 1) checkpoint is intact
    clf = convscope.resume(out, progress=False, verbose=False)
    assert not list(out.glob(f".{CHECKPOINT_NAME}.*.tmp"))
    assert [r["epoch"] for r in metrics(out)] == [1, 2, 3]
    assert clf.meta.metrics["epoch"] == 3


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    # many short epochs, interrupted as soon as the first one is logged: a fast machine
    # cannot finish the other 39 before the signal lands
    proc = python_cli("train", "--data", "fake:size=12,n=160,test=32,classes=4", "--model",
                      "convnet:width=8,fc=32", "--epochs", "40", "--batch-size", "16",
                      "--seed", "3", "--quiet", "--out", out)
    deadline = time.time() + 300
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted at epoch" in err and "--resume" in err
    assert checkpoint_step(out) is not None
    run_cli("train", "--resume", out, "--quiet")
    assert (out / "model.safetensors").is_file()
    err = run_cli("train", "--resume", out, check=1).stderr
    assert "already finished" in err


def test_divergence_stops_with_step_and_lr(tmp_path):
    out = tmp_path / "run"
    err = run_cli("train", "--data", "fake:size=8,n=64,test=16", "--model", "linear",
                  "--epochs", "3", "--batch-size", "16", "--lr", "1e30", "--warmup-epochs",
                  "0", "--out", out, "--quiet", check=1).stderr
    assert re.search(r"training diverged: the loss became nan at epoch 1, step \d+ "
                     r"\(learning rate [0-9.e+]+\)", err), err
    assert not (out / "model.safetensors").exists()


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from convscope.train import loop

    real_end = loop.Trainer.end_epoch

    def end_then_poison(self):
        real_end(self)
        self.loss_fn = lambda logits, y: logits.sum() * float("nan")  # epoch 2 diverges

    monkeypatch.setattr(loop.Trainer, "end_epoch", end_then_poison)
    out = tmp_path / "run"
    with pytest.raises(ConvscopeError, match="last good checkpoint is kept in"):
        convscope.train("fake:size=8,n=32,test=8,classes=2", model="linear", epochs=3,
                        out=str(out), progress=False, verbose=False, max_grad_norm=1.0)
    assert checkpoint_step(out) == (2, 0)
    monkeypatch.undo()
    clf = convscope.resume(out, progress=False, verbose=False)
    assert clf.meta.metrics["epoch"] == 3


def test_resume_errors(tmp_path):
    err = run_cli("train", "--resume", tmp_path, check=1).stderr
    assert "holds no config.json" in err
    out = tmp_path / "r"
    convscope.train("fake:size=8,n=32,test=8,classes=2", model="linear", epochs=1,
                    out=str(out), progress=False, verbose=False)
    (out / "model.safetensors").unlink()  # a finished run whose model was removed
    err = run_cli("train", "--data", "fake:size=8,n=32,test=8,classes=2", "--out", out,
                  check=2).stderr
    assert "unfinished run" in err and "--resume" in err


def test_failed_save_raises(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write to read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(ConvscopeError, match="could not write"):
        convscope.train("fake:size=8,n=32,test=8,classes=2", model="linear", epochs=1,
                        out=str(ro / "run"), progress=False, verbose=False)


def test_failed_save_raises_even_as_root(tmp_path, monkeypatch):
    """A write that fails (here: the disk "fills up" during fsync) raises, never passes."""
    import convscope.fileio as fileio

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full_disk)
    with pytest.raises(ConvscopeError, match="No space left on device"):
        convscope.train("fake:size=8,n=32,test=8,classes=2", model="linear", epochs=1,
                        out=str(tmp_path / "run"), progress=False, verbose=False)
    assert not list((tmp_path / "run").glob(".*.tmp"))
