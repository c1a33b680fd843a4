"""Typed options shared by several commands (Annotated aliases)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class Backend(str, Enum):
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    tensorrt = "tensorrt"
    torch = "torch"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"
    int8 = "int8"


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
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="Inference threads.")]
BundleOpt = Annotated[Path, typer.Option("--bundle", help="Bundle folder written by `slimsam-edge export`.")]
