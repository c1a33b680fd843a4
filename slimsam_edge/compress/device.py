"""Where the compression job runs (``--device auto|cpu|cuda``) and how tensors get there.

The job's heavy work (importance gradients, distillation forwards/backwards, the teacher's
embeddings, the report's embedding MSE) runs on the chosen device; everything that builds CPU
tensors by design stays on the CPU and its results are moved: importance noise comes from seeded
CPU generators (identical on every device) and the best validated weights are kept on the CPU.
Input batches (:func:`~slimsam_edge.models.batch.preprocess`), the evaluator (mIoU for validation and the report)
and the labelled Taylor loss run on the model's device. Under torchrun rank ``r`` uses
``cuda:{LOCAL_RANK}``.

Example:
    >>> resolve_device("cpu"), rank_device("cpu")
    ('cpu', device(type='cpu'))
    >>> import torch
    >>> m = torch.nn.Linear(2, 2)
    >>> model_device(m), on_device(m, "cpu") is m
    (device(type='cpu'), True)
"""

from __future__ import annotations

import contextlib
import copy
import os
from typing import Any, Iterator

import torch

from ..errors import UsageError

#: the ``--device`` choices; ``auto`` is ``cuda`` when a CUDA GPU is visible, else ``cpu``
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> str:
    """The device type (``"cpu"`` or ``"cuda"``) for the choice ``name``.

    Raises a one-line :class:`UsageError` for an unknown choice or for ``cuda`` where no CUDA GPU
    is visible.

    Example:
        >>> resolve_device("cpu")
        'cpu'
        >>> resolve_device("tpu")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: unknown device 'tpu'; choose one of: auto, cpu, cuda
    """
    if name not in DEVICE_CHOICES:
        raise UsageError(f"unknown device {name!r}; choose one of: {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible to torch "
                         f"(torch {torch.__version__}, CUDA_VISIBLE_DEVICES="
                         f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use --device cpu")
    return name


def local_rank() -> int:
    """This process's GPU index under torchrun (``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_device(kind: str) -> torch.device:
    """The device of this process for device type ``kind``: ``cuda:{LOCAL_RANK}`` or ``cpu``.

    Example:
        >>> rank_device("cpu")
        device(type='cpu')
    """
    return torch.device("cuda", local_rank()) if kind == "cuda" else torch.device("cpu")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer; CPU for an empty module).

    Example:
        >>> model_device(torch.nn.Linear(1, 1))
        device(type='cpu')
    """
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def on_device(model: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """``model`` itself when it is already on ``device``, else a copy there (the caller's model
    is not moved).

    Example:
        >>> m = torch.nn.Linear(1, 1); on_device(m, "cpu") is m
        True
    """
    device = torch.device(device)
    if model_device(model) == device:
        return model
    return copy.deepcopy(model).to(device)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmuls and cuDNN convolutions while inside (CUDA only; restored on exit).

    Example:
        >>> with tf32(False):
        ...     pass
    """
    if not enabled:
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def describe(device: torch.device) -> dict[str, Any]:
    """``{"device", "gpu", "tf32"}`` for the report: ``gpu`` is the CUDA device's name.

    Example:
        >>> describe(torch.device("cpu"))
        {'device': 'cpu', 'gpu': None, 'tf32': False}
    """
    if device.type != "cuda":
        return {"device": str(device), "gpu": None, "tf32": False}
    return {"device": str(device), "gpu": torch.cuda.get_device_name(device), "tf32": True}
