"""`convscope report` on a CIFAR-10-sized model and 10,000 test images: seconds per section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, SHARED_CIFAR

TITLE = "report: a CIFAR-10-sized model and 10,000 test images"
DESCRIPTION = (
    "Seconds per section of one `convscope report` run with its default settings, as the "
    "report itself records them. Model: the default `convnet` (32x32x3, 0.47 M parameters) "
    "trained for one epoch on the shared CIFAR-10 folder with `--holdout 10000`, so the "
    "report scores 10,000 held-out images; the t-SNE map embeds 2,000 of them, the "
    "neighbours search 10,000 of the 40,000 training images, the attribution panels cover 6 "
    "images and the faithfulness curves 40. Each step runs in a fresh process (`python -m "
    "convscope`), like a user's; skipped when the shared data is absent."
)


def _data() -> str | None:
    """The shared CIFAR-10 archive (BENCH_REPORT_DATA names it where ../shared is elsewhere,
    e.g. from a worktree)."""
    path = os.environ.get("BENCH_REPORT_DATA") or (str(SHARED_CIFAR) if SHARED_CIFAR.is_file()
                                                     else None)
    return f"folder:{path}" if path else None


def _convscope(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "convscope", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def run(quick: bool) -> dict:
    data = _data()
    if data is None:
        return {"columns": ["section", "seconds"], "rows": [],
                "notes": ["skipped: the shared CIFAR-10 archive is absent (set "
                          "BENCH_REPORT_DATA=/path/to/cifar10-train-jpeg.tar.gz)."]}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        train_s = _convscope("train", "--data", data, "--model", "convnet", "--epochs", "1",
                             "--holdout", "10000", "--out", str(out / "m"), "--quiet")
        args = ["report", str(out / "m" / "model.safetensors"), "--out", str(out / "r.html"),
                "--quiet"]
        if quick:
            args += ["--skip", "faithfulness", "classes", "--embed-n", "500"]
        wall = _convscope(*args)
        from convscope.render.report import SECTIONS, read_report_config

        cfg = read_report_config((out / "r.html").read_text())
    seconds, facts = cfg["seconds"], cfg["facts"]
    rows = [["loading the data", "", round(seconds["data"], 1)]]
    rows += [[SECTIONS[name].title + f" (`{name}`)", "yes" if SECTIONS[name].costly else "",
              round(seconds[name], 1)] for name in cfg["sections"]]
    rows.append(["**total** (the report's own clock)", "", round(seconds["total"], 1)])
    rows.append(["wall clock of `convscope report`, start-up included", "", round(wall, 1)])
    return {
        "columns": ["section", "costly", "seconds"],
        "rows": rows,
        "notes": [
            f"{cfg['test_images']:,} test images scored; the model's test top-1 after its one "
            f"epoch ({train_s:.0f} s of training): {100 * facts['top1']:.1f}%.",
            "`--skip faithfulness classes neighbours tsne patches explanations` (the costly "
            "ones) leaves the cheap sections, and `--embed-n`, `--faithfulness-n`, "
            "`--class-steps` size the costly ones.",
            f"1-minute load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} "
            "at the end (the 2 CPUs are shared with other jobs).",
            json.dumps({k: v for k, v in cfg.items() if k in ("n", "explain_images",
                                                               "faithfulness_images",
                                                               "class_steps",
                                                               "neighbour_database")}),
        ],
    }
