#!/usr/bin/env python
"""Regenerate docs/results/speed.md: SlimSAM-77 routes (input size x windowed attention x runtime/precision)
against MobileSAM's encoder in every precision, with the accuracy each route keeps on its sam-mini analogue.

Example:
    $ python scripts/speed.py                                  # everything (students reused when done)
    $ python scripts/speed.py --reuse --reuse-latency          # re-join and re-render after new students
"""

from slimsam_edge.research.speed_report import main

if __name__ == "__main__":
    main()
