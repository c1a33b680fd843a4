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
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...errors import BackendUnavailableError, BundleError, RunnerError, UnsupportedOnThisMachineError, UsageError
from ...fsutil import HashedFiles
from ..base import FeedDict, Runner, TensorSpec
from ..tuning import PERFORMANCE_HINTS, check_count, check_hint

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

#: most static compiles (axis-0 size, zero inputs folded or not) an :class:`OpenVinoRunner` keeps
STATIC_AXIS0_KEPT = 4

#: compiled-model properties a runner's notes record (what OpenVINO actually chose)
COMPILED_PROPERTIES = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS")


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


def _text(value: Any) -> str:
    return str(getattr(value, "name", value))  # an enum property (PerformanceMode.LATENCY) by its name


def compiled_properties(compiled: Any) -> str:
    """``NAME=value, ...`` of :data:`COMPILED_PROPERTIES` a compiled model exposes (AUTO / MULTI
    expose fewer; the unreadable ones are left out).

    Example:
        >>> class Compiled:
        ...     def get_property(self, name):
        ...         if name == "NUM_STREAMS": raise RuntimeError("not supported")
        ...         return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2}.get(name, 1)
        >>> compiled_properties(Compiled())
        'PERFORMANCE_HINT=LATENCY, INFERENCE_NUM_THREADS=2, OPTIMAL_NUMBER_OF_INFER_REQUESTS=1'
    """
    found = []
    for name in COMPILED_PROPERTIES:
        try:
            found.append(f"{name}={_text(compiled.get_property(name))}")
        except (RuntimeError, TypeError):
            continue
    return ", ".join(found)


#: a static compile's key: (axis-0 size, whether the ``fold_zeros`` inputs are constants in it)
StaticKey = tuple[int, bool]


class _Slot:
    """One infer request of the dynamic compile and, made on first use, one of each static
    compile (:data:`StaticKey` -> (compiled model, its request))."""

    def __init__(self, request: Any):
        self.request = request
        self.static: dict[StaticKey, tuple[Any, Any]] = {}


def check_fold_zeros(value: Any) -> tuple[str, ...]:
    """``extra["fold_zeros"]`` as a tuple of input names; a one-line UsageError otherwise.

    Example:
        >>> check_fold_zeros(["mask_input", "has_mask_input"])
        ('mask_input', 'has_mask_input')
        >>> check_fold_zeros("mask_input")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: openvino: fold_zeros must be a list of input names, got 'mask_input'
    """
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"openvino: fold_zeros must be a list of input names, got {value!r}")
    return tuple(value)


def fold_inputs(model: Any, names: tuple[str, ...]) -> Any:
    """``model`` (an ``ov.Model`` with static shapes) with the inputs ``names`` replaced by constant
    zeros of their shape and type: OpenVINO then folds what only they feed (e.g. the decoder's
    mask-input branch) at compile time."""
    import openvino as ov

    params = {OpenVinoRunner._name(p.output(0), ""): p for p in model.get_parameters()}
    for name in names:
        param = params[name]
        shape = [d.get_length() for d in param.get_partial_shape()]
        zeros = np.zeros(shape, dtype=np.dtype(param.get_element_type().to_dtype()))
        param.output(0).replace(ov.opset13.constant(zeros).output(0))
        model.remove_parameter(param)
    model.validate_nodes_and_infer_types()
    return model


class RequestPool:
    """``size`` slots handed to one caller each: :meth:`take` waits for a free one; :meth:`close`
    refuses every further taker (one-line RunnerError), those waiting too, and returns once every
    slot is back.

    Example:
        >>> pool = RequestPool(["a", "b"])
        >>> with pool.slot() as first, pool.slot() as second:
        ...     first, second, pool.free
        ('a', 'b', 0)
        >>> pool.free
        2
        >>> pool.close(); pool.take()
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.RunnerError: openvino: the runner was closed while a call waited for an infer request
    """

    def __init__(self, slots: list[Any]):
        self._slots = list(slots)
        self.size = len(self._slots)
        self._cond = threading.Condition()
        self._closed = False

    @property
    def free(self) -> int:
        with self._cond:
            return len(self._slots)

    def take(self) -> Any:
        with self._cond:
            while not self._slots and not self._closed:
                self._cond.wait()
            if self._closed:
                raise RunnerError("openvino: the runner was closed while a call waited for an infer request")
            return self._slots.pop(0)

    def give(self, slot: Any) -> None:
        with self._cond:
            self._slots.append(slot)
            self._cond.notify_all()

    @contextmanager
    def slot(self) -> Iterator[Any]:
        """A slot taken on entry and given back on exit."""
        got = self.take()
        try:
            yield got
        finally:
            self.give(got)

    def close(self) -> None:
        with self._cond:
            self._closed = True  # from now on a taker is refused, also one already waiting
            self._cond.notify_all()
            while len(self._slots) < self.size:  # the calls in flight give theirs back
                self._cond.wait()


class OpenVinoRunner(Runner):
    """Run an OpenVINO IR or ONNX file with the OpenVINO runtime.

    Options used: ``device`` (upper-cased: "CPU", "GPU", "GPU.1", "NPU", "AUTO"), ``precision``
    ("fp32", "bf16", "fp16", "int8", "int8-bf16": an int8 IR with its other ops in bf16),
    ``threads`` (INFERENCE_NUM_THREADS),
    ``extra["performance_hint"]`` (:data:`~slimsam_edge.runtimes.tuning.PERFORMANCE_HINTS`, any
    case; "latency" by default), ``extra["num_streams"]`` (NUM_STREAMS; default: what the hint
    picks), ``extra["requests"]`` (infer requests, default 1: up to that many threads run
    :meth:`infer` at once, each on its own request, further callers wait for a free one),
    ``extra["config"]`` (raw properties
    passed to ``compile_model`` last) and ``extra["static_axis0"]`` (default on): a graph whose
    inputs have a dynamic axis 0 (the low-res decoder's prompt axis) is also compiled with that
    axis fixed, for 1 at activation and for any other size the second time a feed has it (at most
    :data:`STATIC_AXIS0_KEPT` compiles kept, least recently used dropped), and feeds of those sizes run
    there. OpenVINO's CPU plugin runs the 1024-px decoder 20-35% faster per prompt with that axis
    static (docs/results/decoder.md); other dynamic axes (the point count) stay dynamic.
    ``extra["fold_zeros"]`` (input names; the predictor gives the decoder's ``mask_input`` and
    ``has_mask_input``): a feed in which all of them are zero runs on a static compile where they are
    constant zeros, so what only they feed is folded away at compile time (the decoder's mask branch,
    ~10% of a 1024-px prompt); the same outputs, since those are the values fed.
    ``extra["channel_means"]``, ``extra["channel_last"]`` and ``extra["banded"]`` (default on; CPU only;
    in memory, same values): channel means exported as products with a constant 1/C row run as
    ReduceMean (:func:`~slimsam_edge.runtimes.openvino.rewrite.channel_means`); a convolution's output
    contracted over its channels by a MatMul is computed in the layout the convolution produced
    (:func:`~slimsam_edge.runtimes.openvino.rewrite.channel_last_contractions`: the mask decoder's last
    product skips a reorder of the whole upscaled feature map), and the transposed-convolution
    upscaling before it runs in cache-sized horizontal bands
    (:func:`~slimsam_edge.runtimes.openvino.rewrite.banded_upscaling`).

    Illustration (not run as a doctest: it needs files or a model)::

        r = OpenVinoRunner("model.xml", RunnerOptions(threads=1))
        r.infer({"x": np.ones((2, 3), np.float32)})["y"]
    """

    #: the pool hands out infer requests (one caller each), so concurrent calls are safe
    concurrent_infer = True
    performance_hints = PERFORMANCE_HINTS

    def __init__(self, artifact: Any, options: Any = None):
        super().__init__(artifact, options)
        extra = self.options.extra
        self._hint = check_hint(extra.get("performance_hint", "latency"), "openvino: performance hint") or "latency"
        self._requests = check_count(extra.get("requests", 1), "openvino: requests")
        streams = extra.get("num_streams")
        self._streams = None if streams is None else check_count(streams, "openvino: num_streams")
        self._compiled: Any = None
        self._pool: RequestPool | None = None
        self._lock = threading.Lock()  # the static compiles, their LRU and the sizes seen
        self._model: Any = None  # the dynamic model, reshaped for the static axis-0 compiles
        self._static: OrderedDict[StaticKey, Any] = OrderedDict()  # static key -> its compiled model (LRU)
        self._axis0: list[str] = []  # inputs with a dynamic axis 0
        self._fold_wanted = check_fold_zeros(extra.get("fold_zeros", ()))
        self._rewrites = {key: extra.get(key, True) for key in ("channel_means", "banded", "channel_last")}
        for key, value in self._rewrites.items():
            if not isinstance(value, bool):
                raise UsageError(f"openvino: {key} must be true or false, got {value!r}")
        self._fold: tuple[str, ...] = ()  # those of them this graph has (all or none)
        self._seen: dict[StaticKey, int] = {}
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
        config: dict[str, Any] = {"PERFORMANCE_HINT": self._hint.upper()}
        if self._streams is not None:
            config["NUM_STREAMS"] = self._streams
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
        rewritten = self._rewrite(model, device)
        try:
            self._compiled = core.compile_model(model, device, config)
        except RuntimeError as err:
            raise BackendUnavailableError(
                f"openvino could not compile {self.artifact} for {device}: {one_line(str(err))}"
            ) from None
        self._pool = RequestPool([_Slot(self._compiled.create_infer_request()) for _ in range(self._requests)])
        self._out_names = [self._name(o, f"output_{i}") for i, o in enumerate(self._compiled.outputs)]
        note = f"device: {device}"
        try:
            hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
            note += f", INFERENCE_PRECISION_HINT={getattr(hint, 'to_string', hint.__str__)()}"
        except RuntimeError:
            pass  # AUTO / MULTI compiled models do not expose the hint
        chosen = compiled_properties(self._compiled)
        note += f", {chosen}" if chosen else ""
        note += f", infer requests: {self._requests}"
        note += f", {rewritten}" if rewritten else ""
        if "CPU" in _devices_in(device) and self.options.precision.lower() in ("bf16", "int8", "int8-bf16"):
            from ...devices import detected

            # OpenVINO picks AMX kernels for int8 / bf16 matmuls itself where the CPU has AMX tiles
            note += f", CPU AMX: {'yes' if detected().get('amx') else 'no'}"
        self.notes.append(note)
        self._static.clear()
        self._seen.clear()
        self._axis0 = []
        inputs = {self._name(port, f"input_{i}"): port for i, port in enumerate(self._compiled.inputs)}
        if self.options.extra.get("static_axis0", True):
            self._axis0 = [name for name, port in inputs.items() if _dynamic_axis0(port.get_partial_shape())]
        self._fold = self._fold_wanted if self._axis0 and set(self._fold_wanted) <= set(inputs) else ()
        if self._axis0:
            self._model, self._core, self._device, self._compile_config = model, core, device, config
            if self._static_compile((1, False)) is not None:
                self.notes.append("axis 0 also compiled static (" + ", ".join(self._axis0) + "): 1, and "
                                  "other sizes when fed twice")
            if self._fold and self._static_compile((1, True)) is not None:
                self.notes.append("inputs " + ", ".join(self._fold) + " folded to constants when fed zeros")

    def profile(self, feed: FeedDict, runs: int = 3) -> dict[str, Any]:
        """OpenVINO's per-layer counters (``PERF_COUNT``) on a twin compile of the same verified
        model (axis 0 kept dynamic), summed over ``runs`` inferences and grouped by op kind."""
        import dataclasses

        from ..profiling import group_openvino_counters

        config = {**self.options.extra.get("config", {}), "PERF_COUNT": True}
        extra = {**self.options.extra, "config": config, "static_axis0": False, "requests": 1}
        twin = type(self)(self.artifact, dataclasses.replace(self.options, extra=extra)).activate()
        try:
            infos: list[Any] = []
            assert twin._pool is not None
            with twin._pool.slot() as slot:  # the twin's one request: what twin.infer runs on
                request = slot.request
            for _ in range(max(1, runs)):
                twin.infer(feed)
                infos += list(request.get_profiling_info())
        finally:
            twin.deactivate()
        return group_openvino_counters(infos, runs=max(1, runs))

    def _static_compile(self, key: StaticKey) -> Any:
        """The compiled model with axis 0 = ``key[0]`` and, with ``key[1]``, the ``fold_zeros`` inputs
        constant zeros (compiled now); ``None`` if that fails; call with ``self._lock`` held (or
        before any infer)."""
        if key in self._static:
            self._static.move_to_end(key)
            return self._static[key]
        import openvino as ov

        size, folded = key
        fixed = self._model.clone()
        shapes = {}
        for i, port in enumerate(fixed.inputs):
            pshape = port.get_partial_shape()
            if _dynamic_axis0(pshape):
                shapes[port] = ov.PartialShape([ov.Dimension(size)] + [pshape[k] for k in range(1, len(pshape))])
        try:
            fixed.reshape(shapes)
            if folded:
                fixed = fold_inputs(fixed, self._fold)
            compiled = self._core.compile_model(fixed, self._device, self._compile_config)
        except (RuntimeError, ValueError, KeyError) as err:  # the dynamic (or unfolded) compile serves all
            if folded:
                self.notes.append(f"inputs {', '.join(self._fold)} not folded ({one_line(str(err), 100)})")
                self._fold = ()
            else:
                self.notes.append(f"axis 0 = {size} not compiled static ({one_line(str(err), 100)})")
                self._axis0 = []
            return None
        self._static[key] = compiled
        while len(self._static) > STATIC_AXIS0_KEPT:
            self._static.popitem(last=False)
        return compiled

    def _static_key(self, feed: FeedDict) -> StaticKey | None:
        """The static compile ``feed`` can run on (``None``: only the dynamic one)."""
        sizes = {feed[n].shape[0] for n in self._axis0}
        if len(sizes) != 1:
            return None
        folded = bool(self._fold) and not any(np.any(feed[n]) for n in self._fold)
        return sizes.pop(), folded

    def _request_for(self, slot: _Slot, feed: FeedDict) -> tuple[Any, tuple[str, ...]]:
        """The request of ``slot`` that runs ``feed`` and the inputs that are constants there (not to be
        fed; read under the lock, so a later failed fold elsewhere cannot change them): the static
        compile's of its key when there is one (made for this slot on first use), else the dynamic one."""
        with self._lock:
            key = self._static_key(feed)
            if key is None:
                return slot.request, ()
            self._seen[key] = self._seen.get(key, 0) + 1
            if key not in self._static and self._seen[key] < 2:
                return slot.request, ()
            folded = self._fold if key[1] else ()
            compiled = self._static_compile(key)
            if compiled is None and key[1]:
                key, folded = (key[0], False), ()
                compiled = self._static_compile(key)
            if compiled is None:
                return slot.request, ()
            mine = slot.static.get(key)
            if mine is None or mine[0] is not compiled:
                # drop this slot's requests of compiles the LRU has let go, then make this one's
                slot.static = {s: v for s, v in slot.static.items() if self._static.get(s) is v[0]}
                mine = slot.static[key] = (compiled, compiled.create_infer_request())
            return mine[1], folded

    def _rewrite(self, model: Any, device: str) -> str:
        """Apply the in-memory layout rewrites (:mod:`.rewrite`) for a CPU-only compile; what they did."""
        devices = _devices_in(device)
        if not devices or any(d.split(".")[0] != "CPU" for d in devices):
            return ""
        from .rewrite import banded_upscaling, channel_last_contractions, channel_means

        done = []
        if self._rewrites["channel_means"] and (n := channel_means(model)):
            done.append(f"{n} channel mean(s) as ReduceMean")
        if self._rewrites["banded"] and (n := banded_upscaling(model)):
            done.append(f"{n} upscaling chain(s) computed in bands")
        if self._rewrites["channel_last"] and (n := channel_last_contractions(model)):
            done.append(f"{n} channel contraction(s) computed channel-last")
        return ", ".join(done)

    def _read(self, core: Any) -> Any:
        if isinstance(self.artifact, HashedFiles):
            return self._read_verified(core, self.artifact)
        if not isinstance(self.artifact, (str, Path)):
            return self.artifact.clone()  # an ov.Model built in memory: the caller's stays as it is
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
        if self._pool is not None:
            self._pool.close()  # waits for the calls in flight; later ones get a RunnerError
        self._pool = self._compiled = self._model = None
        self._weights = None
        with self._lock:
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
        pool = self._pool
        if pool is None:
            raise RunnerError(f"openvino runner for {self.artifact}: closed while a call started; activate it again")
        with pool.slot() as slot:
            request, skip = self._request_for(slot, feed)
            request.infer({k: np.ascontiguousarray(v) for k, v in feed.items() if k not in skip})
            return {
                name: request.get_output_tensor(i).data.copy()
                for i, name in enumerate(self._out_names)
            }
