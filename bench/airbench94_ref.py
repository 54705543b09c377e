"""A plain re-implementation of the airbench94 recipe (Keller Jordan, 2024), for comparison.

Only the benchmarks use this: it is the baseline `--recipe fast` must beat on the same data
and budget.  Written from the published description: whitening conv, three conv-pool-BN-GELU
blocks (64/256/256), Nesterov SGD with decoupled hyperparameters and a 64x learning rate for
BN biases, a triangular schedule, lookahead/EMA, label smoothing 0.2, alternating flip + 2-px
translation, and flip/shift test-time augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convscope.models.fast import ConvGroup

HYP = dict(batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, bias_scaler=64.0,
           label_smoothing=0.2, ema_start=3, ema_base=0.95, ema_pow=3.0, ema_every=5,
           whiten_bias_epochs=3)


class Airbench94Net(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.act = nn.GELU()
        self.blocks = nn.Sequential(ConvGroup(24, 64, True), ConvGroup(64, 256, True),
                                    ConvGroup(256, 256, True))
        self.head = nn.Linear(256, classes, bias=False)

    def forward(self, x):
        x = self.blocks(self.act(self.whiten(x)))
        return self.head(F.adaptive_max_pool2d(x, 1).flatten(1)) / 9


def triangle(total: int, start=0.2, end=0.07, peak=0.23):
    p = int(peak * total)
    return lambda i: (start + (1 - start) * i / p if i < p
                      else 1 + (end - 1) * (i - p) / max(1, total - p))


def train_airbench94(x_train, y_train, epochs: int, seed: int = 0, log=print):
    """x_train: normalised float (N, 3, 32, 32); returns the trained (EMA) network."""
    torch.manual_seed(seed)
    net = Airbench94Net(int(y_train.max()) + 1).to(memory_format=torch.channels_last)
    # whitening init from 5000 images' 2x2 patches (the same maths as fastnet's)
    k, c = 2, 3
    patches = x_train[:5000].unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5)
    patches = patches.reshape(-1, c * k * k).double()
    eigval, eigvec = torch.linalg.eigh(patches.T @ patches / len(patches))
    filt = eigvec.T.reshape(-1, c, k, k) / torch.sqrt(eigval + 5e-4).view(-1, 1, 1, 1)
    with torch.no_grad():
        net.whiten.weight.copy_(torch.cat([filt, -filt]).float())

    h = HYP
    bs, n = h["batch_size"], len(x_train)
    steps_per_epoch = n // bs
    total = epochs * steps_per_epoch
    kilostep = 1024 * (1 + 1 / (1 - h["momentum"]))
    lr, wd = h["lr"] / kilostep, h["weight_decay"] * bs / kilostep
    lr_b = lr * h["bias_scaler"]
    norm_biases = [p for name, p in net.named_parameters() if "norm" in name and p.requires_grad]
    others = [p for name, p in net.named_parameters() if "norm" not in name and p.requires_grad]
    opt = torch.optim.SGD([dict(params=norm_biases, lr=lr_b, weight_decay=wd / lr_b),
                           dict(params=others, lr=lr, weight_decay=wd / lr)],
                          momentum=h["momentum"], nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, triangle(total))
    g = torch.Generator().manual_seed(seed)
    flip_bits = torch.rand(n, generator=g) < 0.5
    padded = F.pad(x_train, (2, 2, 2, 2), mode="reflect")
    ema, step = None, 0
    for epoch in range(epochs):
        net.whiten.bias.requires_grad_(epoch < h["whiten_bias_epochs"])
        net.train()
        order = torch.randperm(n, generator=g)
        for i in range(steps_per_epoch):
            idx = order[i * bs:(i + 1) * bs]
            shifts = torch.randint(0, 5, (len(idx), 2), generator=g)
            x = torch.empty(len(idx), 3, 32, 32)
            for sy in range(5):
                for sx in range(5):
                    m = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
                    x[m] = padded[idx[m], :, sy:sy + 32, sx:sx + 32]
            flip = flip_bits[idx] ^ (epoch % 2 == 1)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)),
                                   y_train[idx], label_smoothing=h["label_smoothing"],
                                   reduction="sum")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if epoch >= h["ema_start"] and step % h["ema_every"] == 0:
                if ema is None:
                    ema = {k: v.clone() for k, v in net.state_dict().items()}
                else:
                    rho = h["ema_base"] ** h["ema_every"] * (step / total) ** h["ema_pow"]
                    _lookahead(net, ema, rho)
        if ema is not None:
            _lookahead(net, ema, 1.0)
        log(f"airbench94 epoch {epoch + 1}/{epochs} loss {loss.item() / bs:.4f}")
    return net


@torch.no_grad()
def _lookahead(net, ema, decay):
    for e, v in zip(ema.values(), net.state_dict().values()):
        if v.dtype.is_floating_point:
            e.lerp_(v, 1 - decay)
            v.copy_(e)


@torch.no_grad()
def tta_accuracy(net, x_test, y_test) -> float:
    net.eval()
    out = []
    for x in x_test.split(500):
        def mirror(t):
            return 0.5 * (net(t) + net(t.flip(-1)))
        p = F.pad(x, (1, 1, 1, 1), mode="reflect")
        logits = 0.5 * mirror(x) + 0.25 * (mirror(p[..., :32, :32]) + mirror(p[..., 2:, 2:]))
        out.append(logits)
    return float((torch.cat(out).argmax(1) == y_test).float().mean())


def flops_per_epoch(n_images: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    net = Airbench94Net()
    with FlopCounterMode(display=False) as c:
        net(torch.randn(8, 3, 32, 32)).sum().backward()
    return c.get_total_flops() / 8 * n_images


__all__ = ["Airbench94Net", "flops_per_epoch", "tta_accuracy", "train_airbench94"]
