"""`convscope embed` on 10,000 images: time of each phase and the peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.common import ROOT, shared_cifar

TITLE = "embed: t-SNE and PCA of 10,000 images' features"
DESCRIPTION = (
    "One `convscope embed` job split into its phases, each run in a fresh process so that "
    "its peak resident memory is its own: reading the images, extracting the features "
    "(one batched pass), the 2-D reduction (openTSNE's t-SNE with PCA to 50 dimensions "
    "first, 250 + 500 steps, one thread; or scikit-learn's PCA), snapping the images to the "
    "40x40 thumbnail grid (scipy's linear_sum_assignment) and drawing the figure. Images: "
    "the 10,000 held-out images of the shared CIFAR-10 folder (32x32 RGB; generated "
    "`fake` images when it is absent). Model: the default `convnet` for 32x32x3 with random "
    "weights, features at `fc1_relu` (128 dimensions); the cost depends on the number of "
    "images and dimensions, not on what the weights learned."
)

#: the job, run in a child process; prints one JSON line
JOB = r"""
import json, resource, sys, time
import numpy as np, torch
torch.manual_seed(0)
from convscope.classifier import Classifier
from convscope.inspect.embedding import EmbedConfig, Embedding, default_grid, snap_to_grid, to_2d
from convscope.inspect.features import extract
from convscope.inspect.sources import image_set
from convscope.modelfile import ModelMeta
from convscope.models import ModelInput, build_model
from convscope.render.views import embedding_image

data, method, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
meta = ModelMeta(model="convnet", options={}, classes=[str(i) for i in range(10)], channels=3,
                 image_size=[32, 32], input_size=[32, 32], mean=[0.5] * 3, std=[0.25] * 3,
                 dataset="none")
clf = Classifier(build_model("convnet", ModelInput(3, 10, (32, 32))), meta)
times = {}
t = time.perf_counter()
images = image_set(clf, data, "test", n=n, progress=False)
times["read"] = time.perf_counter() - t
t = time.perf_counter()
feats = extract(clf, images.images, ["fc1_relu"], progress=False)["fc1_relu"]
times["features"] = time.perf_counter() - t
config = EmbedConfig(method=method, layer="fc1_relu", n=len(feats), grid=default_grid(len(feats)))
t = time.perf_counter()
coords = to_2d(feats.double().numpy(), config)
times["reduce"] = time.perf_counter() - t
t = time.perf_counter()
cells = snap_to_grid(coords, config.grid)
times["grid"] = time.perf_counter() - t
e = Embedding(config, images.name, images.classes, images.indices, images.labels, images.images,
              feats, coords)
t = time.perf_counter()
picture = embedding_image(e)
times["draw"] = time.perf_counter() - t
from sklearn.manifold import trustworthiness
pick = np.random.default_rng(0).permutation(len(coords))[:2000]
trust = trustworthiness(feats.numpy()[pick], coords[pick], n_neighbors=5)
print(json.dumps({"n": len(coords), "times": times, "grid": config.grid,
                  "picture": list(picture.shape[:2]), "trust": float(trust),
                  "filled": int((cells >= 0).sum()),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _data(n: int) -> str:
    """The shared CIFAR-10 folder (BENCH_EMBED_DATA names it where ../shared is elsewhere,
    e.g. from a worktree), else generated images."""
    return (os.environ.get("BENCH_EMBED_DATA") or shared_cifar()
            or f"fake:n={n},test={n},size=32,classes=10")


def run(quick: bool) -> dict:
    rows, notes = [], []
    n = 1000 if quick else 10_000
    data = _data(n)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "PYTHONWARNINGS": "ignore"}
    load = os.getloadavg()[0]
    for method in ("tsne", "pca"):
        out = subprocess.run([sys.executable, "-c", JOB, data, method, str(n)], env=env,
                             capture_output=True, text=True, check=True, timeout=3600)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        t = r["times"]
        rows.append([method, r["n"], round(t["read"], 1), round(t["features"], 1),
                     round(t["reduce"], 1), round(t["grid"], 2), round(t["draw"], 1),
                     round(sum(t.values()), 1), round(r["peak_mb"]),
                     round(r["trust"], 3)])
        notes.append(f"{method}: a {r['grid']}x{r['grid']} thumbnail map ({r['filled']} cells "
                     f"filled), picture {r['picture'][1]}x{r['picture'][0]} px.")
    notes += [
        "data: " + ("generated fake images (the shared CIFAR-10 folder was absent)"
                    if data.startswith("fake") else
                    f"`{data.split('/')[-1]}`, its 10,000 held-out images (from the decode "
                    "cache: the folder was read once before)"),
        "trustworthiness: scikit-learn's, 5 neighbours, on a random 2,000 of the embedded "
        "points (on all 10,000 it needs a 10,000 x 10,000 distance matrix).",
        "peak MB: the child process's maximum resident set, torch and the libraries "
        "included.",
        f"1-minute load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
        "end (the machine is shared: times are indicative).",
    ]
    return {"columns": ["method", "images", "read s", "features s", "2-D s", "grid s",
                        "draw s", "total s", "peak MB", "trustworthiness"],
            "rows": rows, "notes": notes}
