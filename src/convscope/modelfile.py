"""Self-describing model files: weights in safetensors, everything else in its header.

The header's metadata holds one JSON document under the key ``convscope`` with
what is needed to rebuild and use the model (model name and options, classes,
normalisation, input size) plus how it was made (training config, final
metrics).  Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_model as st_load
from safetensors.torch import save_model as st_save
from torch import nn

from convscope.errors import ModelFileError
from convscope.fileio import atomic_path
from convscope.version import __version__

FORMAT = "convscope-model"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelMeta:
    """Everything about a trained model except its weights.  Frozen: a changed field is a
    new ModelMeta (``dataclasses.replace``); predict/evaluate take ``tta=`` instead."""

    model: str  # registry name, e.g. "convnet"
    options: dict
    classes: list[str]
    channels: int
    image_size: list[int]  # (H, W) images are resized to before the model
    input_size: list[int]  # (H, W) the network is fed (>= image_size for small-input nets)
    mean: list[float]
    std: list[float]
    dataset: str = ""
    #: test-time augmentation used by predict/evaluate: 0 none, 1 mirror, 2 mirror + shifts
    tta: int = 0
    train_config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(
        timespec="seconds"))
    versions: dict = field(default_factory=dict)
    #: what the model does (a task of ``convscope.loading.TASKS``: "classify", ...)
    task: str = "classify"
    #: where the weights come from, in one line ("" for a file convscope trained: the
    #: dataset, versions and date say it; see :meth:`describe`)
    provenance: str = ""
    #: the terms of use of the weights ("" when none is stated)
    licence: str = ""

    def describe(self) -> ModelDescription:
        """What every model object says about itself (see :class:`ModelDescription`)."""
        provenance = self.provenance
        if not provenance:
            made = self.versions.get("convscope")
            provenance = (f"trained by convscope{' ' + made if made else ''}"
                          + (f" on {self.dataset}" if self.dataset else "")
                          + (f", {self.created[:10]}" if self.created else ""))
        return ModelDescription(
            task=self.task, name=self.model, labels=tuple(self.classes),
            channels=self.channels, image_size=tuple(self.image_size),
            input_size=tuple(self.input_size), mean=tuple(self.mean), std=tuple(self.std),
            provenance=provenance,
            licence=self.licence or "none stated (a model you trained is under your own "
                                    "terms and those of its training data)")

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
        version = d.get("version", 0)
        if not _is_int(version) or version < 0:
            raise ModelFileError(f"{where}: the convscope metadata field 'version' must be a "
                                 f"whole number, not {_shown(version)}; the file was altered "
                                 "or is corrupt.")
        if version > FORMAT_VERSION:
            raise ModelFileError(f"{where} was written by a newer convscope (format "
                                 f"{version}); upgrade convscope to read it.")
        names = set(cls.__dataclass_fields__)
        missing = {"model", "classes", "channels", "image_size", "input_size", "mean", "std"} - set(d)
        if missing:
            raise ModelFileError(f"{where}: the convscope metadata lacks {', '.join(sorted(missing))}.")
        d.setdefault("options", {})
        validate_meta(d, where)
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class ModelDescription:
    """The self-description every model object of every task gives (``describe()``), the
    same shape for a file you trained, a torchvision network or a packaged one."""

    task: str  # "classify", ...
    name: str  # the network: registry name with options, torchvision:NAME, ...
    labels: tuple[str, ...]  # what its outputs mean (class names)
    channels: int
    image_size: tuple[int, int]  # (H, W) images are resized to
    input_size: tuple[int, int]  # (H, W) the network is fed
    mean: tuple[float, ...]  # per-channel normalisation: (x - mean) / std on [0, 1] pixels
    std: tuple[float, ...]
    provenance: str  # where the weights come from
    licence: str  # their terms of use

    def to_dict(self) -> dict:
        return {**asdict(self), "labels": list(self.labels)}

    def format(self) -> str:
        h, w = self.image_size
        shown = ", ".join(self.labels[:20]) + (" ..." if len(self.labels) > 20 else "")
        fed = (f", fed to the network at {self.input_size[0]}x{self.input_size[1]}"
               if self.input_size != self.image_size else "")
        rows = [("task", self.task), ("model", self.name),
                ("input", f"{h}x{w}x{self.channels}{fed}"),
                ("labels", f"{len(self.labels)}: {shown}"),
                ("normalize", f"mean {list(self.mean)}  std {list(self.std)}"),
                ("provenance", self.provenance), ("licence", self.licence)]
        return "\n".join(f"{k:<11} {v}" for k, v in rows)


# Bounds on what a model file's metadata may describe (checked before anything is built).
MAX_CLASSES = 100_000
MAX_CHANNELS = 4
MAX_SIDE = 8192  # pixels per side of image_size / input_size


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(x) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an integer too large for a float
        return False


def _shown(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_meta(d: dict, where: str) -> None:
    """Check the type and range of every field a model file's metadata uses, so that bad
    metadata is refused with one sentence naming the field (not a TypeError later).

    Hand-written rather than a schema library: the rules are a dozen lines and the
    sentences must name the field and the bound in the user's terms."""

    def bad(key: str, want: str) -> ModelFileError:
        return ModelFileError(f"{where}: the convscope metadata field {key!r} must be {want}, "
                              f"not {_shown(d[key])}; the file was altered or is corrupt.")

    if not isinstance(d["model"], str) or not d["model"]:
        raise bad("model", "a model name such as \"convnet\"")
    if not isinstance(d["options"], dict):
        raise bad("options", "a JSON object of model options")
    classes = d["classes"]
    if (not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES
            or not all(isinstance(c, str) for c in classes)):
        raise bad("classes", f"a list of 1 to {MAX_CLASSES:,} class names (strings)")
    channels = d["channels"]
    if not _is_int(channels) or not 1 <= channels <= MAX_CHANNELS:
        raise bad("channels", f"a whole number from 1 to {MAX_CHANNELS}")
    for key in ("image_size", "input_size"):
        v = d[key]
        if (not isinstance(v, list) or len(v) != 2
                or not all(_is_int(s) and 1 <= s <= MAX_SIDE for s in v)):
            raise bad(key, f"[height, width], two whole numbers from 1 to {MAX_SIDE}")
    for key in ("mean", "std"):
        v = d[key]
        if (not isinstance(v, list) or len(v) != channels
                or not all(_is_number(x) and _finite(x) for x in v)):
            raise bad(key, f"a list of {channels} finite number(s), one per channel")
    if not all(s > 0 for s in d["std"]):
        raise bad("std", "positive (images are divided by it)")
    tta = d.get("tta", 0)
    if not _is_int(tta) or not 0 <= tta <= 2:
        raise bad("tta", "0, 1 or 2")
    for key in ("dataset", "created", "task", "provenance", "licence"):
        if key in d and not isinstance(d[key], str):
            raise bad(key, "a string")
    for key in ("train_config", "metrics", "versions"):
        if key in d and not isinstance(d[key], dict):
            raise bad(key, "a JSON object")


def _versions() -> dict:
    return {"convscope": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__}


def with_versions(meta: ModelMeta) -> ModelMeta:
    """``meta``, or a copy of it with the library versions when it records none."""
    return meta if meta.versions else replace(meta, versions=_versions())


def save_model(model: nn.Module, meta: ModelMeta, path: str | os.PathLike) -> Path:
    """Write weights + metadata atomically: a temp file in the same folder, fsync, rename;
    the library versions are recorded when ``meta`` has none."""
    meta = with_versions(meta)
    with atomic_path(path) as tmp:
        st_save(model, str(tmp), metadata={"convscope": meta.to_json()})
    return Path(path)


MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def program_kind(path: str | os.PathLike) -> str | None:
    """What a non-safetensors model file is, from its zip listing or first bytes, without
    loading anything: "torch.export" (a .pt2 archive), "TorchScript", "pickle" (torch.save's
    zip format), or None when it is none of these."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            return "torch.export"
        if any("/code/" in n or n.startswith("code/") or n.endswith("constants.pkl")
               for n in names):
            return "TorchScript"
        if any(n.endswith(".pkl") for n in names):
            return "pickle"
        return None
    return None  # a bare pickle is refused by the header check ("not JSON")


def foreign_error(path: str | os.PathLike, kind: str) -> ModelFileError:
    """The one sentence for a file that is a program or a pickle, not a convscope model."""
    if kind == "pickle":
        return ModelFileError(
            f"{path} is a Python pickle (torch.save), and convscope never unpickles files "
            "because that can run code; save weights with safetensors, or pass a state dict "
            "as `weights` for a torchvision model, which reads it with weights_only=True.")
    return ModelFileError(
        f"{path} is a {kind} program, which can run code when loaded, so convscope does not "
        f"open it here; `convscope summary {path} --trust-code` shows its layers if you trust "
        "the file, and the other commands take a convscope .safetensors model file.")


def verify_file(path: str | os.PathLike) -> dict:
    """Check a safetensors file's structure before anything uses it; return its header.

    safetensors itself refuses most malformed files, but with messages about
    bytes; this names what is wrong in terms a user can act on.  Checked: the
    8-byte length prefix, an oversized or truncated header, JSON structure,
    dtypes, shapes, offsets past the end of the data, sizes that don't match the
    shape, and overlapping tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist; train one with "
                             "`convscope train --out DIR` and pass DIR/model.safetensors.")
    kind = program_kind(path)
    if kind:
        raise foreign_error(path, kind)
    size = path.stat().st_size
    bad = f"{path} is not a valid safetensors model file"
    if size < 8:
        raise ModelFileError(f"{bad}: it is truncated ({size} bytes; the header length alone "
                             "takes 8).")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > MAX_HEADER_BYTES:
            raise ModelFileError(f"{bad}: its header claims {n:,} bytes, more than the "
                                 f"{MAX_HEADER_BYTES // 2**20} MB any model needs.")
        if 8 + n > size:
            raise ModelFileError(f"{bad}: it is truncated (the header needs {n:,} bytes but "
                                 f"only {size - 8:,} follow).")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{bad}: its header is not JSON (is it a pickle or another "
                             "format? convscope reads only safetensors).") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{bad}: its header is not a JSON object.")
    data_len = size - 8 - n
    spans = []
    for key, info in header.items():
        if key == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise ModelFileError(f"{bad}: its __metadata__ is not a map of strings.")
            continue
        if not isinstance(info, dict) or info.get("dtype") not in DTYPE_SIZES:
            raise ModelFileError(f"{bad}: tensor {key!r} has no valid dtype.")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ModelFileError(f"{bad}: tensor {key!r} has an invalid shape {shape!r}.")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) for o in offsets) and 0 <= offsets[0] <= offsets[1]):
            raise ModelFileError(f"{bad}: tensor {key!r} has invalid data offsets {offsets!r}.")
        begin, end = offsets
        if end > data_len:
            raise ModelFileError(f"{bad}: tensor {key!r} ends at byte {end:,}, past the end of "
                                 f"the data ({data_len:,} bytes); the file is truncated or "
                                 "corrupt.")
        numel = 1
        for d in shape:
            numel *= d
        if end - begin != numel * DTYPE_SIZES[info["dtype"]]:
            raise ModelFileError(f"{bad}: tensor {key!r} takes {end - begin:,} bytes but shape "
                                 f"{shape} of {info['dtype']} needs "
                                 f"{numel * DTYPE_SIZES[info['dtype']]:,}.")
        spans.append((begin, end, key))
    spans.sort()
    for (_b1, e1, k1), (b2, _e2, k2) in zip(spans, spans[1:]):
        if b2 < e1:
            raise ModelFileError(f"{bad}: tensors {k1!r} and {k2!r} overlap in the file "
                                 f"(bytes {b2:,}-{e1:,}); it was altered or corrupted.")
    return header


def read_meta(path: str | os.PathLike) -> ModelMeta:
    """The metadata of a model file, read from its verified header without loading weights."""
    header = verify_file(path)
    raw = (header.get("__metadata__") or {}).get("convscope")
    if raw is None:
        raise ModelFileError(f"{path} is a safetensors file without convscope metadata; it is "
                             "not a convscope model (plain weights go in `weights`, for a "
                             "torchvision model).")
    return ModelMeta.from_json(raw, str(path))


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load the file's tensors into ``model``, which must match them exactly."""
    header = verify_file(path)
    expected = model.state_dict()
    for key, info in header.items():
        if key in expected and list(expected[key].shape) != info["shape"]:
            raise ModelFileError(
                f"{path}: tensor {key!r} has shape {info['shape']} but the model its metadata "
                f"describes needs {list(expected[key].shape)}; the file was altered or is "
                "corrupt.")
    try:
        missing, unexpected = st_load(model, str(path), strict=False)
    except Exception as exc:  # noqa: BLE001 - corrupt data that passed the structural checks
        raise ModelFileError(f"{path}: the weights could not be read "
                             f"({str(exc).splitlines()[0][:200]}).") from None
    if missing or unexpected:
        raise ModelFileError(f"{path}: the weights do not match the model described in its "
                             f"metadata (missing {sorted(missing)[:3]}, unexpected "
                             f"{sorted(unexpected)[:3]}).")
    check_finite(model.state_dict(), str(path))


def check_finite(tensors: dict, where: str) -> None:
    """Refuse NaN or infinite weights, naming the first tensor that holds them."""
    for key, t in tensors.items():
        if t.is_floating_point() and t.device.type != "meta" and not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"{where}: tensor {key!r} holds NaN or infinite values, so "
                                 "every prediction would be NaN; retrain the model or use an "
                                 "earlier checkpoint.")
