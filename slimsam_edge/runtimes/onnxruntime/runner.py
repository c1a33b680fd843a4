"""ONNX Runtime backend: runs an ``.onnx`` graph on CPU, CUDA or the TensorRT execution provider.

``onnxruntime`` is a core dependency but it is still imported lazily (in ``_activate``), so that
importing this module (which the runner registry does) stays cheap.

Illustration (not run as a doctest: it needs files or a model)::

    from slimsam_edge.runtimes import RunnerOptions, open_runner
    with open_runner("decoder.onnx", options=RunnerOptions(threads=2)) as r:
        r.notes
    # -> ['providers: CPUExecutionProvider']
"""

from __future__ import annotations

import importlib.util
import posixpath
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import BackendUnavailableError, BundleError, UsageError, debug_enabled
from ...fsutil import HashedFiles
from ..base import FeedDict, Runner, TensorSpec

#: ORT type strings -> numpy dtypes (bfloat16 has no numpy dtype and is left out on purpose)
ORT_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
}

#: RunnerOptions.device -> execution providers, most preferred first
DEVICE_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}

#: the external-data file name given when a graph lists none: no graph names it, and any external
#: file a graph does name is then looked up in that in-memory table (never on disk) and refused
_NO_EXTERNAL = "<no external data listed in the manifest>"
#: ONNX Runtime's message for an external file missing from the in-memory table
_UNLISTED = re.compile(r"External file: (.+?) not found from the table")


def ort_dtype(type_str: str) -> np.dtype:
    """Map an ONNX Runtime type string to a numpy dtype.

    Example:
        >>> ort_dtype("tensor(int64)")
        dtype('int64')
    """
    try:
        return ORT_DTYPES[type_str]
    except KeyError:
        raise UsageError(
            f"onnxruntime type {type_str!r} has no numpy equivalent; "
            "export the graph with float32/float16/int64 inputs and outputs"
        ) from None


def ort_shape(shape: Any) -> tuple[int | str, ...]:
    """Turn an ORT ``NodeArg.shape`` into a spec shape: ints stay, dynamic dims become strings.

    Example:
        >>> ort_shape(["batch", 3, None])
        ('batch', 3, '?')
    """
    out: list[int | str] = []
    for dim in shape or ():
        if isinstance(dim, int) and dim >= 0:
            out.append(dim)
        elif isinstance(dim, str) and dim:
            out.append(dim)
        else:
            out.append("?")
    return tuple(out)


def _ort_errors(ort: Any) -> tuple[type[BaseException], ...]:
    """The exception classes ONNX Runtime raises when a model cannot be loaded."""
    state = getattr(getattr(ort, "capi", None), "onnxruntime_pybind11_state", None)
    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
             "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail")
    found = [getattr(state, n) for n in names if isinstance(getattr(state, n, None), type)]
    return tuple(found) + (RuntimeError, ValueError, OSError)


class OnnxRuntimeRunner(Runner):
    """Run an ONNX graph with ONNX Runtime.

    Options used: ``threads`` (intra-op threads), ``device`` ("cpu", "cuda", "cuda:N",
    "tensorrt"), ``precision`` (an inference hint: "fp32" everywhere; "fp16"/"int8" only on the
    TensorRT EP, which then enables its fp16/int8 modes; a graph exported in fp16 or int8 runs as
    stored with precision "fp32"), ``extra["providers"]`` (an explicit provider list that
    overrides ``device``) and ``extra["provider_options"]`` (one dict per provider).

    Illustration (not run as a doctest: it needs files or a model)::

        r = OnnxRuntimeRunner("model.onnx", RunnerOptions(threads=1))
        r.infer({"x": np.ones((2, 3), np.float32)})["y"]
    """

    #: ``onnxruntime.GraphOptimizationLevel`` member the session uses (a subclass may lower it)
    optimization_level: ClassVar[str] = "ORT_ENABLE_ALL"
    #: ``InferenceSession.run`` is thread-safe: calls from several threads run at once
    concurrent_infer: ClassVar[bool] = True

    def __init__(self, artifact: Any, options: Any = None):
        super().__init__(artifact, options)
        self._session: Any = None
        self._external: list[np.ndarray] = []  # external data handed to the session being created

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    # -- lifecycle -----------------------------------------------------------------------------
    def _providers(self, ort: Any) -> tuple[list[str], list[dict[str, Any]]]:
        opts = self.options
        requested = opts.extra.get("providers")
        index = ""
        if requested is not None:
            providers = [str(p) for p in requested]
        else:
            device, _, index = opts.device.lower().partition(":")
            if device not in DEVICE_PROVIDERS:
                raise UsageError(
                    f"onnxruntime: unknown device {opts.device!r}; choose one of: "
                    f"{', '.join(DEVICE_PROVIDERS)}"
                )
            providers = list(DEVICE_PROVIDERS[device])
        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:
            raise BackendUnavailableError(
                f"onnxruntime has no {', '.join(missing)} here (available: {', '.join(available)}); "
                "install the matching onnxruntime build (e.g. onnxruntime-gpu) or pick another device"
            )
        provider_options = [dict(o) for o in opts.extra.get("provider_options", [{}] * len(providers))]
        if len(provider_options) != len(providers):
            raise UsageError("onnxruntime: extra['provider_options'] needs one dict per provider")
        if requested is None and index:
            if not index.isdigit() or providers[0] == "CPUExecutionProvider":
                raise UsageError(f"onnxruntime: bad device {opts.device!r}; use e.g. 'cuda:0'")
            provider_options[0].setdefault("device_id", int(index))
        self._apply_precision(providers, provider_options)
        return providers, provider_options

    def _apply_precision(self, providers: list[str], provider_options: list[dict[str, Any]]) -> None:
        """``precision`` is an inference hint: only the TensorRT EP can lower the graph's precision."""
        precision = self.options.precision
        if precision == "fp32":
            return
        if providers[0] == "TensorrtExecutionProvider" and precision in ("fp16", "int8"):
            provider_options[0].setdefault(f"trt_{precision}_enable", True)
            self.notes.append(f"TensorRT EP {precision} mode enabled")
            return
        raise UsageError(
            f"onnxruntime on {providers[0]} runs the graph in its stored precision and cannot apply "
            f"a {precision} hint; load the {precision} artifact with precision fp32, or use the "
            "openvino/tensorrt backend for a precision hint"
        )

    def _activate(self) -> None:
        self.notes.clear()
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailableError(
                f"onnxruntime cannot be imported ({err}); pip install onnxruntime"
            ) from None
        so = ort.SessionOptions()
        source = self._model_source(so)
        providers, provider_options = self._providers(ort)
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, self.optimization_level)
        if self.options.threads is not None:
            if self.options.threads < 1:
                raise UsageError(f"threads must be >= 1, got {self.options.threads}")
            so.intra_op_num_threads = int(self.options.threads)
        # 4 (fatal only): an error's [E:onnxruntime] log line would precede our one-line message
        so.log_severity_level = int(self.options.extra.get("log_severity_level", 3 if debug_enabled() else 4))
        if self.options.extra.get("profile_prefix"):  # profile(): a trace file per session
            so.enable_profiling = True
            so.profile_file_prefix = str(self.options.extra["profile_prefix"])
        try:
            self._session = ort.InferenceSession(
                source, sess_options=so, providers=providers, provider_options=provider_options
            )
        except _ort_errors(ort) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            name = str(self.artifact) if isinstance(self.artifact, HashedFiles) else (
                "<bytes>" if isinstance(source, (bytes, bytearray)) else source)
            unlisted = _UNLISTED.search(first)
            if unlisted and isinstance(self.artifact, HashedFiles):
                # the graph names an external data file the manifest does not list: refused
                try:
                    self.artifact.read(self.artifact.sibling(unlisted.group(1)))
                except BundleError as refusal:
                    raise refusal from None
            if type(err).__name__ == "EPFail":
                raise BackendUnavailableError(
                    f"onnxruntime could not start {providers[0]} for {name} ({first[:200]}); check the "
                    "CUDA/TensorRT libraries or pick another device"
                ) from None
            raise BundleError(
                f"{name}: onnxruntime cannot load it ({first[:200]}); the file is corrupt or not "
                "ONNX, re-export it"
            ) from None
        finally:
            self._external = []  # copied into the session: the buffers can go
        active = list(self._session.get_providers())
        if active[0] != providers[0]:
            raise BackendUnavailableError(
                f"onnxruntime could not start {providers[0]} (running {', '.join(active)}); "
                "check the CUDA/TensorRT libraries or pick another device"
            )
        self.notes.append("providers: " + ", ".join(active))

    def profile(self, feed: FeedDict, runs: int = 3) -> dict[str, Any]:
        """ONNX Runtime's profiler on a twin session (same verified graph), grouped by op kind."""
        import dataclasses
        import json
        import os
        import tempfile

        from ..profiling import group_onnxruntime_trace

        with tempfile.TemporaryDirectory(prefix="slimsam-profile-") as folder:
            extra = {**self.options.extra, "profile_prefix": os.path.join(folder, "ort")}
            twin = type(self)(self.artifact, dataclasses.replace(self.options, extra=extra)).activate()
            try:
                for _ in range(max(1, runs)):
                    twin.infer(feed)
                trace = twin._session.end_profiling()
                with open(trace, encoding="utf-8") as f:
                    events = json.load(f)
            finally:
                twin.deactivate()
        return group_onnxruntime_trace(events)

    def _model_source(self, so: Any) -> Any:
        """What ``InferenceSession`` is given: for a bundle artifact (:class:`HashedFiles`) the
        graph's verified bytes, with every external data file it lists handed over as verified
        bytes too (``add_external_initializers_from_files_in_memory``). The table is always set
        (a name no graph uses when nothing is listed), so ONNX Runtime never opens a file itself:
        a graph naming an external file the manifest does not list fails to load and is refused
        in :meth:`_activate`. Memory: the graph and its data are held only while the session is
        created (ONNX Runtime copies them): about 24 MB for sam-mini's encoder, ~350 MB for SAM-B's.
        A plain path (no manifest: a file the caller chose) is opened by ONNX Runtime as is.
        """
        source: Any = self.artifact
        if isinstance(source, HashedFiles):
            graph = source.read()
            folder = posixpath.dirname(source.path)
            names, buffers = [], []
            for rel in source.companions():
                names.append(posixpath.relpath(rel, folder) if folder else rel)
                buffers.append(np.frombuffer(source.read(rel), dtype=np.uint8))
            if not names:
                names, buffers = [_NO_EXTERNAL], [np.zeros(1, np.uint8)]
            if not hasattr(so, "add_external_initializers_from_files_in_memory"):
                if source.companions():
                    raise BackendUnavailableError(
                        f"{source}: this onnxruntime cannot take external data from memory; "
                        "pip install -U onnxruntime")
            else:
                so.add_external_initializers_from_files_in_memory(names, buffers, [b.size for b in buffers])
            self._external = buffers
            return graph
        if not isinstance(source, (bytes, bytearray)):
            path = Path(str(source))
            if not path.is_file():
                raise BundleError(f"{path}: ONNX file not found; check the path or re-export it")
            source = str(path)
        return source

    def _deactivate(self) -> None:
        self._session = None
        self._external = []

    # -- graph ---------------------------------------------------------------------------------
    def _specs(self) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
        def spec(arg: Any) -> TensorSpec:
            return TensorSpec(arg.name, ort_dtype(arg.type), ort_shape(arg.shape))

        inputs = {a.name: spec(a) for a in self._session.get_inputs()}
        outputs = {a.name: spec(a) for a in self._session.get_outputs()}
        return inputs, outputs

    def _infer(self, feed: FeedDict) -> FeedDict:
        names = [o.name for o in self._session.get_outputs()]
        values = self._session.run(names, {k: np.ascontiguousarray(v) for k, v in feed.items()})
        return dict(zip(names, values))
