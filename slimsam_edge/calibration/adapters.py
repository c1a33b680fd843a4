"""Adapters from a re-iterable of feed dicts to each quantizer's data interface.

TensorRT's entropy calibrator (:mod:`slimsam_edge.exporters.tensorrt_build`) takes the iterable
directly. ONNX Runtime and NNCF are imported lazily (only when an adapter is made).

Example:
    >>> reader = ort_data_reader([{"x": np.zeros(1, np.float32)}], ["x"])
    >>> sorted(reader.get_next()), reader.get_next()
    (['x'], None)
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..errors import DataError
from ..models.graph_spec import FeedDict



def _select(feed: FeedDict, names: Sequence[str], where: str) -> FeedDict:
    missing = [n for n in names if n not in feed]
    if missing:
        raise DataError(f"{where}: calibration feed lacks inputs {missing}; it has {sorted(feed)}")
    return {n: feed[n] for n in names}


class OrtDataReader:
    """ONNX Runtime ``CalibrationDataReader`` protocol (``get_next`` / ``rewind``) over feeds.

    Only the graph's inputs are passed on (feeds may carry more keys).
    """

    def __init__(self, feeds: Iterable[FeedDict], input_names: Sequence[str]):
        self.feeds, self.names = feeds, list(input_names)
        self._it: Iterator[FeedDict] | None = None
        self.seen = 0

    def get_next(self) -> FeedDict | None:
        if self._it is None:
            self._it = iter(self.feeds)
        feed = next(self._it, None)
        if feed is None:
            return None
        self.seen += 1
        return _select(feed, self.names, "onnxruntime calibration")

    def rewind(self) -> None:
        self._it = None

    def __len__(self) -> int:
        return len(self.feeds)  # type: ignore[arg-type]


def ort_data_reader(feeds: Iterable[FeedDict], input_names: Sequence[str]) -> OrtDataReader:
    """An ONNX Runtime calibration data reader over ``feeds`` (see :class:`OrtDataReader`).

    Example:
        >>> quantize_static(src, dst, ort_data_reader(feeds, ["image"]))   # doctest: +SKIP
    """
    return OrtDataReader(feeds, input_names)


def nncf_dataset(feeds: Iterable[FeedDict], input_names: Sequence[str]) -> Any:
    """An ``nncf.Dataset`` yielding ``{input: array}`` dicts for an OpenVINO model.

    Example:
        >>> nncf.quantize(ov_model, nncf_dataset(feeds, ["image"]))      # doctest: +SKIP
    """
    import nncf

    names = list(input_names)
    return nncf.Dataset(feeds, lambda feed: _select(feed, names, "nncf calibration"))
