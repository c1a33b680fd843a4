"""TensorRT backend: runs a serialized engine (``.engine`` / ``.plan``) with the TRT 10/11 tensor API.

Engines are not portable: they are tied to the TensorRT version, the GPU and the OS they were
built on. A deserialization failure therefore says how to rebuild the engine on this device.
``tensorrt`` and ``cuda-python`` are imported only when a runner is activated; device memory is
handled with ``cuda.bindings.runtime`` (cuda-python >= 12.6) or ``cuda.cudart`` (older).

Illustration (not run as a doctest: it needs files or a model)::

    from slimsam_edge.runtimes import RunnerOptions, open_runner
    with open_runner("decoder.engine", options=RunnerOptions(device="cuda:0")) as r:
        out = r.infer(feed)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BundleError, RunnerError, UsageError
from ...fsutil import HashedFiles
from ..base import FeedDict, Runner, TensorSpec

from .cuda import DeviceBuffer, cuda_check, cuda_runtime_available, has_module, import_cudart, import_tensorrt

REBUILD_HINT = "rebuild it here with `slimsam-edge build BUNDLE`"


def _parse_device(device: str) -> tuple[str, int]:
    """("cuda", 0) for "cpu"/"cuda"/"gpu", ("cuda", n) for "cuda:n", ("dla", n) for "dla:n"."""
    kind, _, index = device.lower().partition(":")
    if kind in ("cpu", "cuda", "gpu", "") and (index == "" or index.isdigit()):
        return "cuda", int(index or 0)
    if kind == "dla" and index.isdigit():
        return "dla", int(index)
    raise UsageError(f"tensorrt: bad device {device!r}; use 'cuda', 'cuda:N' or 'dla:N'")


class TensorRTRunner(Runner):
    """Run a serialized TensorRT engine on an NVIDIA GPU (or a Jetson DLA core).

    Options used: ``device`` ("cuda", "cuda:N", "dla:N"; the default "cpu" means GPU 0, since a
    TensorRT engine always runs on the GPU it was built for) and ``extra["tensorrt_version"]`` (the
    version recorded at build time; a different major.minor here is refused before loading).
    Precision is fixed inside the engine at build time.

    Illustration (not run as a doctest: it needs files or a model)::

        r = TensorRTRunner("decoder.engine")
        r.infer({"x": np.ones((1, 3), np.float32)})
    """

    def __init__(self, artifact: Any, options: Any = None):
        super().__init__(artifact, options)
        self._trt: Any = None
        self._cudart: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._buffers: dict[str, DeviceBuffer] = {}
        self._input_names: list[str] = []
        self._output_names: list[str] = []

    @classmethod
    def available(cls) -> bool:
        return has_module("tensorrt") and cuda_runtime_available()

    # -- lifecycle -----------------------------------------------------------------------------
    def _check_version(self, trt: Any, path: Path) -> None:
        built = self.options.extra.get("tensorrt_version")
        if built and str(built).split(".")[:2] != str(trt.__version__).split(".")[:2]:
            raise BundleError(
                f"{path}: engine built by TensorRT {built}, this device has {trt.__version__}; "
                + REBUILD_HINT
            )

    def _check_fingerprint(self, trt: Any, cudart: Any, path: Path, index: int) -> None:
        """An engine recorded by ``slimsam-edge build`` runs only where its fingerprint matches."""
        built = self.options.extra.get("fingerprint")
        if not built:
            return
        from .fingerprint import machine_fingerprint, mismatch

        diff = mismatch(built, machine_fingerprint(trt, cudart, index))
        if diff:
            bundle = path.parent.parent if path.parent.name == "engines" else "BUNDLE"
            raise BundleError(f"{path.name}: {diff}; run `slimsam-edge build {bundle}` here")

    def _activate(self) -> None:
        self.notes.clear()
        trt = self._trt = import_tensorrt()
        cudart = self._cudart = import_cudart()
        path = Path(str(self.artifact))
        if not isinstance(self.artifact, HashedFiles) and not path.is_file():
            raise BundleError(f"{path}: engine file not found; {REBUILD_HINT}")
        self._check_version(trt, path)
        kind, index = _parse_device(self.options.device)
        self._check_fingerprint(trt, cudart, path, index if kind == "cuda" else 0)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if kind == "cuda":
            cuda_check(cudart, cudart.cudaSetDevice(index), "cudaSetDevice")
        else:
            runtime.DLA_core = index
        # a bundle's engine: bytes read once and checked against the manifest, then deserialized
        # (TensorRT opens no file; the bytes go once the engine exists)
        blob = self.artifact.read() if isinstance(self.artifact, HashedFiles) else path.read_bytes()
        engine = runtime.deserialize_cuda_engine(blob)
        del blob
        if engine is None:
            raise BundleError(
                f"{path}: cannot load the engine (engine built by another TensorRT version or GPU, "
                f"this device has TensorRT {trt.__version__}); {REBUILD_HINT}"
            )
        self._runtime, self._engine = runtime, engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise RunnerError(f"{path}: TensorRT could not create an execution context (out of GPU memory?)")
        self._stream = cuda_check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._input_names = [n for n in names if is_input[n]]
        self._output_names = [n for n in names if not is_input[n]]
        self._buffers = {n: DeviceBuffer(cudart) for n in names}
        self.notes.append(f"TensorRT {trt.__version__} on {kind}:{index}")
        if self.options.precision != "fp32":
            self.notes.append(f"precision {self.options.precision} was fixed when the engine was built")

    def _deactivate(self) -> None:
        for buf in self._buffers.values():
            buf.free()
        self._buffers = {}
        if self._stream is not None:
            cuda_check(self._cudart, self._cudart.cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None

    # -- graph ---------------------------------------------------------------------------------
    def _dtype(self, name: str) -> np.dtype:
        try:
            return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))
        except (TypeError, KeyError):
            raise RunnerError(
                f"tensorrt: tensor {name!r} has type {self._engine.get_tensor_dtype(name)} with no "
                "numpy equivalent; rebuild the engine with float32/float16/int32/int64 I/O"
            ) from None

    def _specs(self) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
        def spec(name: str) -> TensorSpec:
            dims = tuple(d if d >= 0 else "?" for d in self._engine.get_tensor_shape(name))
            return TensorSpec(name, self._dtype(name), dims)

        return ({n: spec(n) for n in self._input_names}, {n: spec(n) for n in self._output_names})

    def max_prompts(self) -> int | None:
        """The engine profile's max of the decoder's prompt axis (``[tensorrt] decoder_batch``)."""
        self.activate()
        if "point_coords" not in self._input_names or not hasattr(self._engine, "get_tensor_profile_shape"):
            return None
        return int(self._engine.get_tensor_profile_shape("point_coords", 0)[2][0])

    def _infer(self, feed: FeedDict) -> FeedDict:
        cudart, ctx, stream = self._cudart, self._context, self._stream
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        hosts = {}
        for name in self._input_names:
            arr = np.ascontiguousarray(feed[name])
            hosts[name] = arr  # keep alive until the stream is synchronized
            if not ctx.set_input_shape(name, tuple(arr.shape)):
                raise RunnerError(
                    f"tensorrt runner for {self.artifact}: shape {arr.shape} of {name!r} is outside the "
                    "engine's optimization profile; rebuild with a wider --min/opt/max shape"
                )
            ptr = self._buffers[name].ensure(arr.nbytes)
            cuda_check(cudart, cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, stream),
                       "cudaMemcpyAsync (host to device)")
            ctx.set_tensor_address(name, ptr)
        outputs: FeedDict = {}
        for name in self._output_names:
            shape = tuple(ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RunnerError(
                    f"tensorrt: output {name!r} has a data-dependent shape {shape}; this runner needs "
                    "outputs whose shape follows from the inputs"
                )
            out = np.empty(shape, dtype=self._dtype(name))
            outputs[name] = out
            ctx.set_tensor_address(name, self._buffers[name].ensure(out.nbytes))
        if not ctx.execute_async_v3(int(stream)):
            raise RunnerError(f"tensorrt: execute_async_v3 failed for {self.artifact}; see the TensorRT log")
        for name, out in outputs.items():
            cuda_check(cudart, cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name].ptr,
                                                      out.nbytes, d2h, stream),
                       "cudaMemcpyAsync (device to host)")
        cuda_check(cudart, cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return outputs
