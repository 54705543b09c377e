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


def kill_after_step(train: list[str], out: Path, step: int) -> None:
    """Run ``train`` into ``out`` checkpointing every ``step`` steps, and SIGKILL it once a
    checkpoint of epoch 1 at step ``step`` or later is on disk."""
    proc = python_cli(*train, "--out", out, "--checkpoint-every", str(step))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        where = checkpoint_step(out)
        if where and where[0] == 1 and where[1] >= step:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    run_cli(*TRAIN, "--out", out)
    return out


def test_kill_mid_epoch_then_resume_gives_identical_weights(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    kill_after_step(TRAIN, out, 10)
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
        self.objective.loss_fn = lambda logits, y: logits.sum() * float("nan")  # epoch 2 diverges

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


# ---------------------------------------------------------------- full disks, --force (issue 20)
SMALL = dict(model="linear", epochs=1, progress=False, verbose=False)
SMALL_DATA = "fake:size=8,n=32,test=8,classes=2"


def _run_files(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in ("config.json", "metrics.jsonl",
                                                   "model.safetensors")}


def test_full_disk_during_forced_run_keeps_the_earlier_run(tmp_path, monkeypatch):
    """safetensors reports a full disk as SafetensorError: one sentence, and --force's new
    run has not touched the earlier run's files."""
    import safetensors.torch as st
    from safetensors import SafetensorError

    out = tmp_path / "run"
    convscope.train(SMALL_DATA, out=str(out), **SMALL)
    before = _run_files(out)

    def full(tensors, path, metadata=None):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: "
                              "StorageFull, message: \"No space left on device\" })")

    monkeypatch.setattr(st, "save_file", full)
    with pytest.raises(ConvscopeError, match=r"the disk is full"):
        convscope.train(SMALL_DATA, out=str(out), seed=1, **SMALL)
    assert _run_files(out) == before
    monkeypatch.undo()
    convscope.train(SMALL_DATA, out=str(out), seed=1, epochs=2, model="linear",
                    progress=False, verbose=False)  # a later forced run replaces it at the end
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    assert [r["epoch"] for r in metrics(out)] == [1, 2] and not (out / ".pending").exists()


def test_full_disk_on_metrics_append_is_one_sentence(tmp_path):
    from convscope.fileio import append_text

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(ConvscopeError, match=r"^could not write /dev/full: the disk is full"):
        append_text("/dev/full", '{"epoch": 1}\n')


def test_cli_on_a_full_tmpfs(tmp_path):
    """A real 2 MB tmpfs: the forced run stops with one sentence, the earlier run survives."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        out = mnt / "run"
        args = ["train", "--data", SMALL_DATA, "--model", "convnet:width=4,fc=8", "--epochs",
                "1", "--quiet", "--out", out]
        run_cli(*args)
        before = _run_files(out)
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        (mnt / "filler").write_bytes(b"\0" * max(0, free - 8192))
        err = run_cli(*args, "--force", "--seed", "1", check=1).stderr
        assert "the disk is full" in err and err.count("\n") == 1, err
        assert _run_files(out) == before
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_run_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        convscope.train(SMALL_DATA, out=str(tmp_path / "a"), **SMALL)
        os.umask(0o077)
        convscope.train(SMALL_DATA, out=str(tmp_path / "b"), **SMALL)
    finally:
        os.umask(old)
    for name in ("config.json", "metrics.jsonl", "model.safetensors", CHECKPOINT_NAME):
        assert (tmp_path / "a" / name).stat().st_mode & 0o777 == 0o644, name
        assert (tmp_path / "b" / name).stat().st_mode & 0o777 == 0o600, name


def test_resume_removes_every_stale_temp(tmp_path):
    out = tmp_path / "run"
    convscope.train(SMALL_DATA, out=str(out), **SMALL)
    (out / "model.safetensors").unlink()  # killed after the last checkpoint
    stale = [out / f".{n}.abc123.tmp" for n in ("model.safetensors", "config.json",
                                                "metrics.jsonl", CHECKPOINT_NAME)]
    for p in stale:
        p.write_bytes(b"half")
    convscope.resume(out, progress=False, verbose=False)
    assert (out / "model.safetensors").is_file()
    assert not [p for p in stale if p.exists()]


# ---------------------------------------------------------------- resume after changes (issue 20)
def _folder_run(tmp_path) -> tuple[Path, Path]:
    from tests.conftest import write_image_folder

    data = write_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=6)
    out = tmp_path / "run"
    run_cli("train", "--data", f"folder:{data}", "--model", "linear", "--epochs", "1",
            "--holdout", "0", "--quiet", "--out", out)
    (out / "model.safetensors").unlink()  # as if killed before the model file was written
    return data, out


def test_resume_after_a_class_was_added(tmp_path):
    from tests.conftest import write_image_folder

    data, out = _folder_run(tmp_path)
    write_image_folder(data, classes=("cat", "dog", "eel"), per_class=6)
    err = run_cli("train", "--resume", out, "--quiet", check=1).stderr
    assert "changed since this run started (classes added: eel)" in err, err
    assert err.count("\n") == 1


def test_resume_after_images_were_removed(tmp_path):
    data, out = _folder_run(tmp_path)
    for p in sorted((data / "dog").iterdir())[:2]:
        p.unlink()
    err = run_cli("train", "--resume", out, "--quiet", check=1).stderr
    assert "it had 12 training images and now has 10" in err, err


@pytest.mark.parametrize("damage, message", [
    # cut inside a string (where half the file ends depends on which options there are)
    (lambda text: text[: text.index('"recipe"') + 4], "is damaged (Unterminated"),
    (lambda text: json.dumps({**json.loads(text), "epochs": "many"}),
     "is damaged ('epochs' is 'many', expected int"),
    (lambda text: "[1, 2]", "is damaged (not a JSON object)"),
])
def test_resume_with_a_damaged_config(tmp_path, damage, message):
    out = tmp_path / "run"
    convscope.train(SMALL_DATA, out=str(out), **SMALL)
    (out / "config.json").write_text(damage((out / "config.json").read_text()))
    err = run_cli("train", "--resume", out, check=1).stderr
    assert message in err and err.count("\n") == 1, err


# a detector: 2 epochs of 6 steps on tiny canvases, with the scale-and-shift jitter on
TRAIN_BOXES = ["train", "--data", "fake-boxes:n=24,test=4,size=40", "--model",
               "fcos:fpn_channels=64", "--epochs", "2", "--batch-size", "4", "--seed", "5",
               "--augment", "flip-crop", "--quiet"]


def test_a_detector_killed_mid_epoch_then_resumed_gives_identical_weights(tmp_path):
    straight = tmp_path / "straight"
    run_cli(*TRAIN_BOXES, "--out", straight)
    out = tmp_path / "killed"
    kill_after_step(TRAIN_BOXES, out, 2)
    where = checkpoint_step(out)
    assert where[0] == 1 and 0 < where[1] < 6  # resumed from the middle of epoch 1
    proc = run_cli("train", "--resume", out, "--quiet")
    assert "resuming at epoch 1" in proc.stdout
    a = load_file(straight / "model.safetensors")
    b = load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert metrics(out) == metrics(straight)
