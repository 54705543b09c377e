"""Training checkpoints: everything needed to continue a run exactly, with no pickle.

A checkpoint is one safetensors file.  Its tensors are the model's state, the
optimizer's per-parameter state, every random generator's state and the current
epoch's data order; its JSON metadata holds the rest (optimizer hyperparameters,
scheduler state, the position in the epoch, running sums, metrics so far).
Writes are atomic (see :mod:`convscope.fileio`), so a killed writer leaves the
previous checkpoint intact and a partial file is never read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import safetensors.torch
import torch

from convscope.errors import ConvscopeError
from convscope.fileio import atomic_path, remove_stale_temps
from convscope.modelfile import verify_file

CHECKPOINT_NAME = "checkpoint.safetensors"
FORMAT = "convscope-checkpoint"


@dataclass
class LoopState:
    """Where the loop is: the next step to run, and what the current epoch has summed."""

    epoch: int = 1  # the epoch in progress (epochs + 1 once training has finished)
    step: int = 0  # steps of this epoch already taken
    seen: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    elapsed: float = 0.0  # training seconds spent in this epoch before the checkpoint
    global_step: int = 0
    history: list[dict] = field(default_factory=list)
    order: torch.Tensor | None = None  # this epoch's permutation of the training set


def save_checkpoint(folder: str | os.PathLike, model, optimizer, scheduler,
                    generator: torch.Generator, state: LoopState) -> Path:
    """Write ``folder/checkpoint.safetensors`` atomically."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous().clone()
    opt = optimizer.state_dict()
    opt_scalars: dict[str, dict] = {}
    for idx, pstate in opt["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous().clone()
            else:
                opt_scalars.setdefault(str(idx), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.loop"] = generator.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    if state.order is not None:
        tensors["loop.order"] = state.order.clone()
    loop = {k: v for k, v in asdict(state).items() if k != "order"}
    meta = {
        "format": FORMAT,
        "loop": loop,
        "optimizer": {"param_groups": opt["param_groups"], "scalars": opt_scalars},
        "scheduler": scheduler.state_dict(),
    }
    path = Path(folder) / CHECKPOINT_NAME
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp),
                                    metadata={"convscope-checkpoint": json.dumps(meta)})
    return path


def read_checkpoint(folder: str | os.PathLike,
                    clean: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata of ``folder``'s checkpoint, verified; temp files a killed
    writer left behind are never read (and removed, if ``clean``)."""
    folder = Path(folder)
    if clean:
        remove_stale_temps(folder, CHECKPOINT_NAME)
    path = folder / CHECKPOINT_NAME
    if not path.is_file():
        raise ConvscopeError(f"{folder} has no {CHECKPOINT_NAME} to resume from; train with "
                             f"`out=\"{folder}\"` first.")
    header = verify_file(path)
    try:
        meta = json.loads(header.get("__metadata__", {})["convscope-checkpoint"])
        assert meta["format"] == FORMAT
    except (KeyError, ValueError, AssertionError, TypeError):
        raise ConvscopeError(f"{path} is not a convscope checkpoint.") from None
    return safetensors.torch.load_file(str(path)), meta


def restore(tensors: dict, meta: dict, model, optimizer, scheduler,
            generator: torch.Generator) -> LoopState:
    """Put model, optimizer, scheduler and random generators back as they were saved."""
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items()
                           if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, scalars in meta["optimizer"]["scalars"].items():
        state.setdefault(int(idx), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.loop"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    loop = dict(meta["loop"])
    return LoopState(**loop, order=tensors.get("loop.order"))
