"""The applications the lecture opens with: faces, objects, poses and people in a photo,
and the alt text built from them.  See :mod:`convscope.scene.models` and
:mod:`convscope.scene.describe`."""

from convscope.scene.models import (
    SCENE,
    SceneModel,
    default_for,
    open_scene,
    read_photo,
    register_scene,
    scene_names,
)
from convscope.scene.results import AltText, Concept, Detections, PersonMask, Poses

__all__ = ["SCENE", "AltText", "Concept", "Detections", "PersonMask", "Poses", "SceneModel",
           "default_for", "open_scene", "read_photo", "register_scene", "scene_names"]
