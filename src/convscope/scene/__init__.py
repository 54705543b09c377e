"""The applications the lecture opens with: faces, objects, poses and people in a photo,
and the alt text built from them.  See :mod:`convscope.scene.models` and
:mod:`convscope.scene.describe`.

>>> convscope.faces("group.jpg")[0].boxes          # doctest: +SKIP
>>> convscope.describe("kitchen.jpg")[0].text      # doctest: +SKIP
'Image may contain: 2 people, a cup, a dining table; possibly espresso'
"""

from convscope.scene.describe import DescribeConfig, Describer, describe
from convscope.scene.models import (
    SCENE,
    SceneModel,
    detect,
    faces,
    open_scene,
    pose,
    read_photo,
    register_scene,
    scene_names,
    segment,
)
from convscope.scene.results import AltText, Concept, Detections, PersonMask, Poses

__all__ = ["SCENE", "AltText", "Concept", "DescribeConfig", "Describer", "Detections",
           "PersonMask", "Poses", "SceneModel", "describe", "detect", "faces",
           "open_scene", "pose", "read_photo", "register_scene", "scene_names", "segment"]
