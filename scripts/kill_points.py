#!/usr/bin/env python
"""SIGKILL `export`, `compress`, `segment` and `bench --out` at random points (>= 5 each, seeded) and
at each output's atomic write; check every output is whole or absent, no temporary is left, and
compress resumes to bit-identical weights (issue 20 item 5; figures in docs/reliability.md).

Example:
    $ nice python scripts/kill_points.py --kills 5 --seed 0 --json docs/results/kill_points.json   # ~15 min on 2 cores
    $ python scripts/kill_points.py --only segment --kills 2
"""

from slimsam_edge.research.kill_points import main

if __name__ == "__main__":
    main()
