"""Files shipped inside the package: the reference model (sam-mini) and its model card.

Example:
    >>> reference_model_path().name
    'sam_mini.safetensors'
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

ASSETS = Path(__file__).resolve().parent
REFERENCE_MODEL = ASSETS / "sam_mini.safetensors"
MODEL_CARD = ASSETS / "MODEL_CARD.md"


def reference_model_path() -> Path:
    """Path of the shipped sam-mini weights (whether or not the file exists)."""
    return REFERENCE_MODEL


def require_reference_model() -> Path:
    """Path of the shipped sam-mini weights; a one-line error when the file is missing."""
    if not REFERENCE_MODEL.is_file():
        raise CheckpointError(
            f"the reference model {REFERENCE_MODEL} is missing from this installation; "
            "reinstall slimsam-edge or pass a checkpoint path"
        )
    return REFERENCE_MODEL
