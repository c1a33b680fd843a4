#!/usr/bin/env python
"""Regenerate docs/results/bench-cpu.md (+ .json and the plots in docs/results/bench-cpu/).

Example:
    $ python scripts/bench_report.py                     # everything: sam-mini, SlimSAM-77, peers
    $ python scripts/bench_report.py --skip-1024 --out /tmp/quick.md   # the sam-mini rows only
"""

from slimsam_edge.research.bench_report import main

if __name__ == "__main__":
    main()
