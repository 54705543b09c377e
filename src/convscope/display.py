"""How results show themselves in Jupyter: as a picture, not as a dataclass dump.

IPython's display formatter asks an object for ``_repr_png_`` / ``_repr_html_`` and a
notebook shows the richest answer (``text/plain``, a dataclass's ``__repr__``, only where
nothing richer is given).

Two mixins, both drawing through the existing render code (``render/``), never their own:

- :class:`Displayable`: the class defines ``figure()``, a matplotlib Figure (the confusion
  matrix, the explanation figure, ...); ``_repr_png_`` is that figure as PNG.
- :class:`MosaicDisplay`: the class has ``render()``, its pixel-exact (H, W, 3) uint8 mosaic
  (``render/views.py``); ``_repr_png_`` is that mosaic as PNG, unscaled, and ``figure()``
  puts it in a Figure at one image pixel per figure pixel.

Figures come back detached from pyplot (closed in its registry, still drawable and
savable), so a notebook shows a returned figure once, and a loop that makes many never
trips pyplot's "too many open figures".  matplotlib is imported only inside these methods.

Results live in layers below ``render/`` (evaluate, inspect, style), which never import it:
a result's ``figure()`` / ``render()`` / ``save()`` calls :func:`draw` with the name of a
render function, and ``render/`` registers each such function with :func:`drawing` when it
is imported (``import convscope`` imports it, so every result can draw itself).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from html import escape

import numpy as np

#: render functions by name, registered by ``render/`` (see :func:`drawing`)
DRAWINGS: dict[str, Callable] = {}


def drawing(fn: Callable) -> Callable:
    """Register a render function under its name, for :func:`draw` (a decorator)."""
    DRAWINGS[fn.__name__] = fn
    return fn


def draw(name: str, *args, **kwargs):
    """Call the render function registered as ``name``: how a result in a layer below
    ``render/`` draws or saves itself without importing it."""
    try:
        fn = DRAWINGS[name]
    except KeyError:
        raise RuntimeError(f"no render function {name!r} is registered; import convscope "
                           "(which imports convscope.render) first.") from None
    return fn(*args, **kwargs)


def png_bytes(fig, dpi: int = 100) -> bytes:
    """A Figure as PNG bytes (tight box), without touching pyplot's state."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def detached(fig):
    """``fig`` removed from pyplot's registry (a no-op for a Figure made without pyplot):
    it stays drawable, savable and displayable, but pyplot no longer holds or shows it."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)
    return fig


def array_figure(image, dpi: int = 100, title: str = ""):
    """An (H, W[, C]) uint8 picture in a Figure at one image pixel per figure pixel
    (``dpi`` dots per inch), axes off, made without pyplot."""
    from matplotlib.figure import Figure  # heavy optional dependency: only when drawn

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    h, w = arr.shape[:2]
    top = 0.3 if title else 0.0  # inches kept for the title
    fig = Figure(figsize=(w / dpi, h / dpi + top), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, (h / dpi) / (h / dpi + top)))
    ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


class Displayable:
    """Mixin for results drawn as a matplotlib figure: define ``figure()``."""

    def figure(self):
        """The result as a matplotlib Figure, for further styling or ``savefig``."""
        raise NotImplementedError(f"{type(self).__name__} has no figure")

    def _repr_png_(self) -> bytes:
        return png_bytes(self.figure())


#: a picture shorter than this (an 8x8 digit's dream) is shown enlarged by whole pixels
MIN_SHOWN = 128


def shown_picture(image: np.ndarray) -> np.ndarray:
    """``image`` as a notebook shows it: unchanged, or enlarged by an integer zoom (each
    pixel a block, no interpolation) when its longer side is under :data:`MIN_SHOWN`."""
    return draw("enlarge", image, max(1, MIN_SHOWN // max(image.shape[:2])))


class MosaicDisplay(Displayable):
    """Mixin for results with a pixel-exact ``render()`` mosaic."""

    def render(self) -> np.ndarray:  # pragma: no cover - every user defines it
        raise NotImplementedError

    def figure(self):
        """The picture a notebook shows in a Figure, one image pixel per figure pixel."""
        return array_figure(shown_picture(self.render()))

    def _repr_png_(self) -> bytes:
        return draw("image_png", shown_picture(self.render()))


class TextDisplay:
    """Mixin for tables and arithmetic: ``text/html`` is the text of ``_text()`` (what the
    CLI prints), in a ``<pre>`` so its columns stay aligned."""

    def _text(self) -> str:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return f"<pre>{escape(self._text())}</pre>"


class PageDisplay(Displayable):
    """Mixin for a result whose natural picture is a page (``self.html``): ``text/html`` is
    the page in an ``<iframe srcdoc>``, so its inline style cannot restyle the notebook;
    no PNG (``figure()`` stays available)."""

    _repr_png_ = None  # IPython skips a formatter whose method is not callable
    #: the frame's height in the notebook, in CSS pixels
    frame_height = 640

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{escape(self.html, quote=True)}" '
                f'style="width:100%;height:{self.frame_height}px;border:1px solid #ccc" '
                'sandbox="allow-scripts"></iframe>')
