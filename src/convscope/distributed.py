"""Data parallelism on PyTorch's own engine: torchrun + torch.distributed (gloo on the CPU,
NCCL on CUDA).  Nothing here runs unless the process was started by torchrun.

Every rank holds the same data and draws the same random numbers; each works on its
contiguous share of every batch (and of every dataset it extracts features from), and
results are gathered back in the original order, so a run on N processes computes what
a single process would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def part(self, total: int) -> slice:
        """This rank's contiguous share of ``total`` items (the first ranks take one more)."""
        base, extra = divmod(total, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def all_sum(self, *values: float) -> list[float]:
        """Sum numbers over ranks (float64, so counts and sums stay exact)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any rank."""
        return bool(self.all_sum(float(flag))[0]) if self.enabled else flag

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's tensor stacked along dim 0 in rank order, on every rank.

        Shares may differ in length by one or more rows; they are padded for the
        collective and trimmed after.
        """
        if not self.enabled:
            return t
        device = self._device()
        local = t.to(device)
        sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([len(local)], device=device))
        longest = int(max(s.item() for s in sizes))
        pad = torch.zeros((longest - len(local), *local.shape[1:]), dtype=local.dtype,
                          device=device)
        buffers = [torch.empty((longest, *local.shape[1:]), dtype=local.dtype, device=device)
                   for _ in range(self.world)]
        dist.all_gather(buffers, torch.cat([local, pad]))
        return torch.cat([b[: int(s.item())] for b, s in zip(buffers, sizes)]).to(t.device)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def _device(self) -> torch.device:
        if self.enabled and dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


_CURRENT = Dist()


def current() -> Dist:
    """The process's place in a torchrun job (rank 0 of 1 outside torchrun)."""
    return _CURRENT


def init_from_env(device: str = "auto") -> Dist:
    """Join the torchrun job described by the environment (RANK, WORLD_SIZE, ...), once.

    The backend is NCCL when the job trains on CUDA, gloo otherwise.
    """
    global _CURRENT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or _CURRENT.enabled:
        return _CURRENT
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    _CURRENT = Dist(dist.get_rank(), dist.get_world_size(), local_rank)
    return _CURRENT


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. decoding a folder into the shared cache); the
    other ranks run it once rank 0 has finished."""
    d = current()
    if not d.is_main:
        d.barrier()
    try:
        yield
    finally:
        if d.is_main:
            d.barrier()


def shutdown() -> None:
    global _CURRENT
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = Dist()
