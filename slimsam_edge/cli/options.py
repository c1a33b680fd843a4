"""Typed options shared by several commands (Annotated aliases)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..devices import PRECISIONS, list_profiles
from ..runtimes import registered_backends


#: ``--backend`` choices: every registered backend (runtimes/registry.py)
Backend = Enum("Backend", {name: name for name in registered_backends()}, type=str)  # type: ignore[misc]

#: ``--precision`` choices
Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)  # type: ignore[misc]


class Resize(str, Enum):
    sam = "sam"
    fast = "fast"


#: most ``--points-per-side`` of segment everything (a 256 x 256 grid: 65,536 prompts an image; SAM
#: uses 32): 10**12 would ask for a grid of 10**24 points
MAX_POINTS_PER_SIDE = 256

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
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="Inference threads.")]
BundleOpt = Annotated[Path, typer.Option("--bundle", help="Bundle folder written by `slimsam-edge export`.")]


def _target_help() -> str:
    return (f"Target: {' | '.join(list_profiles())} (devices/profiles/*.toml), or the path of a .toml "
            "profile (see docs/backends.md).")


TargetOpt = Annotated[str, typer.Option("--target", help=_target_help())]
