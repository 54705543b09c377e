"""Training throughput: convscope's loop against a plain PyTorch loop, and against sgemm."""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.common import interleaved

TITLE = "Training throughput (fast recipe, fastnet, 32x32x3)"
DESCRIPTION = (
    "Images per second of one training step on the same network and batch: convscope's "
    "`Trainer.train_step` (uint8 batch -> normalise -> alternating flip + 2-px translate -> "
    "forward/backward -> Muon step -> schedule) against a plain hand-written PyTorch loop doing "
    "the same work (normalise, flip, translate, forward/backward, the same optimizer step). "
    "Achieved GFLOP/s counts the forward and backward FLOPs (torch's FlopCounterMode); the "
    "machine's reach is an fp32 sgemm (2048x2048) timed in the same run. The channels-last and "
    "torch.compile rows decide the recipe's defaults."
)


def _trainer(batch: int, steps: int, channels_last: bool, compile: bool = False,
             log=lambda _m: None):
    from convscope.data import load_dataset
    from convscope.train import TrainConfig
    from convscope.train.loop import Trainer

    ds = load_dataset(f"fake:n={batch * steps},test=10,size=32,channels=3,classes=10")
    # a schedule longer than the steps timed: the learning rates stay in their normal range
    cfg = TrainConfig(data=ds.name, recipe="fast", epochs=20, batch_size=batch,
                      channels_last=channels_last, compile=compile, device="cpu")
    return Trainer(ds, cfg, progress=False, log=log), ds


def _plain_step(model, opt, x_uint8, y, mean, std, g):
    """What a user would write by hand for the same step."""
    x = (x_uint8.float() - mean) / std
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    shifts = torch.randint(0, 5, (len(x), 2), generator=g)
    out = torch.empty_like(x)
    for sy in range(5):  # airbench's way: one masked copy per distinct shift
        for sx in range(5):
            m = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
            out[m] = padded[m, :, sy:sy + 32, sx:sx + 32]
    x = out.contiguous(memory_format=torch.channels_last)
    loss = F.cross_entropy(model(x), y, label_smoothing=0.2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run(quick: bool = False) -> dict:
    batch = 200 if quick else 500
    steps = 2 if quick else 6
    repeats = 2 if quick else 4

    trainer, ds = _trainer(batch, steps, channels_last=True)
    trainer_cf, _ = _trainer(batch, steps, channels_last=False)
    notes_compile = []  # a failed compile says so here
    trainer_co, _ = _trainer(batch, steps, channels_last=True, compile=True,
                             log=lambda m: notes_compile.append(m) if "compile" in m else None)
    x_all, y_all = ds.train_images, ds.train_labels
    idx = torch.arange(batch)
    xb, yb = x_all[:batch], y_all[:batch]

    # the plain loop trains an identical copy with the same optimizer class
    from convscope.train.optim import make_optimizer

    plain = copy.deepcopy(trainer.clf.model)
    plain_opt, _ = make_optimizer(plain, trainer.config, steps)
    mean, std = trainer.clf.preprocess.mean, trainer.clf.preprocess.std
    g = torch.Generator().manual_seed(0)

    def ours():
        for _ in range(steps):
            trainer.train_step(xb, yb, idx, batch, slice(0, batch), False)

    def ours_nchw():
        for _ in range(steps):
            trainer_cf.train_step(xb, yb, idx, batch, slice(0, batch), False)

    def ours_compiled():
        for _ in range(steps):
            trainer_co.train_step(xb, yb, idx, batch, slice(0, batch), False)

    def hand():
        plain.train()
        for _ in range(steps):
            _plain_step(plain, plain_opt, xb, yb, mean, std, g)

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)

    def sgemm():
        for _ in range(4):
            torch.mm(a, b)

    trainer.clf.model.train()
    trainer_cf.clf.model.train()
    trainer_co.clf.model.train()
    compile_started = time.perf_counter()
    trainer_co.train_step(xb, yb, idx, batch, slice(0, batch), False)  # compiles: timed apart from the steady state
    compile_seconds = time.perf_counter() - compile_started
    t = interleaved({"ours": ours, "ours_nchw": ours_nchw, "ours_compiled": ours_compiled,
                     "plain": hand, "sgemm": sgemm}, repeats=repeats)

    with FlopCounterMode(display=False) as counter:
        out = plain(torch.randn(batch, 3, 32, 32))
        out.sum().backward()
    flops_per_image = counter.get_total_flops() / batch  # forward + backward
    imgs = steps * batch
    sgemm_gflops = 4 * 2 * n**3 / t["sgemm"] / 1e9

    def row(name, key):
        ips = imgs / t[key]
        gflops = ips * flops_per_image / 1e9
        return [name, round(ips, 1), round(gflops, 1), round(gflops / sgemm_gflops, 3)]

    rows = [row("convscope loop, channels-last (recipe default)", "ours"),
            row("convscope loop, NCHW", "ours_nchw"),
            row("convscope loop, channels-last + torch.compile (--compile)", "ours_compiled"),
            row("plain PyTorch loop, channels-last", "plain"),
            ["fp32 sgemm 2048x2048", "", round(sgemm_gflops, 1), 1.0]]
    notes = [
        f"batch {batch}, {steps} steps per timing, median of {repeats} interleaved repeats; "
        f"{flops_per_image / 1e9:.3f} GFLOP per image per training step (forward + backward).",
        f"ours / plain = {t['plain'] / t['ours']:.3f} (target >= 0.95); channels-last / NCHW "
        f"= {t['ours_nchw'] / t['ours']:.3f}; compiled / eager = "
        f"{t['ours'] / t['ours_compiled']:.3f} after a first (compiling) step of "
        f"{compile_seconds:.0f} s.",
        *notes_compile,
    ]
    return {"columns": ["loop", "images/s", "GFLOP/s", "fraction of sgemm"], "rows": rows,
            "notes": notes, "ratio_ours_over_plain": t["plain"] / t["ours"],
            "ratio_channels_last": t["ours_nchw"] / t["ours"],
            "ratio_compiled_over_eager": t["ours"] / t["ours_compiled"]}
