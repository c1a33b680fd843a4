"""Subprocess entry point: ``python -m slimsam_edge.bench.worker '<BenchConfig JSON>'``.

Prints one JSON line with the results; errors print ``error: ...`` on stderr with exit code 2.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from ..errors import SlimSamEdgeError
from .harness import PARENT_ENV, BenchConfig, bench_in_process


def die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this worker when the bench process that started it dies
    (its pid is in :data:`~.harness.PARENT_ENV`): a killed ``bench`` leaves no benchmark running."""
    parent = os.environ.get(PARENT_ENV, "")
    if not sys.platform.startswith("linux") or not parent.isdigit():
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != int(parent):  # the parent died before the line above
        os._exit(1)


def main(argv: list[str]) -> int:
    die_with_parent()
    try:
        cfg = BenchConfig.from_record(json.loads(argv[0]))
        result = bench_in_process(cfg)
    except SlimSamEdgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
