"""CUDA and TensorRT import helpers shared by the TensorRT runner and engine builder (torch-free).

``tensorrt`` and cuda-python are imported only when called; device memory is handled with
``cuda.bindings.runtime`` (cuda-python >= 12.6) or ``cuda.cudart`` (older).

Example:
    >>> has_module("no_such_module_here")
    False
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from ...errors import BackendUnavailableError, RunnerError

_INSTALL_HINT = "pip install 'slimsam-edge[tensorrt]' (on Jetson: use JetPack's python3-libnvinfer)"


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cuda_runtime_available() -> bool:
    """True when cuda-python's runtime bindings can be found (nothing is imported)."""
    return has_module("cuda.bindings.runtime") or has_module("cuda.cudart")


def import_tensorrt() -> Any:
    """Import and return the ``tensorrt`` module, or raise :class:`BackendUnavailableError`.

    Illustration (not run as a doctest: it needs files or a model)::

        trt = import_tensorrt()
        trt.__version__
        # -> '10.3.0'
    """
    try:
        return importlib.import_module("tensorrt")
    except ImportError as err:
        raise BackendUnavailableError(f"TensorRT is not installed ({err}); {_INSTALL_HINT}") from None


def import_cudart() -> Any:
    """Import cuda-python's runtime module (new or old layout) or raise BackendUnavailableError.

    Illustration (not run as a doctest: it needs files or a model)::

        cudart = import_cudart()
        err, count = cudart.cudaGetDeviceCount()
    """
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BackendUnavailableError(f"cuda-python is not installed; {_INSTALL_HINT}")


def cuda_check(cudart: Any, result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` result; raise RunnerError unless it succeeded.

    Illustration (not run as a doctest: it needs files or a model)::

        _, ptr = cuda_check(cudart, cudart.cudaMalloc(1024), "cudaMalloc")
    """
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        _, text = cudart.cudaGetErrorString(err)
        text = text.decode() if isinstance(text, bytes) else str(text)
        raise RunnerError(f"CUDA {what} failed: {text}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class DeviceBuffer:
    """One device allocation that grows on demand (cudaMalloc / cudaFree).

    Illustration (not run as a doctest: it needs files or a model)::

        buf = DeviceBuffer(cudart); buf.ensure(4096); buf.free()
    """

    def __init__(self, cudart: Any):
        self._cudart = cudart
        self.ptr = 0
        self.nbytes = 0

    def ensure(self, nbytes: int) -> int:
        """Make the buffer at least ``nbytes`` large and return its device address."""
        if nbytes > self.nbytes:
            self.free()
            self.ptr = int(cuda_check(self._cudart, self._cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        """Release the allocation (safe to call twice)."""
        if self.ptr:
            cuda_check(self._cudart, self._cudart.cudaFree(self.ptr), "cudaFree")
        self.ptr = 0
        self.nbytes = 0
