"""Research report generators, off the runtime path: each writes a page of ``docs/results/``.

:mod:`.ablation` (SlimSAM's ablation on sam-mini), :mod:`.precision_report` (runtime x precision,
fast-attention routes), :mod:`.roofline` and :mod:`.tinyvit` (MobileSAM's encoder for comparison,
timed by :mod:`.mobilesam_reference`), :mod:`.card` (publish a reference run as the shipped model
card), :mod:`.threads_report` (OpenVINO hints, threads and encode overlap in the video pipeline),
:mod:`.resolution_report` (input size as a compression axis), :mod:`.speed_report` (size x
attention x precision routes against MobileSAM). Each runs as ``python -m
slimsam_edge.research.<name>``; ``scripts/*.py`` are thin entries. Nothing below this package
imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def publish(page: Path, markdown: str, result: dict[str, Any]) -> None:
    """Write a report's Markdown ``page`` and its JSON twin (same name, ``.json``), each atomically.

    Example:
        >>> import json, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     publish(Path(d) / "r.md", "# r", {"x": 1})
        ...     json.loads((Path(d) / "r.json").read_text())["x"], (Path(d) / "r.md").read_text()
        wrote ...r.md and r.json
        (1, '# r')
    """
    import json

    from ..fsutil import write_text_atomic

    write_text_atomic(page.with_suffix(".json"), json.dumps(result, indent=2, default=str))
    write_text_atomic(page, markdown)
    print(f"wrote {page} and {page.with_suffix('.json').name}")



def load_note(start: str, end: str, cores: int | None) -> str:
    """What the 1-minute load averages at the start and end of a timed run (``os.getloadavg()``
    joined by spaces) say about the numbers.

    Example:
        >>> load_note("1.9 2.2 4.0", "1.6 1.8 3.3", 2).startswith("no other work")
        True
        >>> load_note("6.0 6.1 6.2", "5.0 5.5 6.0", 2).startswith("the machine was shared")
        True
    """
    loads = [float(x.split()[0]) for x in (start, end) if x and x.split()]
    if loads and max(loads) > (cores or 1) + 0.5:
        return ("the machine was shared with other jobs: absolute numbers are inflated; the rows of one table "
                "ran in the same interleaved rounds, so their ratios are what carries over")
    return ("no other work competed for the cores (load at or below the core count); rows of one table ran in "
            "the same interleaved rounds")
