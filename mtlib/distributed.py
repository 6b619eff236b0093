"""Training on several processes (one per GPU, or CPU processes for tests): PyTorch's
DistributedDataParallel, launched by `torchrun` (`torch.distributed.run`).

`train.common.nproc` above 1 makes the train stage start itself again under torchrun with that
many processes (`launch`); each then trains a replica on its share of every global batch and DDP
averages the gradients, so the optimiser sees the same global batch (`train.common.batch_size`)
as one process would. Rank 0 alone validates, prints, logs to dvclive and writes checkpoints and
the resume state; the resume state holds no trace of the process count, so a run interrupted with
N processes resumes with M.

Where this differs from one process: BatchNorm statistics are per process. On CUDA the encoder's
BatchNorm layers become SyncBatchNorm, which pools them across processes; on the CPU (gloo)
PyTorch has no synchronised BatchNorm, so CPU runs match one process only within a tolerance
(tests/test_pipeline.py states it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    """This process's place: rank 0 of 1 when not distributed."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The process group torchrun described in the environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    return World(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    )


def launch(nproc: int, module: str, argv: Sequence[str]) -> bool:
    """Run `python -m module argv` under torchrun with `nproc` processes on this machine and wait
    for it, when `nproc` > 1 and this process is not already one of them. True when it ran (the
    caller is done), False when the caller should train itself. A failed worker is an error."""
    if nproc <= 1 or "WORLD_SIZE" in os.environ:
        return False
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        module,
        *argv,
    ]
    print(f"[train] {nproc} processes: {' '.join(cmd[1:])}", flush=True)
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun with {nproc} processes failed (exit {done.returncode})")
    return True


def init(device) -> World:
    """Join the process group (NCCL on CUDA, gloo on the CPU); the current CUDA device becomes
    this process's LOCAL_RANK. A no-op for one process."""
    import datetime

    import torch

    w = world()
    if w.size == 1 or torch.distributed.is_initialized():
        return w
    if device.type == "cuda":
        torch.cuda.set_device(w.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # rank 0 validates on whole tracks while the others wait at the next all-reduce
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    return w


def wrap(model, device, w: World):
    """The model to call in training: DDP around `model` when distributed (SyncBatchNorm on
    CUDA), else `model` itself. Parameters a model's forward leaves unused (a head switched off
    by its weight) are allowed."""
    import torch

    if w.size == 1:
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [w.local_rank] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=True
    )


def agree(value, w: World):
    """Rank 0's `value` on every process (a stop decision taken from rank 0's clock)."""
    import torch

    if w.size == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def finish(w: World) -> None:
    import torch

    if w.size > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


class ShardedBatches:
    """This process's share of every global batch of `batches` (a batch sampler): items
    rank, rank + size, ... of each, so the processes together see exactly the one-process
    batches (length-bucketed as before). A global batch with fewer items than processes is
    skipped on every process alike (DDP needs every process in every step)."""

    def __init__(self, batches, w: World):
        if batches.batch_size < w.size:
            raise ValueError(
                f"train.common.batch_size {batches.batch_size} is smaller than "
                f"train.common.nproc {w.size}: every process needs a share of each batch"
            )
        self.batches, self.w = batches, w

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return sum(1 for b in self.batches if len(b) >= self.w.size)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            if len(batch) >= self.w.size:
                yield batch[self.w.rank :: self.w.size]
