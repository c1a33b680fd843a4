#!/usr/bin/env python
"""Regenerate docs/results/precision.md: runtime x precision latency and agreement, and the fast-attention routes.

Example:
    $ python scripts/precision.py                                   # SlimSAM-77 @1024, sam-mini, route 7b
    $ python scripts/precision.py --models sam-mini --route-b-steps 0   # sam-mini only
"""

from slimsam_edge.research.precision_report import main

if __name__ == "__main__":
    main()
