"""Style transfer: seconds per L-BFGS step against the PyTorch tutorial's loop."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import interleaved

TITLE = "Style transfer: seconds per L-BFGS step against the PyTorch tutorial's loop"
DESCRIPTION = (
    "Seconds per L-BFGS iteration of `convscope.style` against a plain reimplementation "
    "of the PyTorch tutorial's loop (\"Neural Transfer Using PyTorch\": loss modules inserted "
    "in a copy of the network, `LBFGS` without line search, clamping in the closure), on the "
    "same VGG-19 convolutional layers with the same layers (Gatys': relu1_1...relu5_1 style, "
    "relu4_2 content). Speed does not depend on the weights, so both use VGG-19 with random "
    "weights (no download). convscope's time per step includes its strong-Wolfe line search "
    "(evaluations per step in the table) and one loss evaluation after the last step."
)

CONTENT = "sample:chelsea"
STYLE = "sample:ihc"
#: Gatys' layers, in the tutorial's naming (it numbers convs and ReLUs in order)
TUTORIAL_STYLE = ["relu_1", "relu_3", "relu_5", "relu_9", "relu_13"]
TUTORIAL_CONTENT = ["relu_10"]


# --------------------------------------------------------------------------- the tutorial
class _ContentLoss(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target = target.detach()

    def forward(self, x):
        self.loss = F.mse_loss(x, self.target)
        return x


def _tutorial_gram(x):
    a, b, c, d = x.size()
    features = x.view(a * b, c * d)
    return torch.mm(features, features.t()).div(a * b * c * d)


class _StyleLoss(nn.Module):
    def __init__(self, target_feature):
        super().__init__()
        self.target = _tutorial_gram(target_feature).detach()

    def forward(self, x):
        self.loss = F.mse_loss(_tutorial_gram(x), self.target)
        return x


class _Normalization(nn.Module):
    def __init__(self):
        super().__init__()
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)

    def forward(self, img):
        return (img - self.mean) / self.std


def _tutorial_model(cnn, style_img, content_img):
    """The tutorial's get_style_model_and_losses, for the layers above."""
    model = nn.Sequential(_Normalization())
    content_losses, style_losses = [], []
    i = j = 0
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            i += 1
            name = f"conv_{i}"
        elif isinstance(layer, nn.ReLU):
            j += 1
            name = f"relu_{j}"
            layer = nn.ReLU(inplace=False)
        else:
            name = f"pool_{i}"
        model.add_module(name, layer)
        if name in TUTORIAL_CONTENT:
            loss = _ContentLoss(model(content_img).detach())
            model.add_module(f"content_loss_{j}", loss)
            content_losses.append(loss)
        if name in TUTORIAL_STYLE:
            loss = _StyleLoss(model(style_img).detach())
            model.add_module(f"style_loss_{j}", loss)
            style_losses.append(loss)
    for k in range(len(model) - 1, -1, -1):
        if isinstance(model[k], (_ContentLoss, _StyleLoss)):
            break
    return model[: k + 1], style_losses, content_losses


def tutorial_runner(cnn, content_img, style_img, steps: int):
    """A function running ``steps`` iterations of the tutorial's L-BFGS loop."""
    model, style_losses, content_losses = _tutorial_model(cnn, style_img, content_img)
    model.eval()
    model.requires_grad_(False)

    def run():
        input_img = content_img.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([input_img], max_iter=steps)

        def closure():
            with torch.no_grad():
                input_img.clamp_(0, 1)
            optimizer.zero_grad()
            model(input_img)
            style_score = sum(sl.loss for sl in style_losses) * 1e6
            content_score = sum(cl.loss for cl in content_losses)
            loss = style_score + content_score
            loss.backward()
            return loss

        optimizer.step(closure)

    return run


# --------------------------------------------------------------------------- convscope
def convscope_job(backbone, size: int, steps: int):
    from convscope.style import StyleConfig
    from convscope.style.transfer import Job

    job = Job(StyleConfig(size=size, steps=steps), backbone, torch.device("cpu"), CONTENT,
              [STYLE])
    return job, job.targets(size, None)


def convscope_runner(job, targets, size: int, steps: int, evals: list):
    """``steps`` iterations of convscope's loop (the line search and last evaluation too)."""
    from convscope.progress import progress_bar
    from convscope.style.transfer import optimise

    def run():
        history: list = []
        bar = progress_bar(total=steps, enable=False)
        optimise(job, targets, targets.content.clone(), size, bar, history, time.perf_counter())
        evals.append(history[-1]["evals"] / steps)

    return run


def evaluation_runners(job, targets, cnn, content, style):
    """One loss evaluation, forward and backward, in each implementation."""
    model, style_losses, content_losses = _tutorial_model(cnn, style, content)
    model.requires_grad_(False)
    image = content.clone().requires_grad_(True)

    def ours():
        total, _ = job.objective(image, targets)
        torch.autograd.grad(total, image)

    def theirs():
        model(image)
        loss = sum(sl.loss for sl in style_losses) * 1e6 + sum(cl.loss for cl in content_losses)
        torch.autograd.grad(loss, image)

    return ours, theirs


def step_times(sizes, steps: int, repeats: int) -> list[list]:
    from convscope.style.backbone import vgg19
    from convscope.style.transfer import read_exact, read_rgb

    backbone = vgg19("random")
    cnn = backbone.net.features
    rows = []
    for size in sizes:
        content = read_rgb(CONTENT, size)[None]
        style = read_exact(STYLE, tuple(content.shape[-2:]))[None]  # the tutorial's: same size
        job, targets = convscope_job(backbone, size, steps)
        evals: list[float] = []
        t = interleaved({"convscope": convscope_runner(job, targets, size, steps, evals),
                         "tutorial": tutorial_runner(cnn, content, style, steps)},
                        repeats=repeats, warmup=1)
        ours, theirs = evaluation_runners(job, targets, cnn, content, style)
        e = interleaved({"convscope": ours, "tutorial": theirs}, repeats=3 * repeats, warmup=2)
        label = f"{size} px ({content.shape[-1]}x{content.shape[-2]})"
        per_step = (t["convscope"] / steps, t["tutorial"] / steps)
        rows.append([label, "L-BFGS iteration", round(per_step[0], 3), round(per_step[1], 3),
                     f"{per_step[0] / per_step[1]:.2f}x", round(statistics.mean(evals), 2)])
        rows.append([label, "loss evaluation (forward + backward)", round(e["convscope"], 3),
                     round(e["tutorial"], 3), f"{e['convscope'] / e['tutorial']:.2f}x", 1])
    return rows


def run(quick: bool = False) -> dict:
    torch.manual_seed(0)
    sizes, steps, repeats = ((64,), 2, 1) if quick else ((128, 256), 10, 3)
    rows = step_times(sizes, steps, repeats)
    return {"columns": ["size", "seconds per", "convscope", "tutorial loop",
                        "convscope / tutorial", "convscope evaluations per iteration"],
            "rows": rows,
            "notes": [f"iterations: median of {repeats} interleaved runs of {steps} iterations "
                      f"from the content image; evaluations: median of {3 * repeats} "
                      "interleaved single evaluations.",
                      "convscope's strong-Wolfe line search costs extra evaluations in the "
                      "first iterations (about one per iteration later on); the tutorial's "
                      "L-BFGS takes unit steps without one, which on the random multi-scale "
                      "network made the loss jump by up to 350-fold every few steps (see "
                      "`optimise` in style/transfer.py)."]}
