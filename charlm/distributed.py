"""Data-parallel training under `torchrun`, with torch's DistributedDataParallel.

Every rank lays the corpus out as the same global `--batch-size` streams and trains streams
[r*B/W, (r+1)*B/W) of them, keeping those streams' hidden states. DDP averages the gradients, so
with equal shards the step is the one a single process takes over all B streams; the data position
is global, the same on every rank. Rank 0 alone logs, evaluates and writes checkpoints; a checkpoint
gathers every rank's hidden states into the single-process layout (layers, B, hidden), so any world
size that divides B can resume it.

Ranks never wait on each other's clocks per step: every SYNC_EVERY steps rank 0 broadcasts its
elapsed time and whether a stop was asked for, and all ranks take those as the schedule's time.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from .errors import CharLMError
from .model import State, map_state

T = TypeVar("T")

SYNC_EVERY = 20  # steps between broadcasts of rank 0's clock and stop request


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: rank, world size and the rank within its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK; a plain process is rank 0 of 1."""
        if "WORLD_SIZE" not in os.environ:
            return SINGLE
        try:
            return cls(*(int(os.environ.get(name, "0")) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")))
        except ValueError:
            raise CharLMError("RANK, WORLD_SIZE and LOCAL_RANK must be numbers; start charlm with torchrun") from None

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def shard(self, batch_size: int) -> slice:
        """This rank's streams of the global batch."""
        if batch_size % self.world:
            raise CharLMError(
                f"--batch-size {batch_size} does not split over {self.world} processes; "
                f"use a multiple of {self.world}, e.g. {batch_size + self.world - batch_size % self.world}"
            )
        per_rank = batch_size // self.world
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    @contextlib.contextmanager
    def group(self) -> Iterator[Ranks]:
        """The process group for the job's lifetime: nccl for CUDA tensors, gloo for CPU ones."""
        if not self.active:
            yield self
            return
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if self.local_rank < torch.cuda.device_count():
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group(backend)
        try:
            yield self
            # Leave together, with the job's objects that hold the group (DistributedDataParallel's
            # reducer) freed first: a rank that tears its group down while a peer still uses it (rank 0
            # printing its sample) can make the peer abort at exit.
            gc.collect()
            dist.barrier()
        except RuntimeError as e:
            if not lost_peer(e):
                raise
            raise CharLMError(self.lost_message(e)) from None
        finally:
            dist.destroy_process_group()

    def lost_message(self, error: RuntimeError) -> str:
        """One line for a rank whose peer stopped first (killed, or stopped by its own error, said above)."""
        detail = re.sub(r"^\[[^\]]*\]\s*", "", str(error).strip()).split(". ")[0].splitlines()[0]
        return (
            f"process {self.rank} of {self.world} lost the others ({detail}): one stopped first, and its own "
            "message or torchrun's summary says why; a run goes on from its last checkpoint with "
            "charlm train --resume RUN"
        )

    @contextlib.contextmanager
    def leader_first(self) -> Iterator[None]:
        """Rank 0 runs the block (e.g. preparing the corpus cache) before the others do."""
        if not self.active:
            yield
            return
        if not self.leader:
            dist.barrier()
        try:
            yield
        finally:
            if self.leader:
                dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over ranks (gloo has no AVG: a sum, divided)."""
        if not self.active:
            return value
        total = value.clone()
        dist.all_reduce(total)
        return total / self.world

    def from_leader(self, values: list[float], device: torch.device) -> list[float]:
        """Rank 0's values on every rank (a host sync: call it every SYNC_EVERY steps, not every step)."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def slowest(self, speed: float) -> float:
        """The lowest of the ranks' `speed`s, on every rank: a job goes as fast as its slowest process."""
        if not self.active:
            return speed
        lowest = torch.tensor([speed], dtype=torch.float64)  # on the CPU: gloo carries it under either backend
        dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
        return lowest.item()

    def broadcast_object(self, value: T) -> T:
        """Rank 0's picklable `value` on every rank (the run's plan: one message, once per run)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """The ranks' equal-shaped tensors concatenated along `dim`, in rank order, on every rank."""
        if not self.active:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim)

    def gather_state(self, state: State | None) -> State | None:
        """Every rank's hidden state in the single-process layout (layers, batch_size, hidden), on the CPU."""
        return map_state(lambda s: self.gather(s, dim=1).cpu(), state)


def launcher_pid() -> int | None:
    """torchrun's agent, the parent of each process it starts (None: not started by torchrun)."""
    return os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else None


def lost_peer(error: RuntimeError) -> bool:
    """A collective failed because another process of the job is gone: gloo's transport saw its
    connection closed or reset, or timed out (plain RuntimeErrors), or torch's distributed errors (nccl)."""
    return isinstance(error, getattr(dist, "DistError", ())) or "gloo/transport" in str(error)  # (older torch: none)


SINGLE = Ranks()  # a plain process: rank 0 of 1
