"""The one gradient-ascent loop every synthesis job runs on (class images, neurons, DeepDream).

Written here because no maintained library does it well for convscope's models:
lucent (unmaintained since 2021) gives blurry images on small 32x32 models, fails on
non-RGB inputs and leaves its hooks on the model.  This loop hooks only the layers
the objective reads, inside a context manager that removes them; takes gradients
with ``torch.autograd.grad`` with respect to the image parameters alone, so the
model's ``requires_grad`` flags and ``.grad`` fields are never touched; runs the
model in eval mode and gives every submodule its own mode back; and draws every
random number from its own seeded generator.

Each step, top to bottom:
  1. image = image_fn()                          (B, C, H, W) in [0, 1]
  2. x = transform(image)                        jitter / scale / rotate
  3. forward: normalise with the model's mean/std, run up to the last layer needed
  4. score = objective(ctx) - sum of penalties   (B,)
  5. grad = d score / d params; optimiser step (Adam, or DeepDream's normalised step)
  6. regulariser operators (blur, clipping), then project back to a valid image
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from convscope.display import Displayable, detached, draw
from convscope.errors import ConvscopeError, UsageError
from convscope.inspect.hooks import Capture, capture, get_layer, model_mode, trace_layers
from convscope.inspect.synthesis.objectives import Context, Objective
from convscope.inspect.synthesis.param import ImageParam
from convscope.inspect.synthesis.regularizers import Regularizer
from convscope.inspect.synthesis.transforms import Transform, compose
from convscope.progress import progress_bar

OPTIMIZERS = ("adam", "normalized")


@dataclass
class SynthesisResult(Displayable):
    """Images made by gradient ascent, with the objective's value at every step."""

    images: torch.Tensor  # (B, C, H, W) float in [0, 1], on the CPU
    objective: torch.Tensor  # (steps, B): the objective (without penalties) at each step
    labels: list[str] = field(default_factory=list)  # what each image maximises
    config: dict = field(default_factory=dict)  # the resolved settings that made them
    #: class images only: what an independently trained second model says of them
    judgement: object | None = None  # a visualize.Judgement

    def uint8(self) -> torch.Tensor:
        """(B, C, H, W) uint8, what a saved PNG holds."""
        return (self.images * 255).round().clamp(0, 255).to(torch.uint8)

    def pil(self) -> list[Image.Image]:
        """One PIL image ("L" or "RGB") per image."""
        arr = self.uint8().permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]

    def figure(self, title: str = ""):
        """The images in a labelled grid (``convscope visualize``'s), a matplotlib Figure."""
        return detached(draw("image_grid", self.pil(), self.labels, title=title))


def model_center(clf) -> torch.Tensor:
    """The mean image in [0, 1], (1, C, 1, 1): the zero of the network's input."""
    return (clf.preprocess.mean / 255).detach().cpu()


def normalise(clf, x: torch.Tensor, resize: bool) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> the network's input; ``resize`` to its input size or not."""
    if resize:
        return clf.preprocess(x * 255)
    return (x * 255 - clf.preprocess.mean) / clf.preprocess.std


def layer_calls(clf, layers: Sequence[str]) -> Counter:
    """How many times each layer runs in one forward pass (torchvision reuses some ReLUs),
    traced once at the model's own input size; a layer that never runs is an error."""
    for name in layers:
        get_layer(clf.model, name)  # unknown names list the valid ones
    if not layers:
        return Counter()
    h, w = clf.image_size
    x = clf.preprocess(torch.zeros(1, clf.channels, h, w, device=clf.device))
    counts = Counter(c.name for c in trace_layers(clf.model, x))
    missing = [n for n in layers if not counts[n]]
    if missing:
        raise UsageError(f"layer {missing[0]!r} does not run in the model's forward pass; "
                         "choose a layer that does.")
    return Counter({n: counts[n] for n in layers})


def forward(clf, x: torch.Tensor, acts: Capture, resize: bool) -> torch.Tensor | None:
    """Run the model on a [0, 1] image; return the logits, or None when ``acts`` (a
    stopping :func:`~convscope.inspect.hooks.capture`) ended the pass early."""
    try:
        return acts.run(clf.model, normalise(clf, x, resize))
    except RuntimeError as exc:
        h, w = x.shape[-2:]
        reason = str(exc).strip().splitlines()[0][:160]
        raise ConvscopeError(f"the model cannot run on a {h}x{w} image ({reason}); use a "
                             "smaller or earlier layer, or another image size.") from None


def _step_normalized(params: list[torch.Tensor], grads: list[torch.Tensor], lr: float) -> None:
    """DeepDream's update: the gradient divided by its mean magnitude, per image."""
    with torch.no_grad():
        for p, g in zip(params, grads):
            scale = g.abs().flatten(1).mean(1).clamp(min=1e-12).view(-1, *[1] * (g.ndim - 1))
            p.add_(lr * g / scale)


def ascend(clf, objective: Objective, param: ImageParam, *, steps: int, lr: float,
           optimizer: str = "adam", transforms: Sequence[Transform] | Transform = (),
           regularizers: Sequence[Regularizer] = (), generator: torch.Generator | None = None,
           resize: bool = True, progress=True, desc: str = "gradient ascent",
           on_step: Callable[[int, torch.Tensor], None] | None = None) -> SynthesisResult:
    """Maximise ``objective - penalties`` over ``param`` by gradient ascent on ``clf``'s model.

    ``progress`` is a bool or an existing progress bar to advance; ``on_step(step, image)``
    sees the (B, C, H, W) image after every update (e.g. to save frames); ``resize`` feeds
    the model at its input size (classes) or at the image's own size (DeepDream).

    >>> from convscope.inspect.synthesis import objectives as obj, param
    >>> p = param.pixel_image((1, 3, 32, 32), center=model_center(clf))  # doctest: +SKIP
    >>> ascend(clf, obj.class_logit(3), p, steps=100, lr=0.05).pil()[0]  # doctest: +SKIP
    """
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}.")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    transform = compose(*transforms) if isinstance(transforms, (list, tuple)) else transforms
    center = model_center(clf).to(clf.device)
    calls = layer_calls(clf, objective.layers)
    opt = torch.optim.Adam(param.params, lr=lr, maximize=True) if optimizer == "adam" else None
    own_bar = not hasattr(progress, "update")
    bar = progress_bar(total=steps, desc=desc, unit="step", enable=bool(progress)) \
        if own_bar else progress
    history = []
    try:
        with model_mode(clf.model), capture(clf.model, calls, detach=False,
                                            stop=not objective.needs_logits) as acts:
            for step in range(steps):
                # 1-3: image, transform, forward up to what the objective reads
                image = param.image()
                logits = forward(clf, transform(image, gen), acts, resize)
                ctx = Context(image=image, logits=logits, acts=acts)
                # 4: objective minus penalties, (B,)
                score = objective(ctx)
                total = score
                for r in regularizers:
                    pen = r.penalty(image, center)
                    if pen is not None:
                        total = total - pen
                # 5: gradient with respect to the image parameters only, and the update
                grads = torch.autograd.grad(total.sum(), param.params)
                if opt is not None:
                    for p, g in zip(param.params, grads):
                        p.grad = g
                    opt.step()
                else:
                    _step_normalized(param.params, grads, lr)
                # 6: Yosinski's operators, then back to a valid image
                for r in regularizers:
                    r.apply_(param, grads[0], step)
                param.project_()
                history.append(score.detach().cpu())
                acts.reset()  # drop the graph before the next step
                bar.update(1)
                bar.set_postfix(objective=f"{float(score.detach().mean()):.3g}", refresh=False)
                if on_step is not None:
                    with torch.no_grad():
                        on_step(step, param.image().detach())
    finally:
        if own_bar:
            bar.close()
        for p in param.params:
            p.grad = None
    with torch.no_grad():
        images = param.image().detach().clamp(0, 1).cpu()
    return SynthesisResult(images=images, objective=torch.stack(history) if history
                           else torch.empty(0, images.shape[0]), labels=[])
