"""How cost grows with data size: decoding, caching and one epoch of the fast recipe."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import shared_cifar

TITLE = "Cost against data size (shared CIFAR-10 JPEGs, fast recipe)"
DESCRIPTION = (
    "For 1k, 5k, 20k and 50k training images taken from `../shared/data` (class-balanced "
    "subsets, linked into a folder dataset): the first load (scan and decode every JPEG), a "
    "cached load (the decoded array read back), and one training epoch of `--recipe fast` "
    "with no test split. Time per image should stay flat if cost grows linearly."
)


def _subset(extracted: Path, per_class: int, dest: Path) -> Path:
    for cls in sorted((extracted / "train").iterdir()):
        (dest / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:per_class]:
            (dest / cls.name / f.name).symlink_to(f)
    return dest


def run(quick: bool = False) -> dict:
    name = shared_cifar()
    if name is None:
        return {"columns": ["images"], "rows": [],
                "notes": ["skipped: ../shared/data/cifar10-train-jpeg.tar.gz is absent"]}
    from convscope.data import load_dataset
    from convscope.data.folder import extract_archive
    from convscope.train import TrainConfig, fit

    extracted = extract_archive(Path(name[len("folder:"):]))
    sizes = [1000, 5000] if quick else [1000, 5000, 20000, 50000]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CONVSCOPE_CACHE"] = str(Path(tmp) / "cache")  # measure a cold cache
        for n in sizes:
            folder = _subset(extracted, n // 10, Path(tmp) / f"s{n}")
            t = time.perf_counter()
            load_dataset(f"folder:{folder}", holdout=0, progress=False)
            first = time.perf_counter() - t
            t = time.perf_counter()
            ds = load_dataset(f"folder:{folder}", holdout=0, progress=False)
            cached = time.perf_counter() - t
            cfg = TrainConfig(data=ds.name, recipe="fast", epochs=1, device="cpu")
            t = time.perf_counter()
            fit(ds, cfg, progress=False, log=lambda _m: None)
            epoch = time.perf_counter() - t
            rows.append([n, round(first, 2), round(cached, 2), round(epoch, 1),
                         round(1e3 * epoch / n, 2)])
    return {"columns": ["images", "first load s", "cached load s", "1 epoch s", "ms / image"],
            "rows": rows, "notes": ["batch size: the recipe's 2000, capped at a tenth of the "
                                    "data (so 100 for 1k images)."]}
