"""Distributed data parallel (torchrun) and bf16 autocast helpers of the compression job.

Under ``torchrun --nproc_per_node N`` every rank runs the same job: each distillation micro-batch
(the *global* batch, ``--batch``) is split into N equal contiguous shards, each rank backpropagates
its shard's mean loss and the gradients are averaged with one all-reduce per optimiser step
(manual all-reduce rather than ``DistributedDataParallel``, so forward hooks and module names stay
those of the plain model). Since every loss is a mean over equally sized shards, the averaged
gradient is the gradient of the global batch: N processes and one process give the same weights up
to float summation order. Only rank 0 writes checkpoints, logs and the report.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op.

Example:
    >>> world_size(), rank(), is_main(), shard([0, 1, 2, 3])
    (1, 0, True, [0, 1, 2, 3])
    >>> with autocast(False):
    ...     pass
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator, Sequence

import torch

from ..errors import UsageError

#: process-group backend per device type (CPU runs and tests use gloo)
BACKENDS: dict[str, str] = {"cpu": "gloo", "cuda": "nccl"}


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); ``True`` when distributed.

    ``device`` is the device type (``"cpu"``: gloo, ``"cuda"``: nccl). For ``cuda`` this process's
    GPU becomes ``cuda:{LOCAL_RANK}`` (``torch.cuda.set_device``) before the group is joined.

    Example:
        >>> init_from_env("cpu")   # not under torchrun
        False
    """
    import torch.distributed as dist

    kind = torch.device(device).type
    if kind == "cuda":
        from .device import local_rank

        torch.cuda.set_device(local_rank())
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend=BACKENDS[kind])
    return True


def shutdown() -> None:
    """Leave the process group (no-op when not distributed)."""
    d = _dist()
    if d is not None:
        d.destroy_process_group()


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    d = _dist()
    return d.get_world_size() if d else 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    d = _dist()
    return d.get_rank() if d else 0


def is_main() -> bool:
    """Whether this process writes files (rank 0)."""
    return rank() == 0


def check_batch(batch: int) -> None:
    """Refuse a global batch that does not split evenly over the ranks (one line).

    Example:
        >>> check_batch(3)
    """
    n = world_size()
    if batch % n:
        raise UsageError(f"--batch {batch} does not split over {n} processes; use a multiple of {n}")


def shard(indices: Sequence[int]) -> list[int]:
    """This rank's contiguous share of ``indices`` (equal shares; see :func:`check_batch`).

    Example:
        >>> shard(range(6))
        [0, 1, 2, 3, 4, 5]
    """
    n, r = world_size(), rank()
    indices = list(indices)
    per = len(indices) // n
    return indices[r * per:(r + 1) * per] if n > 1 else indices


def strided(indices: Sequence[int]) -> list[int]:
    """Every ``world_size``-th element of ``indices`` starting at this rank (uneven shares allowed)."""
    return list(indices)[rank()::world_size()]


def _comm_device() -> torch.device:
    """Where the process group's collectives run: this rank's GPU under nccl, else the CPU."""
    d = _dist()
    if d is not None and d.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_(tensors: Iterable[torch.Tensor], *, mean: bool) -> None:
    """Sum (or average) ``tensors`` in place over the ranks with one flattened all-reduce
    (on this rank's GPU under nccl, whatever device the tensors are on).

    Example:
        >>> t = [torch.ones(2)]; all_reduce_(t, mean=True); t[0].tolist()
        [1.0, 1.0]
    """
    d = _dist()
    tensors = list(tensors)
    if d is None or not tensors:
        return
    flat = torch.cat([t.reshape(-1).float().to(_comm_device()) for t in tensors])
    d.all_reduce(flat)
    if mean:
        flat /= d.get_world_size()
    pos = 0
    for t in tensors:
        t.copy_(flat[pos:pos + t.numel()].view_as(t))
        pos += t.numel()


def average_grads_(params: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over the ranks (missing gradients count as zero)."""
    params = [p for p in params if p.requires_grad]
    if _dist() is None:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_([p.grad for p in params], mean=True)


def mean_values(values: dict[str, float]) -> dict[str, float]:
    """``values`` averaged over the ranks (for logging the global batch's losses)."""
    if _dist() is None:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    all_reduce_([t], mean=True)
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    d = _dist()
    if d is not None and d.get_backend() == "nccl":
        d.barrier(device_ids=[torch.cuda.current_device()])
    elif d is not None:
        d.barrier()


def _cpu_bf16_native() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


#: autocast device type -> (bf16 autocast runs there, it runs on native bf16 units)
BF16_SUPPORT = {
    "cpu": lambda: (True, _cpu_bf16_native()),  # emulated without AVX512-BF16 / AMX: correct but slow
    "cuda": lambda: (torch.cuda.is_available() and torch.cuda.is_bf16_supported(),) * 2,
}


def check_bf16(device: str = "cpu") -> bool:
    """One-line :class:`UsageError` when bf16 autocast is unavailable on ``device``; else whether the
    hardware runs bf16 natively (on a CPU without AVX512-BF16/AMX it is emulated and several
    times slower than fp32 — measured 8x on an AVX2 EPYC — so a warning is printed).

    Example:
        >>> isinstance(check_bf16("cpu"), bool)
        True
    """
    runs, native = BF16_SUPPORT.get(device, lambda: (False, False))()
    if not runs:
        raise UsageError(f"--bf16: this {device} has no bfloat16 support; run without --bf16")
    return native


@contextlib.contextmanager
def autocast(enabled: bool, device: str = "cpu") -> Iterator[None]:
    """``torch.autocast(device, bfloat16)`` when ``enabled``, else nothing; ``device`` is the device
    type of the tensors (``"cpu"`` or ``"cuda"``: CPU autocast leaves CUDA ops alone)."""
    if not enabled:
        yield
        return
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        yield
