"""Moved: MobileSAM's encoder (TinyViT-5M, random weights) now lives in
:mod:`slimsam_edge.models.peers.tinyvit`, where the exporters and ``bench --peer`` can reach it;
this name stays importable for old scripts.

Example:
    >>> from slimsam_edge.research.tinyvit import build_mobilesam_encoder
    >>> build_mobilesam_encoder.__module__
    'slimsam_edge.models.peers.tinyvit'
"""

from __future__ import annotations

from ..models.peers.tinyvit import TinyViTEncoder, build_mobilesam_encoder, count_parameters

__all__ = ["TinyViTEncoder", "build_mobilesam_encoder", "count_parameters"]
