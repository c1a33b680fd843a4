"""What every backend's calibration adapter shares: picking a graph's inputs out of a feed dict.

The adapters themselves live with their backend (``runtimes/onnxruntime/calibration.py``: ONNX
Runtime's ``CalibrationDataReader``; ``runtimes/openvino/calibration.py``: ``nncf.Dataset``);
TensorRT's entropy calibrator takes the re-iterable of feeds as is.

Example:
    >>> import numpy as np
    >>> sorted(select_inputs({"x": np.zeros(1), "extra": 1}, ["x"], "demo"))
    ['x']
"""

from __future__ import annotations

from typing import Sequence

from ..errors import DataError
from ..models.graph_spec import FeedDict


def select_inputs(feed: FeedDict, names: Sequence[str], where: str) -> FeedDict:
    """The entries of ``feed`` a graph with inputs ``names`` takes; a one-line DataError if one lacks.

    Example:
        >>> select_inputs({}, ["image"], "onnxruntime calibration")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.DataError: onnxruntime calibration: calibration feed lacks inputs ['image']; it has []
    """
    missing = [n for n in names if n not in feed]
    if missing:
        raise DataError(f"{where}: calibration feed lacks inputs {missing}; it has {sorted(feed)}")
    return {n: feed[n] for n in names}
