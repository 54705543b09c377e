"""convscope: a workbench for convolutional networks on images.

>>> import convscope
>>> clf = convscope.train("mnist5k", model="convnet", epochs=2)   # doctest: +SKIP
>>> clf.topk("digit.png")                                         # doctest: +SKIP
>>> clf.save("model.safetensors"); clf = convscope.load("model.safetensors")  # doctest: +SKIP
>>> convscope.open_model("resnet18").describe().task                          # doctest: +SKIP
'classify'
"""

from convscope.api import predict, resume, train  # noqa: E402
from convscope.classifier import Classifier, load  # noqa: E402
from convscope.data import ImageDataset, list_datasets, load_dataset  # noqa: E402
from convscope.errors import ConvscopeError  # noqa: E402
from convscope.evaluate import Evaluation  # noqa: E402
from convscope.inspect.attribution import (  # noqa: E402
    Attribution,
    ExplainConfig,
    explain,
    explain_many,
    list_methods,
)
from convscope.inspect.challenges import Challenges, ChallengesConfig, challenges  # noqa: E402
from convscope.inspect.detection import (  # noqa: E402
    BoxExplainConfig,
    BoxExplanation,
    explain_detection,
)
from convscope.inspect.dream import DreamConfig, dream  # noqa: E402
from convscope.inspect.embedding import EmbedConfig, Embedding, embed  # noqa: E402
from convscope.inspect.faithfulness import (  # noqa: E402
    FaithfulnessConfig,
    FaithfulnessResult,
    faithfulness,
)
from convscope.inspect.filters import (  # noqa: E402
    Activations,
    ActivationsConfig,
    Filters,
    FiltersConfig,
    activations,
    filters,
)
from convscope.inspect.layers import LayerList, list_layers  # noqa: E402
from convscope.inspect.neighbors import NeighborsConfig, Neighbours, neighbors  # noqa: E402
from convscope.inspect.patches import Patches, PatchesConfig, patches  # noqa: E402
from convscope.inspect.receptive import ReceptiveField, receptive_fields  # noqa: E402
from convscope.inspect.summary import layer_table, summarize  # noqa: E402
from convscope.inspect.synthesis.visualize import (  # noqa: E402
    VisualizeConfig,
    channel_images,
    class_images,
    visualize,
)
from convscope.loading import TASKS, as_classifier, open_model, register_task  # noqa: E402
from convscope.modelfile import ModelDescription  # noqa: E402
from convscope.models import build_model, list_models  # noqa: E402
from convscope.models.arithmetic import (  # noqa: E402
    DoesNotFit,
    Volume,
    conv_arithmetic,
    pool_arithmetic,
)
from convscope.models.spec import build_spec, parse_spec  # noqa: E402
from convscope.render.report import Report, ReportConfig, build_report  # noqa: E402
from convscope.scene import (  # noqa: E402
    AltText,
    DescribeConfig,
    Describer,
    Detections,
    PersonMask,
    Poses,
    describe,
    detect,
    faces,
    pose,
    segment,
)
from convscope.style import StyleConfig, stylize  # noqa: E402
from convscope.train import TrainConfig  # noqa: E402
from convscope.version import __version__

__all__ = [
    "AltText",
    "BoxExplainConfig",
    "BoxExplanation",
    "DescribeConfig",
    "Describer",
    "Detections",
    "PersonMask",
    "Poses",
    "describe",
    "detect",
    "explain_detection",
    "faces",
    "pose",
    "segment",
    "__version__",
    "activations",
    "Activations",
    "ActivationsConfig",
    "Attribution",
    "build_model",
    "build_report",
    "build_spec",
    "Challenges",
    "challenges",
    "ChallengesConfig",
    "channel_images",
    "class_images",
    "Classifier",
    "conv_arithmetic",
    "ConvscopeError",
    "DoesNotFit",
    "dream",
    "DreamConfig",
    "embed",
    "EmbedConfig",
    "Embedding",
    "Evaluation",
    "explain",
    "explain_many",
    "ExplainConfig",
    "faithfulness",
    "FaithfulnessConfig",
    "FaithfulnessResult",
    "filters",
    "Filters",
    "FiltersConfig",
    "ImageDataset",
    "layer_table",
    "LayerList",
    "list_datasets",
    "list_layers",
    "list_methods",
    "list_models",
    "load",
    "open_model",
    "as_classifier",
    "register_task",
    "TASKS",
    "ModelDescription",
    "load_dataset",
    "neighbors",
    "NeighborsConfig",
    "Neighbours",
    "parse_spec",
    "Patches",
    "patches",
    "PatchesConfig",
    "pool_arithmetic",
    "predict",
    "receptive_fields",
    "Report",
    "ReportConfig",
    "ReceptiveField",
    "resume",
    "StyleConfig",
    "stylize",
    "summarize",
    "train",
    "TrainConfig",
    "visualize",
    "VisualizeConfig",
    "Volume",
]
