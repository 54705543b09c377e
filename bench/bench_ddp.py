"""Data-parallel scaling on this machine: 1 process against 2 torchrun processes."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TITLE = "Data-parallel training: 1 process against 2 (torchrun, gloo, CPU)"
DESCRIPTION = (
    "Training throughput (images/s over one epoch, from metrics.jsonl) of the same run "
    "launched as a plain single process (torch's default threads), as `torchrun "
    "--nproc_per_node=1` and as `torchrun --nproc_per_node=2` (torchrun gives each process "
    "one thread). Same data, model, global batch and seed. Runs alternate and the median is "
    "reported."
)

ARGS = ["train", "--data", "fake:size=32,n=4000,test=100,classes=10", "--model",
        "convnet:width=16,fc=64", "--epochs", "1", "--batch-size", "128", "--quiet"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(nproc: int | None, out: Path) -> float:
    if nproc is None:
        cmd = [sys.executable, "-m", "convscope"]
    else:
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd = [str(torchrun), f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
               f"--master_port={_port()}", "-m", "convscope"]
    subprocess.run([*cmd, *ARGS, "--out", str(out), "--force"], check=True,
                   capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return row["images_per_sec"]


def run(quick: bool = False) -> dict:
    repeats = 1 if quick else 3
    runs = {"single process (2 threads)": None, "torchrun, 1 process": 1,
            "torchrun, 2 processes": 2}
    results: dict[str, list[float]] = {k: [] for k in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for name, nproc in runs.items():
                results[name].append(_run(nproc, Path(tmp) / name.replace(" ", "_")))
    base = statistics.median(results["single process (2 threads)"])
    rows = [[name, round(statistics.median(v), 1), round(statistics.median(v) / base, 2)]
            for name, v in results.items()]
    one = statistics.median(results["torchrun, 1 process"]) / base
    two = statistics.median(results["torchrun, 2 processes"]) / base
    return {"columns": ["launch", "images/s", "vs single process"], "rows": rows, "notes": [
        "The same 2 cores do the work in every row, so the rows compare how well each launch "
        "uses them, not more hardware.",
        f"One torchrun process (one thread) ran at {one:.2f}x a plain process with 2 threads, "
        f"two torchrun processes at {two:.2f}x: "
        + ("two processes gain over one, so the second core does useful work even after the "
           "gradient all-reduce and the duplicated data handling. "
           if two > one * 1.05 else
           "the second process adds little over the first: on 2 cores the gradient "
           "all-reduce and the duplicated data handling take about what the second core "
           "gives. ")
        + "On a machine with more cores, GPUs or nodes the same command scales further; that "
        "is not measured here.",
    ]}
