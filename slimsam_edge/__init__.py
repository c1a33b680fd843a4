"""slimsam-edge: SlimSAM compression, export and an edge runtime for Segment Anything.

The public names are imported lazily so that ``import slimsam_edge`` stays cheap and never
pulls in torch.

Illustration (not run as a doctest: it needs files or a model)::

    from slimsam_edge import EdgePredictor
    p = EdgePredictor.from_bundle("bundle/")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "EdgePredictor": "slimsam_edge.predictor",
    "load_bundle": "slimsam_edge.bundle",
    "open_runner": "slimsam_edge.runtimes",
    "SlimSamEdgeError": "slimsam_edge.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slimsam_edge' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]
