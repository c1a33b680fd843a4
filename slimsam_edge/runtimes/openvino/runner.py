"""OpenVINO backend: runs an IR (``.xml`` + ``.bin``) or an ``.onnx`` file on CPU / GPU / NPU.

``openvino`` is imported only in ``_activate``. Precision is a request, never a wish: asking for
bf16 or fp16 on a CPU that lacks it raises
:class:`~slimsam_edge.errors.UnsupportedOnThisMachineError` (a UsageError) instead of
quietly running in another precision.

Illustration (not run as a doctest: it needs files or a model)::

    from slimsam_edge.runtimes import RunnerOptions, open_runner
    opts = RunnerOptions(device="cpu", precision="bf16", threads=2)
    with open_runner("encoder.xml", options=opts) as r:
        emb = r.infer({"image": x})["image_embeddings"]
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BackendUnavailableError, BundleError, RunnerError, UnsupportedOnThisMachineError, UsageError
from ...fsutil import HashedFiles
from ..base import FeedDict, Runner, TensorSpec

#: RunnerOptions.precision -> (INFERENCE_PRECISION_HINT value, capabilities the device must list).
#: int8 lives in the IR (FakeQuantize from NNCF); the hint sets what its other ops compute in, always
#: explicitly: left unset, a CPU with AMX would run them in bf16 and another CPU in f32, so "int8"
#: would mean different things on different machines.
PRECISION_HINTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fp32": ("f32", ()),
    "bf16": ("bf16", ("BF16",)),
    "fp16": ("f16", ("FP16",)),
    "int8": ("f32", ("INT8",)),
    "int8-bf16": ("bf16", ("INT8", "BF16")),
}

#: what to use instead of a precision the device lacks (default fp32)
_INSTEAD = {"int8-bf16": "int8"}

_MULTI_PREFIXES = ("AUTO", "MULTI", "HETERO", "BATCH")

#: most axis-0 sizes an :class:`OpenVinoRunner` keeps a static compile of
STATIC_AXIS0_KEPT = 4


def one_line(message: str, limit: int = 200) -> str:
    """Condense a multi-line OpenVINO exception message into one short line.

    Example:
        >>> one_line("Exception from core.cpp:84:\\nUnable to read the model\\n")
        'Unable to read the model'
    """
    lines = [ln.strip() for ln in str(message).splitlines()]
    keep = [ln for ln in lines if ln and not ln.startswith(("Exception from", "Check '"))]
    text = " ".join(keep or [ln for ln in lines if ln]) or "unknown error"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _devices_in(device: str) -> list[str]:
    """Concrete device names named by a device string ("AUTO:GPU,CPU" -> ["GPU", "CPU"])."""
    head, _, rest = device.partition(":")
    if head in _MULTI_PREFIXES:
        return [d for d in rest.split(",") if d]
    return [device]


def _dynamic_axis0(pshape: Any) -> bool:
    return pshape.rank.is_static and len(pshape) > 0 and pshape[0].is_dynamic


class OpenVinoRunner(Runner):
    """Run an OpenVINO IR or ONNX file with the OpenVINO runtime.

    Options used: ``device`` (upper-cased: "CPU", "GPU", "GPU.1", "NPU", "AUTO"), ``precision``
    ("fp32", "bf16", "fp16", "int8", "int8-bf16": an int8 IR with its other ops in bf16),
    ``threads`` (INFERENCE_NUM_THREADS),
    ``extra["performance_hint"]`` ("LATENCY" by default), ``extra["config"]`` (raw properties
    passed to ``compile_model`` last) and ``extra["static_axis0"]`` (default on): a graph whose
    inputs have a dynamic axis 0 (the low-res decoder's prompt axis) is also compiled with that
    axis fixed, for 1 at activation and for any other size the second time a feed has it (at most
    :data:`STATIC_AXIS0_KEPT` sizes kept, least recently used dropped), and feeds of those sizes run
    there. OpenVINO's CPU plugin runs the 1024-px decoder 20-35% faster per prompt with that axis
    static (docs/results/decoder.md); other dynamic axes (the point count) stay dynamic.

    Illustration (not run as a doctest: it needs files or a model)::

        r = OpenVinoRunner("model.xml", RunnerOptions(threads=1))
        r.infer({"x": np.ones((2, 3), np.float32)})["y"]
    """

    def __init__(self, artifact: Any, options: Any = None):
        super().__init__(artifact, options)
        self._compiled: Any = None
        self._request: Any = None
        self._model: Any = None  # the dynamic model, reshaped for the static axis-0 compiles
        self._static: OrderedDict[int, Any] = OrderedDict()  # axis-0 size -> its request (LRU)
        self._axis0: list[str] = []  # inputs with a dynamic axis 0
        self._seen: dict[int, int] = {}
        self._core: Any = None
        self._device, self._compile_config = "", {}
        self._out_names: list[str] = []
        self._weights: Any = None  # a bundle IR's verified .bin, which the model's constants may share

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("openvino") is not None

    # -- configuration -------------------------------------------------------------------------
    def _check_device(self, core: Any, device: str) -> None:
        available = list(core.available_devices)
        for name in _devices_in(device):
            if name in _MULTI_PREFIXES:
                continue
            if name not in available and not any(a.split(".")[0] == name for a in available):
                raise BackendUnavailableError(
                    f"openvino: device {name!r} is not available here (available: "
                    f"{', '.join(available)}); pick one of those or AUTO"
                )

    def _config(self, core: Any, device: str) -> dict[str, Any]:
        opts = self.options
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": str(opts.extra.get("performance_hint", "LATENCY")).upper()
        }
        if opts.threads is not None:
            if opts.threads < 1:
                raise UsageError(f"threads must be >= 1, got {opts.threads}")
            config["INFERENCE_NUM_THREADS"] = int(opts.threads)
        precision = opts.precision.lower()
        if precision not in PRECISION_HINTS:
            raise UsageError(
                f"openvino: unknown precision {opts.precision!r}; choose one of "
                f"{', '.join(PRECISION_HINTS)}"
            )
        hint, needed = PRECISION_HINTS[precision]
        concrete = [d for d in _devices_in(device) if d not in _MULTI_PREFIXES]
        for name in concrete if needed else ():
            caps = [str(c).upper() for c in core.get_property(name, "OPTIMIZATION_CAPABILITIES")]
            lacking = [c for c in needed if c not in caps]
            if lacking:  # the machine lacks it: the gate may skip, nothing else
                raise UnsupportedOnThisMachineError(
                    f"openvino: {name} does not support {precision} (its capabilities: "
                    f"{', '.join(caps)}); use precision {_INSTEAD.get(precision, 'fp32')} or run on a device "
                    f"with {', '.join(lacking)}"
                )
        config["INFERENCE_PRECISION_HINT"] = hint
        config.update(opts.extra.get("config", {}))
        return config

    # -- lifecycle -----------------------------------------------------------------------------
    def _activate(self) -> None:
        self.notes.clear()
        try:
            import openvino as ov
        except ImportError as err:
            raise BackendUnavailableError(
                f"openvino cannot be imported ({err}); pip install 'slimsam-edge[openvino]'"
            ) from None
        core = ov.Core()
        device = self.options.device.upper()
        self._check_device(core, device)
        config = self._config(core, device)
        model = self._read(core)
        try:
            self._compiled = core.compile_model(model, device, config)
        except RuntimeError as err:
            raise BackendUnavailableError(
                f"openvino could not compile {self.artifact} for {device}: {one_line(str(err))}"
            ) from None
        self._request = self._compiled.create_infer_request()
        self._out_names = [self._name(o, f"output_{i}") for i, o in enumerate(self._compiled.outputs)]
        note = f"device: {device}"
        try:
            hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
            note += f", INFERENCE_PRECISION_HINT={getattr(hint, 'to_string', hint.__str__)()}"
        except RuntimeError:
            pass  # AUTO / MULTI compiled models do not expose the hint
        if "CPU" in _devices_in(device) and self.options.precision.lower() in ("bf16", "int8", "int8-bf16"):
            from ...devices import detected

            # OpenVINO picks AMX kernels for int8 / bf16 matmuls itself where the CPU has AMX tiles
            note += f", CPU AMX: {'yes' if detected().get('amx') else 'no'}"
        self.notes.append(note)
        self._static.clear()
        self._seen.clear()
        self._axis0 = []
        if self.options.extra.get("static_axis0", True):
            self._axis0 = [self._name(port, f"input_{i}") for i, port in enumerate(self._compiled.inputs)
                           if _dynamic_axis0(port.get_partial_shape())]
        if self._axis0:
            self._model, self._core, self._device, self._compile_config = model, core, device, config
            if self._static_request(1) is not None:
                self.notes.append("axis 0 also compiled static (" + ", ".join(self._axis0) + "): 1, and "
                                  "other sizes when fed twice")

    def profile(self, feed: FeedDict, runs: int = 3) -> dict[str, Any]:
        """OpenVINO's per-layer counters (``PERF_COUNT``) on a twin compile of the same verified
        model (axis 0 kept dynamic), summed over ``runs`` inferences and grouped by op kind."""
        import dataclasses

        from ..profiling import group_openvino_counters

        config = {**self.options.extra.get("config", {}), "PERF_COUNT": True}
        extra = {**self.options.extra, "config": config, "static_axis0": False}
        twin = type(self)(self.artifact, dataclasses.replace(self.options, extra=extra)).activate()
        try:
            infos: list[Any] = []
            for _ in range(max(1, runs)):
                twin.infer(feed)
                infos += list(twin._request.get_profiling_info())
        finally:
            twin.deactivate()
        return group_openvino_counters(infos, runs=max(1, runs))

    def _static_request(self, size: int) -> Any:
        """The request of the compile with axis 0 = ``size`` (made now), ``None`` if it fails."""
        if size in self._static:
            self._static.move_to_end(size)
            return self._static[size]
        import openvino as ov

        fixed = self._model.clone()
        shapes = {}
        for i, port in enumerate(fixed.inputs):
            pshape = port.get_partial_shape()
            if _dynamic_axis0(pshape):
                shapes[port] = ov.PartialShape([ov.Dimension(size)] + [pshape[k] for k in range(1, len(pshape))])
        try:
            fixed.reshape(shapes)
            request = self._core.compile_model(fixed, self._device, self._compile_config).create_infer_request()
        except RuntimeError as err:  # a graph that does not reshape: the dynamic one serves all
            self.notes.append(f"axis 0 = {size} not compiled static ({one_line(str(err), 100)})")
            self._axis0 = []
            return None
        self._static[size] = request
        while len(self._static) > STATIC_AXIS0_KEPT:
            self._static.popitem(last=False)
        return request

    def _read(self, core: Any) -> Any:
        if isinstance(self.artifact, HashedFiles):
            return self._read_verified(core, self.artifact)
        if not isinstance(self.artifact, (str, Path)):
            return self.artifact  # an ov.Model built in memory
        path = Path(self.artifact)
        if not path.is_file():
            raise BundleError(f"{path}: model file not found; check the path or re-export it")
        if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
            raise BundleError(
                f"{path}: weights file {path.with_suffix('.bin').name} is missing; keep it next to "
                "the .xml or re-export it"
            )
        try:
            return core.read_model(str(path))
        except RuntimeError as err:
            raise BundleError(
                f"{path}: openvino cannot read it ({one_line(str(err))}); the file is corrupt or of "
                "an unsupported format, re-export it"
            ) from None

    def _read_verified(self, core: Any, source: HashedFiles) -> Any:
        """A bundle's IR from verified bytes: the ``.xml`` and its ``.bin`` (which the artifact
        must list) are each read once and checked against the manifest, then handed to
        ``read_model(model=xml, weights=Tensor(bin))``; OpenVINO opens no file itself. The weights
        stay in memory while the model lives (its constants may point into them): ~24 MB for
        sam-mini's encoder, ~350 MB for SAM-B's."""
        import openvino as ov

        if Path(source.path).suffix.lower() != ".xml":
            raise BundleError(f"{source}: an openvino artifact of a bundle is an IR (.xml + .bin); re-export the bundle")
        xml = source.read()
        weights = source.read(source.sibling(Path(source.path).with_suffix(".bin").name))
        self._weights = np.frombuffer(weights, dtype=np.uint8)
        try:
            return core.read_model(model=xml, weights=ov.Tensor(self._weights))
        except RuntimeError as err:
            raise BundleError(
                f"{source}: openvino cannot read it ({one_line(str(err))}); the file is corrupt or of "
                "an unsupported format, re-export it"
            ) from None

    def _deactivate(self) -> None:
        self._request = self._compiled = self._model = None
        self._weights = None
        self._static.clear()

    # -- graph ---------------------------------------------------------------------------------
    @staticmethod
    def _name(port: Any, fallback: str) -> str:
        # A tensor may carry several names after conversion (e.g. "image_embeddings" and
        # "/Reshape_3_output_0"); the graph's own I/O name is the one without a node path.
        try:
            names = sorted(port.get_names())
        except RuntimeError:
            names = []
        plain = [n for n in names if not n.startswith("/")]
        if plain or names:
            return (plain or names)[0]
        return fallback

    @staticmethod
    def _spec(port: Any, name: str) -> TensorSpec:
        try:
            dtype = np.dtype(port.get_element_type().to_dtype())
        except (RuntimeError, TypeError) as err:
            raise RunnerError(f"openvino: tensor {name!r} has an unsupported type ({err})") from None
        pshape = port.get_partial_shape()
        if pshape.rank.is_dynamic:
            raise RunnerError(
                f"openvino: tensor {name!r} has a dynamic rank; re-export with a fixed rank"
            )
        dims: list[int | str] = [d.get_length() if d.is_static else str(d) for d in pshape]
        return TensorSpec(name, dtype, tuple(dims))

    def _specs(self) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
        inputs = {}
        for i, port in enumerate(self._compiled.inputs):
            name = self._name(port, f"input_{i}")
            inputs[name] = self._spec(port, name)
        outputs = {n: self._spec(p, n) for n, p in zip(self._out_names, self._compiled.outputs)}
        return inputs, outputs

    def _infer(self, feed: FeedDict) -> FeedDict:
        request = self._request
        sizes = {feed[n].shape[0] for n in self._axis0}
        if len(sizes) == 1:
            size = sizes.pop()
            self._seen[size] = self._seen.get(size, 0) + 1
            if size in self._static or self._seen[size] >= 2:
                request = self._static_request(size) or request
        request.infer({k: np.ascontiguousarray(v) for k, v in feed.items()})
        return {
            name: request.get_output_tensor(i).data.copy()
            for i, name in enumerate(self._out_names)
        }
