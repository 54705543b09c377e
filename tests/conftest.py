"""Shared fixtures: isolated caches, tiny datasets and models, a CLI runner.

Everything runs on the CPU with fixed seeds and small sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CIFAR_TAR = SHARED_DATA / "cifar10-train-jpeg.tar.gz"


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory):
    """Caches and downloads go to a temp folder; plots need no screen."""
    base = tmp_path_factory.mktemp("env")
    os.environ["CONVSCOPE_CACHE"] = str(base / "cache")
    os.environ["CONVSCOPE_DATA"] = str(base / "data")
    os.environ["MPLBACKEND"] = "Agg"
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield


def run_cli(*args: str, check: int | None = 0, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m convscope ARGS`` in a subprocess, like a user would."""
    proc = subprocess.run([sys.executable, "-m", "convscope", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if check is not None:
        assert proc.returncode == check, (
            f"exit {proc.returncode} != {check}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def call_cli(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    """Run ``convscope ARGS`` in this process (fast: torch is already imported)."""
    import contextlib
    import io
    import traceback

    from convscope.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - a traceback is exactly what we test against
            traceback.print_exc(file=err)
            code = -1
    proc = subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
    if check is not None:
        assert code == check, f"exit {code} != {check}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def run_main(capsys, *args) -> tuple[int, str, str]:
    """``call_cli`` as (status, stdout, stderr)."""
    proc = call_cli(*args, check=None)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory) -> Path:
    """A small convnet trained on sklearn digits for two epochs, saved to a file."""
    import convscope

    out = tmp_path_factory.mktemp("digits_model")
    convscope.train("digits", model="convnet:width=8,fc=32", epochs=2, out=str(out),
                    progress=False, verbose=False)
    return out / "model.safetensors"


@pytest.fixture(scope="session")
def mnist_model(tmp_path_factory) -> Path:
    """The default convnet trained on mnist5k for three epochs (about 15 s)."""
    import convscope

    out = tmp_path_factory.mktemp("mnist_model")
    convscope.train("mnist5k", model="convnet", epochs=3, out=str(out), progress=False,
                    verbose=False)
    return out / "model.safetensors"


@pytest.fixture(scope="session")
def cifar_tar() -> Path:
    if not CIFAR_TAR.is_file():
        pytest.skip("../shared/data/cifar10-train-jpeg.tar.gz is absent")
    return CIFAR_TAR


@pytest.fixture(scope="session")
def cifar_subset(cifar_tar, tmp_path_factory) -> Path:
    """500 images per class in folder: layout, as links into an extracted copy."""
    import tarfile

    base = tmp_path_factory.mktemp("cifar")
    with tarfile.open(cifar_tar) as tf:
        tf.extractall(base / "all", filter="data")
    sub = base / "subset"
    for cls in sorted((base / "all" / "train").iterdir()):
        (sub / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:500]:
            (sub / cls.name / f.name).symlink_to(f)
    return sub


def write_image_folder(root: Path, classes=("cat", "dog"), per_class=6, size=(12, 10),
                       mode="RGB", seed=0) -> Path:
    """A folder dataset of random PNG/JPEG images, class-dependent in colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.full((size[1], size[0], 3), 40 + 160 * ci // max(1, len(classes) - 1),
                           dtype=np.uint8)
            arr = np.clip(base + rng.integers(0, 60, base.shape), 0, 255).astype(np.uint8)
            img = Image.fromarray(arr).convert(mode)
            img.save(root / c / f"{i:03d}.{'jpg' if i % 2 else 'png'}")
    return root


# --------------------------------------------------------------------------- scene models
#: astronaut's face, measured by hand on scikit-image's 512x512 photo: x0, y0, x1, y1
ASTRONAUT_FACE = (175, 60, 275, 175)


@pytest.fixture(scope="session")
def scene_model():
    """``scene_model(name)``: the packaged scene network, opened once per session."""
    from convscope.scene import open_scene

    opened = {}

    def get(name: str):
        if name not in opened:
            opened[name] = open_scene(name)
        return opened[name]
    return get


@pytest.fixture(scope="session")
def photos():
    """scikit-image's astronaut, chelsea and coffee as (H, W, 3) uint8 arrays."""
    return {n: getattr(skimage.data, n)() for n in ("astronaut", "chelsea", "coffee")}
