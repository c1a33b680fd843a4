"""ONNX Runtime's calibration adapter: the ``CalibrationDataReader`` protocol over feed dicts.

Example:
    >>> import numpy as np
    >>> reader = ort_data_reader([{"x": np.zeros(1, np.float32)}], ["x"])
    >>> sorted(reader.get_next()), reader.get_next()
    (['x'], None)
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from ..plugin import select_inputs
from ...models.graph_spec import FeedDict


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
        return select_inputs(feed, self.names, "onnxruntime calibration")

    def rewind(self) -> None:
        self._it = None

    def __len__(self) -> int:
        return len(self.feeds)  # type: ignore[arg-type]


def ort_data_reader(feeds: Iterable[FeedDict], input_names: Sequence[str]) -> OrtDataReader:
    """An ONNX Runtime calibration data reader over ``feeds`` (see :class:`OrtDataReader`).

    Illustration (not run as a doctest: it needs files or a model)::

        quantize_static(src, dst, ort_data_reader(feeds, ["image"]))
    """
    return OrtDataReader(feeds, input_names)
