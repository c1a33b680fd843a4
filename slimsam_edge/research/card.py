"""Publish a reference run as the shipped sam-mini, or refresh the shipped card's measurements.

The card itself is made by :mod:`slimsam_edge.reference.card`; this is its command line.

Example:
    python -m slimsam_edge.research.card runs/sam-mini      # publish runs/sam-mini/best.safetensors
    python -m slimsam_edge.research.card --refresh          # re-measure the shipped weights, re-render
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry; returns the card."""
    from ..reference.card import CARD_IMAGES, publish, refresh

    ap = argparse.ArgumentParser(prog="python -m slimsam_edge.research.card", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", type=Path, help="training run folder with best.safetensors")
    ap.add_argument("--refresh", action="store_true", help="re-measure the shipped weights and re-render the card")
    ap.add_argument("--images", type=int, default=CARD_IMAGES, help="images per split")
    a = ap.parse_args(argv)
    if a.refresh == (a.run_dir is not None):
        ap.error("pass a RUN_DIR to publish, or --refresh")
    card = refresh(count=a.images) if a.refresh else publish(a.run_dir, count=a.images)
    print(json.dumps(card["splits"], indent=2), "targets met:", card["targets_met"])
    return card


if __name__ == "__main__":
    main()
