"""Subprocess entry point: ``python -m slimsam_edge.bench.worker '<BenchConfig JSON>'``.

Prints one JSON line with the results; errors print ``error: ...`` on stderr with exit code 2.
"""

from __future__ import annotations

import json
import sys

from ..errors import SlimSamEdgeError
from .harness import BenchConfig, bench_in_process


def main(argv: list[str]) -> int:
    try:
        raw = json.loads(argv[0])
        raw["image_hw"] = tuple(raw.get("image_hw", (1500, 2250)))
        cfg = BenchConfig(**raw)
        result = bench_in_process(cfg)
    except SlimSamEdgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
