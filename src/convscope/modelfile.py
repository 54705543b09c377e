"""Self-describing model files: weights in safetensors, everything else in its header.

The header's metadata holds one JSON document under the key ``convscope`` with
what is needed to rebuild and use the model (model name and options, classes,
normalisation, input size) plus how it was made (training config, final
metrics).  Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from convscope.errors import ModelFileError

FORMAT = "convscope-model"
FORMAT_VERSION = 1


@dataclass
class ModelMeta:
    """Everything about a trained model except its weights."""

    model: str  # registry name, e.g. "convnet"
    options: dict
    classes: list[str]
    channels: int
    image_size: list[int]  # (H, W) images are resized to before the model
    input_size: list[int]  # (H, W) the network is fed (>= image_size for small-input nets)
    mean: list[float]
    std: list[float]
    dataset: str = ""
    train_config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(
        timespec="seconds"))
    versions: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **asdict(self)})

    @classmethod
    def from_json(cls, text: str, where: str) -> ModelMeta:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{where}: the convscope metadata is not valid JSON ({exc}).") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ModelFileError(f"{where} is not a convscope model file; train one with "
                                 "`convscope train`.")
        if d.get("version", 0) > FORMAT_VERSION:
            raise ModelFileError(f"{where} was written by a newer convscope (format "
                                 f"{d['version']}); upgrade convscope to read it.")
        names = set(cls.__dataclass_fields__)
        missing = {"model", "classes", "channels", "image_size", "input_size", "mean", "std"} - set(d)
        if missing:
            raise ModelFileError(f"{where}: the convscope metadata lacks {', '.join(sorted(missing))}.")
        return cls(**{k: v for k, v in d.items() if k in names})


def _versions() -> dict:
    import torchvision

    from convscope import __version__

    return {"convscope": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__}


def save_model(model: nn.Module, meta: ModelMeta, path: str | os.PathLike) -> Path:
    """Write weights + metadata atomically: a temp file in the same folder, fsync, rename."""
    from safetensors.torch import save_model as st_save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta.versions = meta.versions or _versions()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        st_save(model, tmp, metadata={"convscope": meta.to_json()})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_meta(path: str | os.PathLike) -> ModelMeta:
    """The metadata of a model file, read from its header without loading weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist; train one with "
                             "`convscope train --out DIR` and pass DIR/model.safetensors.")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("convscope")
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for bad headers
        raise ModelFileError(f"{path} is not a valid safetensors model file "
                             f"({str(exc).splitlines()[0][:160]}).") from None
    if raw is None:
        raise ModelFileError(f"{path} is a safetensors file without convscope metadata; it is "
                             "not a convscope model (for plain weights use --weights FILE).")
    return ModelMeta.from_json(raw, str(path))


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load the file's tensors into ``model``, which must match them exactly."""
    from safetensors.torch import load_model as st_load

    try:
        missing, unexpected = st_load(model, str(path), strict=False)
    except Exception as exc:  # noqa: BLE001 - shape mismatches and corrupt data alike
        raise ModelFileError(f"{path}: the weights do not match the model described in its "
                             f"metadata ({str(exc).splitlines()[0][:200]}).") from None
    if missing or unexpected:
        raise ModelFileError(f"{path}: the weights do not match the model described in its "
                             f"metadata (missing {sorted(missing)[:3]}, unexpected "
                             f"{sorted(unexpected)[:3]}).")
