"""Runtime tuning: the performance hint, thread counts per graph and concurrent encoder requests.

One frozen, validated :class:`RuntimeTuning` says how a predictor's two runners are opened
(:meth:`EdgePredictor.from_bundle(..., tuning=...) <slimsam_edge.predictor.EdgePredictor.from_bundle>`,
``slimsam-edge video`` / ``bench`` ``--hint``, ``--encoder-threads``, ``--decoder-threads``,
``--encode-requests``):

* ``hint``: OpenVINO's performance hint for the encoder ("latency": one stream, every thread on
  one inference; "throughput" / "cumulative_throughput": several streams, each inference on fewer
  threads, several inferences at once). Only a backend that lists it in
  :attr:`Runner.performance_hints <slimsam_edge.runtimes.base.Runner.performance_hints>` takes one;
  the decoder always runs one request at a time on one decode thread, with the backend's default.
* ``encoder_threads`` / ``decoder_threads``: intra-op threads of each graph (``None``: the
  ``threads`` given alongside, else the runtime's default).
* ``encode_requests``: how many threads may run the encoder at once (OpenVINO: that many infer
  requests of one compiled model; ONNX Runtime: its session runs concurrent calls; TensorRT and
  torch serialise them). The video pipeline runs that many encode threads, so the encoder of frame
  *n + 1* starts while frame *n* is still in the encoder or the decoder.
* ``streams``: OpenVINO's NUM_STREAMS for the encoder (``None``: what the hint picks).

Illustration (not run as a doctest: it needs files or a model)::

    tuning = RuntimeTuning(hint="throughput", encoder_threads=2, decoder_threads=1, encode_requests=2)
    predictor = EdgePredictor.from_bundle("bundle/", backend="openvino", tuning=tuning)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UsageError
from ..limits import check_threads

#: OpenVINO's performance hints (lower case; the runner passes them upper case)
PERFORMANCE_HINTS = ("latency", "throughput", "cumulative_throughput")
#: most concurrent encoder requests or streams (beyond the cores they only queue and hold memory)
MAX_REQUESTS = 16


def check_hint(hint: Any, what: str = "performance hint") -> str | None:
    """``hint`` lower-cased if it is one of :data:`PERFORMANCE_HINTS` (any case), ``None`` for
    ``None``; else a one-line UsageError naming the choices.

    Example:
        >>> check_hint("THROUGHPUT"), check_hint(None)
        ('throughput', None)
        >>> check_hint("fast", "--hint")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: --hint 'fast' is not one of latency, throughput, cumulative_throughput
    """
    if hint is None:
        return None
    if not isinstance(hint, str) or hint.lower() not in PERFORMANCE_HINTS:
        raise UsageError(f"{what} {hint!r} is not one of {', '.join(PERFORMANCE_HINTS)}")
    return hint.lower()


def check_count(value: Any, what: str) -> int:
    """``value`` if it is a whole number in 1 .. :data:`MAX_REQUESTS`; else a one-line UsageError.

    Example:
        >>> check_count(2, "encode_requests")
        2
        >>> check_count(0, "encode_requests")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: encode_requests must be a whole number from 1 to 16, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REQUESTS:
        raise UsageError(f"{what} must be a whole number from 1 to {MAX_REQUESTS}, got {value!r}")
    return value


@dataclass(frozen=True)
class RuntimeTuning:
    """How the encoder and decoder runners are tuned (module docstring); validated on creation.

    Example:
        >>> t = RuntimeTuning(hint="THROUGHPUT", encoder_threads=2, decoder_threads=1, encode_requests=2)
        >>> t.hint, t.encoder_extra(), t.decoder_extra()
        ('throughput', {'performance_hint': 'throughput', 'requests': 2}, {})
        >>> t.threads_for("encoder", None), t.threads_for("decoder", 4), RuntimeTuning().threads_for("decoder", 4)
        (2, 1, 4)
        >>> RuntimeTuning().to_dict()
        {'hint': None, 'encoder_threads': None, 'decoder_threads': None, 'encode_requests': 1, 'streams': None}
        >>> RuntimeTuning(encode_requests=0)
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: encode_requests must be a whole number from 1 to 16, got 0
    """

    hint: str | None = None
    encoder_threads: int | None = None
    decoder_threads: int | None = None
    encode_requests: int = 1
    streams: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hint", check_hint(self.hint))
        for name in ("encoder_threads", "decoder_threads"):
            check_threads(getattr(self, name), name)
        check_count(self.encode_requests, "encode_requests")
        if self.streams is not None:
            check_count(self.streams, "streams")

    def threads_for(self, graph: str, threads: int | None) -> int | None:
        """The threads of ``graph`` ("encoder" or "decoder"): its own count, else ``threads``."""
        own = self.encoder_threads if graph == "encoder" else self.decoder_threads
        return own if own is not None else threads

    def encoder_extra(self) -> dict[str, Any]:
        """The encoder runner's ``RunnerOptions.extra`` keys: hint, requests, streams (set ones only)."""
        extra: dict[str, Any] = {}
        if self.hint is not None:
            extra["performance_hint"] = self.hint
        if self.encode_requests != 1:
            extra["requests"] = self.encode_requests
        if self.streams is not None:
            extra["num_streams"] = self.streams
        return extra

    def decoder_extra(self) -> dict[str, Any]:
        """The decoder runner's extra keys: none (one request, the backend's default hint)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (results record the tuning they ran with)."""
        return asdict(self)
