"""Several processes on one job: data parallelism over torch.distributed, under torchrun.

`python -m tunelab.training JOB_DIR` started by torchrun (`WORLD_SIZE` > 1) joins
the process group torchrun describes (gloo on CPU, nccl on GPU, one GPU per local
rank). Each optimizer step's examples are the same global batch as in one process;
rank r trains every world-th of them, and the gradients are summed across ranks
before the step. The loss is divided by the global count of trained tokens, so the
summed gradient is the one-process gradient, up to the order of float additions:
the loss curve and the checkpoint match a one-process run (tests/test_training_ddp.py).

This is DistributedDataParallel's arithmetic done explicitly, in one flat all-reduce
per step after the rank's micro-batches: the ranks pack different numbers of
micro-batches, which DDP's per-backward hooks cannot take without stalling, and a
LoRA adapter's gradients are a few MB, so overlapping their reduction with the
backward pass buys nothing. Rank 0 (the leader) alone writes events and checkpoints
and reads the job's control file; its decision reaches every rank each step.
Multi-node runs use torchrun's standard rendezvous (docs/deployment.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    local_world: int = 1  # processes on this machine (they share its cores)
    device: str = "cpu"  # where collectives' tensors live (nccl needs the rank's GPU)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, batch: list[int]) -> list[int]:
        """This rank's examples of a step's global batch."""
        return batch[self.rank :: self.world]


SINGLE = Group()
REQUESTS = (None, "pause", "cancel")  # what the leader's control can say, as numbers


def join(device: str) -> tuple[Group, str]:
    """The group torchrun started this process in (SINGLE without torchrun) and the
    device this rank trains on (its own GPU, `cuda:LOCAL_RANK`)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SINGLE, device
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device, backend = f"cuda:{local_rank}", "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend)
    group = Group(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        device=device,
    )
    return group, device


def leave(group: Group) -> None:
    if group.world > 1 and dist.is_initialized():
        dist.barrier()  # nobody tears down while the leader still saves
        dist.destroy_process_group()


def total(group: Group, *values: float) -> list[float]:
    """Each value summed over the ranks (as is, in one process)."""
    if group.world == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=group.device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def sum_gradients(group: Group, params: list[torch.nn.Parameter]) -> None:
    """Replace every rank's gradients by their sum over the ranks, in one all-reduce."""
    if group.world == 1:
        return
    for p in params:
        if p.grad is None:  # a rank whose share had no trained token
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params if p.grad is not None]
    flat = _flatten_dense_tensors(grads)  # type: ignore[no-untyped-call]
    dist.all_reduce(flat)
    summed_grads = _unflatten_dense_tensors(flat, grads)  # type: ignore[no-untyped-call]
    for g, summed in zip(grads, summed_grads, strict=True):
        g.copy_(summed)


def same_start(group: Group, params: list[torch.nn.Parameter]) -> None:
    """Every rank starts from the leader's trainable weights (a fresh adapter's random
    init is seeded alike everywhere; this makes it so whatever the library does)."""
    if group.world == 1:
        return
    for p in params:
        dist.broadcast(p.data, src=0)


def agree(group: Group, request: str | None) -> str | None:
    """The leader's stop request (pause/cancel/None), on every rank."""
    if group.world == 1:
        return request
    t = torch.tensor([REQUESTS.index(request) if group.leader else 0], device=group.device)
    dist.broadcast(t, src=0)
    return REQUESTS[int(t.item())]
