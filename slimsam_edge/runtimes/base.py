"""The shared runtime interface: one :class:`Runner` per backend (the registry is in :mod:`.registry`).

A runner wraps one exported graph (an encoder or a decoder). Construction is cheap; the session
or engine is created on ``__enter__`` (or the first :meth:`Runner.infer`). The public
:meth:`Runner.infer` checks the feed against the graph's inputs and then calls the backend's
``_infer``; a backend implements only ``_activate``, ``_infer`` and ``_specs`` (and
``_deactivate`` when it holds resources).

Illustration (not run as a doctest: it needs files or a model)::

    from slimsam_edge.runtimes import open_runner
    with open_runner("bundle/image_encoder.onnx", backend="onnxruntime") as r:
        out = r.infer({"image": x})["image_embeddings"]
"""

from __future__ import annotations

import abc
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import RunnerError
from ..limits import check_threads
from ..models.graph_spec import FeedDict

@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one graph input or output (``str`` dims are dynamic)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str, ...]

    def check(self, value: np.ndarray) -> str | None:
        """Return a description of how ``value`` violates this spec, or ``None`` if it fits."""
        if not isinstance(value, np.ndarray):
            return f"{self.name}: expected a numpy array, got {type(value).__name__}"
        if np.dtype(value.dtype) != np.dtype(self.dtype):
            return f"{self.name}: dtype {value.dtype}, expected {np.dtype(self.dtype)}"
        if len(value.shape) != len(self.shape):
            return f"{self.name}: rank {value.ndim} (shape {tuple(value.shape)}), expected shape {self.shape}"
        for got, want in zip(value.shape, self.shape):
            if isinstance(want, int) and want >= 0 and got != want:
                return f"{self.name}: shape {tuple(value.shape)}, expected {self.shape}"
        return None


@dataclass(frozen=True)
class RunnerOptions:
    """Options every backend understands; backends ignore what does not apply to them.

    Arguments:
        threads: intra-op threads (``None`` = the runtime's default).
        device: backend device string ("cpu", "cuda", "GPU", "NPU", "AUTO", ...).
        precision: inference precision hint ("fp32", "fp16", "bf16"); a backend that cannot honour
            it raises :class:`~slimsam_edge.errors.UsageError` instead of silently ignoring it.
        extra: backend-specific settings.
    """

    threads: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse (one-line UsageError) threads that are not a count or more than the machine can use
        (:func:`~slimsam_edge.limits.check_threads`: 4 per CPU), before any session is made.

        Example:
            >>> RunnerOptions(threads=-2)
            Traceback (most recent call last):
            ...
            slimsam_edge.errors.UsageError: threads -2 must be >= 0 (0 or omitted: the runtime's default)
        """
        check_threads(self.threads, "threads")


class Runner(abc.ABC):
    """Base class of every backend's runner; the registry sets ``backend`` when it registers it.

    Threads: a runner may be shared. :meth:`activate` / :meth:`deactivate` are serialised, and so is
    :meth:`infer` unless the backend runs concurrent calls safely itself (:attr:`concurrent_infer`:
    ONNX Runtime's session is thread-safe; OpenVINO hands each call one of its ``requests`` infer
    requests and makes further callers wait for a free one); a backend with one execution context
    (TensorRT, torch) is therefore correct from many threads, one call at a time.
    """

    backend: ClassVar[str] = ""
    #: True when the backend's ``_infer`` may run on several threads at once (its session is
    #: thread-safe, or it hands out infer requests itself); False serialises :meth:`infer` with a lock
    concurrent_infer: ClassVar[bool] = False
    #: the performance hints ``extra["performance_hint"]`` may name (lower case; none: the backend
    #: has no such setting, and :class:`~slimsam_edge.runtimes.tuning.RuntimeTuning` ``hint`` is refused)
    performance_hints: ClassVar[tuple[str, ...]] = ()

    def __init__(self, artifact: Path | str | Any, options: RunnerOptions | None = None):
        self.artifact = artifact
        self.options = options or RunnerOptions()
        self._active = False
        self._inputs: dict[str, TensorSpec] | None = None
        self._outputs: dict[str, TensorSpec] | None = None
        self.activate_seconds: float | None = None
        self.notes: list[str] = []
        self._life_lock = threading.RLock()
        self._infer_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    def activate(self) -> "Runner":
        """Create the session / load the engine (idempotent). Records ``activate_seconds``."""
        with self._life_lock:
            if not self._active:
                t0 = time.perf_counter()
                self._activate()
                self._inputs, self._outputs = self._specs()
                self.activate_seconds = time.perf_counter() - t0
                self._active = True
        return self

    def deactivate(self) -> None:
        with self._life_lock, self._infer_lock:
            if self._active:
                self._deactivate()
                self._active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    @property
    def is_active(self) -> bool:
        return self._active

    # -- introspection -------------------------------------------------------------------------
    def input_specs(self) -> dict[str, TensorSpec]:
        self.activate()
        assert self._inputs is not None
        return dict(self._inputs)

    def output_specs(self) -> dict[str, TensorSpec]:
        self.activate()
        assert self._outputs is not None
        return dict(self._outputs)

    def max_prompts(self) -> int | None:
        """The most prompts (axis 0 of a batched decoder's inputs) one call takes, ``None`` = no
        limit of the backend's own (a TensorRT engine's optimisation profile has one)."""
        return None

    # -- inference -----------------------------------------------------------------------------
    def infer(self, feed: FeedDict) -> FeedDict:
        """Check ``feed`` against the inputs, run the graph, return every output by name.

        Raises:
            RunnerError: with every problem listed when names, dtypes or ranks do not match.
        """
        specs = self.input_specs()
        problems = [f"missing input {n!r}" for n in specs if n not in feed]
        problems += [f"unexpected input {n!r}" for n in feed if n not in specs]
        for name, spec in specs.items():
            if name in feed:
                msg = spec.check(feed[name])
                if msg:
                    problems.append(msg)
        if problems:
            raise RunnerError(f"{self.backend} runner for {self.artifact}: " + "; ".join(problems))
        if self.concurrent_infer:
            return self._infer(feed)
        with self._infer_lock:
            return self._infer(feed)

    def profile(self, feed: FeedDict, runs: int = 3) -> dict[str, Any]:
        """Where this graph's time goes: ``runs`` inferences of ``feed`` under the runtime's own
        profiler, grouped by :mod:`~slimsam_edge.runtimes.profiling` (attention / matmul / norm /
        conv / resize / other: ms per run and share). Runs on a separate session, so this runner's
        timings are untouched.

        Raises:
            RunnerError: the backend has no profiler hook (``bench --profile`` says so in its row).
        """
        raise RunnerError(f"{self.backend or type(self).__name__}: no profiler hook for this backend; "
                          "profile it with the runtime's own tools")

    # -- to implement --------------------------------------------------------------------------
    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _specs(self) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]: ...

    @abc.abstractmethod
    def _infer(self, feed: FeedDict) -> FeedDict: ...

    def _deactivate(self) -> None:
        """Release the session; default drops nothing."""

    @classmethod
    def available(cls) -> bool:
        """True when the backend's package can be imported (without importing it twice)."""
        return True
