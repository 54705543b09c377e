"""Neural style transfer: Gatys et al. 2016, with the perceptual controls of Gatys et al. 2017
(colour preservation, spatial control by masks, scale control).

>>> from convscope.style import stylize
>>> result = stylize("sample:chelsea", "sample:ihc", size=128, steps=100)   # doctest: +SKIP
>>> result.save("cat-ihc.png")                                              # doctest: +SKIP

Modules: ``losses`` (Gram matrices and the three losses), ``backbone`` (VGG-19, the random
multi-scale texture network, any model; hooked feature extraction), ``controls`` (the 2017
controls), ``config`` (``StyleConfig``), ``transfer`` (the loop and ``stylize``), ``fast``
(``fast_stylize``: the packaged feed-forward networks, one pass per image).
"""

from convscope.style.backbone import (
    RandomMultiScaleNet,
    StyleBackbone,
    extract,
    open_backbone,
)
from convscope.style.config import StyleConfig
from convscope.style.controls import chroma_distance, match_color, read_mask
from convscope.style.fast import FastResult, fast_stylize, style_sheet
from convscope.style.losses import (
    content_loss,
    gram_matrix,
    guided_gram_matrix,
    style_layer_loss,
    tv_loss,
)
from convscope.style.transfer import StyleResult, stylize

__all__ = [
    "RandomMultiScaleNet",
    "StyleBackbone",
    "StyleConfig",
    "StyleResult",
    "chroma_distance",
    "content_loss",
    "FastResult",
    "fast_stylize",
    "style_sheet",
    "extract",
    "gram_matrix",
    "guided_gram_matrix",
    "match_color",
    "open_backbone",
    "read_mask",
    "style_layer_loss",
    "stylize",
    "tv_loss",
]
