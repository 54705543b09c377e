"""Sample photos that need no download: the ones bundled inside scikit-image's wheel.

``sample:NAME`` names one wherever an image path is accepted by ``convscope style``.
Only the files that ship in the wheel are listed; scikit-image fetches its other samples
with pooch at run time, which an offline machine cannot do.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from convscope.errors import unknown_name

PREFIX = "sample:"

#: name -> (file in skimage/data, what it shows)
SAMPLES = {
    "chelsea": ("chelsea.png", "a tabby cat's face, 451x300 RGB"),
    "astronaut": ("astronaut.png", "astronaut Eileen Collins, 512x512 RGB"),
    "coffee": ("coffee.png", "a cup of coffee on a saucer, 600x400 RGB"),
    "rocket": ("rocket.jpg", "a rocket on its launch pad at dusk, 640x427 RGB"),
    "motorcycle": ("motorcycle_left.png", "a motorcycle in a garage, 741x500 RGB"),
    "ihc": ("ihc.png", "immunohistochemistry stain: brown and blue cells, 512x512 RGB"),
    "hubble": ("hubble_deep_field.jpg", "the Hubble deep field: galaxies on black, 1000x872 RGB"),
    "retina": ("retina.jpg", "a human retina, orange on black, 1411x1411 RGB"),
    "color": ("color.png", "a colour wheel, 371x370 RGB"),
    "brick": ("brick.png", "a brick wall texture, 512x512 grayscale"),
    "grass": ("grass.png", "a grass texture, 512x512 grayscale"),
    "gravel": ("gravel.png", "a gravel texture, 512x512 grayscale"),
}


def list_samples() -> list[str]:
    return [PREFIX + name for name in SAMPLES]


def sample_path(name: str) -> Path:
    """The file of sample ``name`` inside the installed scikit-image."""
    if name not in SAMPLES:
        raise unknown_name("sample image", PREFIX + name, list_samples())
    return Path(str(files("skimage") / "data" / SAMPLES[name][0]))


def resolve(source):
    """``sample:NAME`` -> the sample's path; anything else is returned unchanged."""
    if isinstance(source, str) and source.startswith(PREFIX):
        return sample_path(source[len(PREFIX):])
    return source
