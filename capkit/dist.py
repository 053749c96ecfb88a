"""Several training processes under torchrun: joining the process group, each rank's share, results gathered back;
each process's device (:func:`resolve_device`) and seeds (:func:`set_seed`, :func:`rank_seed`).

torchrun (``torch.distributed.run``) starts one process per device and tells each, in environment variables,
its ``RANK``, the ``WORLD_SIZE``, its ``LOCAL_RANK`` on the machine and where to meet (``MASTER_ADDR``,
``MASTER_PORT``). :func:`init` joins that group (``gloo`` on the CPU, ``nccl`` on CUDA). Without torchrun, or with
one process, nothing is joined and every helper here is what one process would do: rank 0 of 1, its share is
everything, a gather returns its own results and a barrier returns at once. So code written with these helpers
runs unchanged, and gives the same results, in one process.

The rules the trainer follows with them (``capkit.fit``, ``capkit.train``): every rank builds the same batches and
takes its share of each; only rank 0 writes files; anything a rank must know that only rank 0 has (a checkpoint it read, a
decision) is broadcast from rank 0, so the run folder need not be on a file system shared between machines.

This module imports only torch (and numpy, to seed it).
"""

from __future__ import annotations

import datetime
import gc
import os
import random
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as tdist

# how long a rank waits for the others in one collective: rank 0 may fill the feature cache alone while the
# others wait (:func:`main_first`), which on a large image set takes much longer than torch's default 30 minutes
TIMEOUT = datetime.timedelta(hours=6)


def active() -> bool:
    """True in a process group of more than one process (under torchrun with --nproc_per_node > 1)."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    return tdist.get_rank() if active() else 0


def world_size() -> int:
    return tdist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes files and prints."""
    return rank() == 0


def init(device: str = "auto") -> bool:
    """Join torchrun's process group when its environment says WORLD_SIZE > 1; returns whether it did.

    The backend follows the device: ``nccl`` when the run trains on CUDA (each rank then uses the GPU numbered by
    its LOCAL_RANK), ``gloo`` on the CPU. The rendezvous itself (one machine or several) is torchrun's: its
    environment variables are all this needs."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or active():
        return active()
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    tdist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return True


def finish() -> None:
    """Leave the process group (at the end of a distributed run).

    The garbage is collected first: a DDP wrapper sits in reference cycles, so it can outlive its last use until the
    collector runs, and freed after destroy_process_group it most likely is what made a rank abort at exit (SIGABRT /
    SIGSEGV in a gloo thread, "terminate called without an active exception": 9 of ~110 runs of the two-rank test
    on a loaded 2-core CPU without the collection, 0 of 30 with it)."""
    if tdist.is_available() and tdist.is_initialized():
        gc.collect()
        tdist.destroy_process_group()


def one_machine() -> bool:
    """Whether all ranks run on this machine (torchrun's LOCAL_WORLD_SIZE is the WORLD_SIZE); True in one process."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size())) == world_size()


def barrier() -> None:
    if active():
        tdist.barrier()


@contextmanager
def main_first():
    """Rank 0 runs the block first, the others wait, then run it themselves: for work that fills a cache (rank 0
    writes it, the others then find it complete and only read)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast(obj):
    """Rank 0's ``obj`` (any picklable object, tensors included) on every rank."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def share(n: int) -> list[int]:
    """The positions 0..n-1 that are this rank's: every world_size-th one from its rank (with rows sorted by
    length, every rank gets rows of every length). Empty when n < world_size and the rank comes after n."""
    return list(range(rank(), n, world_size()))


def gather(pieces: dict) -> list:
    """Every rank's {position: result} merged, in position order, on every rank (one process: its own values in
    key order). Positions must not repeat across ranks."""
    if active():
        everyone = [None] * world_size()
        tdist.all_gather_object(everyone, pieces)
        merged = {}
        for part in everyone:
            merged.update(part)
        pieces = merged
    return [pieces[k] for k in sorted(pieces)]


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (float64), on every rank."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if tdist.get_backend() == "nccl":
        t = t.cuda()
    tdist.all_reduce(t)
    return t.cpu().tolist()


def rank_seed(seed: int) -> int:
    """A seed of its own for each rank, from a shared one (dropout: ranks must not draw the same masks)."""
    return seed * 65_537 + rank()  # distinct for every (seed, rank) with fewer than 65,537 ranks


# ----------------------------------------------------------------------------- this process's device and seeds


def resolve_device(device: str) -> torch.device:
    """"auto": CUDA when present, else the CPU. Under torchrun, "cuda" is this rank's GPU (set by dist.init)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and active():
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
