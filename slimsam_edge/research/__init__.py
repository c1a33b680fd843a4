"""Research report generators, off the runtime path: each writes a page of ``docs/results/``.

:mod:`.ablation` (SlimSAM's ablation on sam-mini), :mod:`.precision_report` (runtime x precision,
fast-attention routes), :mod:`.roofline` and :mod:`.tinyvit` (MobileSAM's encoder for comparison,
timed by :mod:`.mobilesam_reference`), :mod:`.card` (publish a reference run as the shipped model
card), :mod:`.threads_report` (OpenVINO hints, threads and encode overlap in the video pipeline). Each runs as ``python -m slimsam_edge.research.<name>``; ``scripts/*.py`` are thin entries.
Nothing below this package imports it.
"""
