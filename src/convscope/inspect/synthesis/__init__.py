"""Images made by gradient ascent: class and neuron visualisation, and the core DeepDream uses.

>>> from convscope.inspect.synthesis import class_images, VisualizeConfig
>>> res = class_images(clf, ["cat", "ship"], VisualizeConfig("yosinski"))   # doctest: +SKIP
>>> res.images.shape            # (2, 3, 32, 32) in [0, 1]                  # doctest: +SKIP
>>> res.pil()[0].save("cat.png")                                            # doctest: +SKIP

The pieces compose (see each module): ``objectives`` (what to maximise), ``param``
(pixels or Fourier, as ``(params, image_fn)``), ``transforms`` (jitter, scale, rotate),
``regularizers`` (L2, TV, blur, clipping) and ``core.ascend``, the one loop.
"""

from convscope.inspect.synthesis import objectives, param, regularizers, transforms
from convscope.inspect.synthesis.core import SynthesisResult, ascend
from convscope.inspect.synthesis.visualize import (
    PRESETS,
    Judgement,
    VisualizeConfig,
    channel_images,
    class_images,
    class_index,
    default_preset,
    judge_images,
    list_presets,
    register_preset,
    visualize,
)

__all__ = [
    "PRESETS",
    "Judgement",
    "SynthesisResult",
    "VisualizeConfig",
    "ascend",
    "channel_images",
    "class_images",
    "class_index",
    "default_preset",
    "judge_images",
    "list_presets",
    "objectives",
    "param",
    "register_preset",
    "regularizers",
    "transforms",
    "visualize",
]
