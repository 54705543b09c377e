"""Models by name from one registry: ``build_model("convnet", ModelInput(1, 10, (28, 28)))``."""

from convscope.models import classic, fast, spec, zoo  # noqa: F401  (registration)

# isort: split
from convscope.models import pretrained  # noqa: F401  (after the zoo, so listed last)

# isort: split
from convscope.models import scene  # noqa: F401  (the scene networks, after the classifiers)

# isort: split
from convscope.models import detection, segmentation  # noqa: F401  (family detect, segment)

# isort: split
from convscope.models.registry import (
    ModelEntry,
    ModelInput,
    build_model,
    canonical_name,
    get_entry,
    list_models,
    model_entries,
    parse_model_name,
    register_model,
)

__all__ = [
    "ModelEntry",
    "ModelInput",
    "build_model",
    "canonical_name",
    "get_entry",
    "list_models",
    "model_entries",
    "parse_model_name",
    "register_model",
]
