"""OpenVINO's calibration adapter: an ``nncf.Dataset`` over feed dicts (nncf imported when called).

Illustration (not run as a doctest: it needs files or a model)::

    nncf.quantize(ov_model, nncf_dataset(feeds, ["image"]))
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..plugin import select_inputs
from ...models.graph_spec import FeedDict


def nncf_dataset(feeds: Iterable[FeedDict], input_names: Sequence[str]) -> Any:
    """An ``nncf.Dataset`` yielding ``{input: array}`` dicts for an OpenVINO model.

    Illustration (not run as a doctest: it needs files or a model)::

        nncf.quantize(ov_model, nncf_dataset(feeds, ["image"]))
    """
    import nncf

    names = list(input_names)
    return nncf.Dataset(feeds, lambda feed: select_inputs(feed, names, "nncf calibration"))
