"""Data-parallel training under ``torchrun`` (one or many machines), and the same code in one process.

API:
- ``init_distributed(device="auto") -> Dist``: reads torchrun's ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``; with more than one process it joins the process group (nccl when the device is
  a GPU, gloo on the CPU) and gives each process ``cuda:LOCAL_RANK`` (or the CPU). Without torchrun
  it is one process: rank 0 of 1, nothing initialised. Multi-node launches use torchrun's own
  rendezvous (``--nnodes``, ``--rdzv-endpoint``); nothing here needs to know.
- ``join_process_group(backend, timeout)``: the process group from torchrun's environment, so
  that a group restarted by ``--max-restarts`` does not meet its dead predecessor's addresses.
- ``Dist``: ``rank``, ``world_size``, ``local_rank``, ``device``, ``backend``; ``is_main`` (only
  rank 0 writes files), ``barrier()``, ``all_reduce_mean(tensor)`` (in place),
  ``all_reduce_mean_differentiable(tensor)`` (out of place, with a backward),
  ``sync_gradients(params)`` (one flat all-reduce of every gradient, averaged),
  ``gather_objects(obj)`` (a list over ranks on every rank), ``broadcast_object(obj)`` (rank 0's),
  ``shard(batch)`` (this rank's rows of a global batch: rows rank, rank + world, ...),
  ``close()`` (also run at exit for gloo, when a command ends without it).

Sharding a global batch by stride (not by contiguous blocks) keeps minibatch-stddev groups, which
are strided too, the same as in one process whenever the per-process batch is a multiple of the
group size.
"""

from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve_device


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def active(self):
        return self.world_size > 1

    def barrier(self):
        if self.active:
            dist.barrier()

    def all_reduce_mean(self, tensor):
        if self.active:
            dist.all_reduce(tensor)
            tensor.div_(self.world_size)
        return tensor

    def all_reduce_mean_differentiable(self, tensor):
        """The mean over processes, with a gradient: backward sums every process's incoming gradient,
        so a loss of the global mean differentiates as in one process (path length's mean)."""
        if not self.active:
            return tensor
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(tensor) / self.world_size

    def sync_gradients(self, params):
        """Average the gradients of ``params`` over the processes (one flat all-reduce). Parameters
        without a gradient are left without one (Adam skips them, as in one process); every process
        runs the same graph, so the set is the same everywhere."""
        if not self.active:
            return
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        offset = 0
        for p in params:
            p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def gather_objects(self, obj):
        if not self.active:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, batch):
        """This process's rows of a global batch (tensor or list)."""
        return batch[self.rank::self.world_size]

    def local_batch(self, global_batch, what="--batch"):
        if global_batch % self.world_size:
            raise ValueError(f"{what} {global_batch} must be divisible by the number of processes "
                             f"({self.world_size})")
        return global_batch // self.world_size

    def close(self):
        if self.active:
            _destroy_group()


def init_distributed(device="auto", timeout_minutes=30):
    """The process's place in a torchrun launch (or a single process); see the module docstring."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    wanted = resolve_device(device)
    if wanted.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible "
                             f"(use --nproc_per_node <= the GPU count)")
        wanted = torch.device("cuda", local_rank)
        torch.cuda.set_device(wanted)
    backend = "nccl" if wanted.type == "cuda" else "gloo"
    if not dist.is_initialized():
        join_process_group(backend, datetime.timedelta(minutes=timeout_minutes))
    group = Dist(rank, world_size, local_rank, wanted, backend)
    if backend == "gloo":
        # A gloo group alive at interpreter shutdown can abort the process ("terminate called without
        # an active exception"): a worker thread that frees its last work item then needs the GIL
        # to drop the Python state the item captured (rare; seen under load). Destroying the group
        # while Python is alive joins those threads first, on every way out (an error included).
        atexit.unregister(_destroy_group)  # once, however often a process asks for its group
        atexit.register(_destroy_group)
    return group


def _destroy_group():
    if dist.is_initialized():
        dist.destroy_process_group()


def join_process_group(backend, timeout):
    """``init_process_group`` from torchrun's environment, each elastic restart under its own keys.

    torchrun (since PyTorch 2.5) hands its workers the agent's own TCP store, which outlives a
    restart of the group (``--max-restarts``), and the workers write their addresses into it under
    fixed keys: a restarted gloo group reads a dead worker's address and fails with "connection
    refused" (pytorch/pytorch#135712). With one agent its restart count is the same in every worker,
    so it names the keys of each attempt. Several agents count restarts apart from each other;
    there torchrun's own opt-out, ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, gives each attempt a
    new store.
    """
    if (os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
            and os.environ.get("GROUP_WORLD_SIZE", "1") == "1"):
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        agent_store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                                    is_master=False, timeout=timeout)
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"stylenas/attempt_{attempt}", agent_store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    else:
        dist.init_process_group(backend, timeout=timeout)
