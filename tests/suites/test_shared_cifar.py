"""Integration on real images: a 5,000-image CIFAR-10 subset from ../shared/data.

Skipped when the shared folder is absent.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.shared_data


def test_train_then_evaluate_agree(cifar_subset, tmp_path):
    out = tmp_path / "run"
    run_cli("train", "--data", f"folder:{cifar_subset}", "--model", "convnet:width=16",
            "--epochs", "2", "--out", out, "--quiet")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    ev = json.loads(run_cli("evaluate", out / "model.safetensors", "--json", "--quiet").stdout)
    assert ev["n"] == 1000  # the seeded 20% split, the same one training used
    assert ev["top1"] == pytest.approx(last["test_acc"], abs=1e-9)
    assert ev["top5"] == pytest.approx(last["test_top5"], abs=1e-9)
    assert ev["top1"] > 0.3  # learns real images: chance is 0.1
