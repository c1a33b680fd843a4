"""OpenVINO's calibration adapter: an ``nncf.Dataset`` over feed dicts (nncf imported when called).

Example:
    >>> nncf.quantize(ov_model, nncf_dataset(feeds, ["image"]))      # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..plugin import select_inputs
from ...models.graph_spec import FeedDict


def nncf_dataset(feeds: Iterable[FeedDict], input_names: Sequence[str]) -> Any:
    """An ``nncf.Dataset`` yielding ``{input: array}`` dicts for an OpenVINO model.

    Example:
        >>> nncf.quantize(ov_model, nncf_dataset(feeds, ["image"]))      # doctest: +SKIP
    """
    import nncf

    names = list(input_names)
    return nncf.Dataset(feeds, lambda feed: select_inputs(feed, names, "nncf calibration"))
