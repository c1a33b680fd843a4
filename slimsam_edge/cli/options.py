"""Typed options shared by several commands (Annotated aliases)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..devices import PRECISIONS, list_profiles
from ..errors import UsageError
from ..runtimes import PERFORMANCE_HINTS, registered_backends

if TYPE_CHECKING:  # pragma: no cover
    from ..runtimes.tuning import RuntimeTuning


#: ``--backend`` choices: every registered backend (runtimes/registry.py)
Backend = Enum("Backend", {name: name for name in registered_backends()}, type=str)  # type: ignore[misc]

#: ``--precision`` choices
Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)  # type: ignore[misc]

#: ``--decoder-precision`` of segment, eval and bench: EdgePredictor.from_bundle(decoder_precision=...)
DecoderPrecisionOpt = Annotated[
    Optional[Precision],
    typer.Option("--decoder-precision", help="The mask decoder's precision when it differs from the encoder's "
                 "(default: the encoder's): e.g. bf16 runs the fp32 decoder with OpenVINO's bf16 hint behind an "
                 "fp32 or int8 encoder. Refused (exit 2) where the bundle lacks it for the backend or the CPU "
                 "lacks it (bf16 without BF16)."),
]


def enum_value(choice: Optional[Enum]) -> Optional[str]:
    """The string of an optional enum option (``None`` stays ``None``).

    Example:
        >>> enum_value(Precision("int8")), enum_value(None)
        ('int8', None)
    """
    return None if choice is None else choice.value


class Resize(str, Enum):
    sam = "sam"
    fast = "fast"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]
ModelTypeOpt = Annotated[
    Optional[str],
    typer.Option("--model-type", help="Force a model type (vit_h, vit_l, vit_b, vit_p50, vit_p77, sam_mini); "
                 "detected from the weights when omitted."),
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option("--trust-pickle", help="Allow loading pickled model objects (runs code from the file; "
                 "only for checkpoints from a source you trust)."),
]
def _thread_count(value: Optional[int], name: str, omitted: str) -> Optional[int]:
    """A thread-count option: at least 1 and at most the limit of slimsam_edge.limits (4 x usable CPUs)."""
    from ..limits import check_threads

    try:
        if value is not None and value < 1:
            raise UsageError(f"{name} {value} must be at least 1 (omit it for {omitted})")
        return check_threads(value, name)
    except UsageError as err:  # raised while parsing: Click's error, printed as one line, exit 2
        raise typer.BadParameter(str(err).removeprefix(f"{name} ")) from None


def _threads(value: Optional[int]) -> Optional[int]:
    """--threads: at least 1 and at most the limit of slimsam_edge.limits (4 x usable CPUs)."""
    return _thread_count(value, "--threads", "the runtime's default")


#: ``--threads`` of every command: 1 .. 4 x usable CPUs (slimsam_edge.limits), checked while parsing
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", callback=_threads, help="Inference threads.")]
TorchThreadsOpt = Annotated[Optional[int], typer.Option("--threads", callback=_threads, help="Torch CPU threads.")]
BundleOpt = Annotated[Path, typer.Option("--bundle", help="Bundle folder written by `slimsam-edge export`.")]


def _target_help() -> str:
    return (f"Target: {' | '.join(list_profiles())} (devices/profiles/*.toml), or the path of a .toml "
            "profile (see docs/backends.md).")


TargetOpt = Annotated[str, typer.Option("--target", help=_target_help())]


# -- runtime tuning (slimsam_edge.runtimes.tuning): `video` and `bench` ------------------------------
#: ``--hint`` choices: OpenVINO's performance hints
Hint = Enum("Hint", {name: name for name in PERFORMANCE_HINTS}, type=str)  # type: ignore[misc]


def _graph_threads(ctx: typer.Context, param: typer.CallbackParam, value: Optional[int]) -> Optional[int]:
    """--encoder-threads / --decoder-threads: as --threads."""
    return _thread_count(value, param.opts[0], "--threads or the runtime's default")


HintOpt = Annotated[Optional[Hint], typer.Option("--hint", help="OpenVINO performance hint of the encoder: latency (default: every thread on one frame), throughput or cumulative_throughput (several streams, frames encoded side by side; pair with --encode-requests).")]
EncoderThreadsOpt = Annotated[Optional[int], typer.Option("--encoder-threads", callback=_graph_threads, help="Inference threads of the encoder (default: --threads).")]
DecoderThreadsOpt = Annotated[Optional[int], typer.Option("--decoder-threads", callback=_graph_threads, help="Inference threads of the decoder (default: --threads).")]
EncodeRequestsOpt = Annotated[int, typer.Option("--encode-requests", min=1, max=16, help="Frames encoded at once: that many encoder infer requests (OpenVINO) and encode threads in the video pipeline, so frame n+1's encoding overlaps frame n's.")]


def make_tuning(hint: Optional[Enum], encoder_threads: Optional[int], decoder_threads: Optional[int],
                encode_requests: int) -> "RuntimeTuning":
    """The :class:`~slimsam_edge.runtimes.tuning.RuntimeTuning` of the tuning options."""
    from ..runtimes.tuning import RuntimeTuning

    return RuntimeTuning(hint=enum_value(hint), encoder_threads=encoder_threads,
                         decoder_threads=decoder_threads, encode_requests=encode_requests)
