#!/usr/bin/env python
"""Latency of MobileSAM's image encoder architecture (random weights) on this CPU.

Example:
    $ nice -n 10 .venv/bin/python scripts/mobilesam_reference.py --json runs/mobilesam_reference.json
    $ python -m slimsam_edge.research.mobilesam_reference --help      # the same
"""

from slimsam_edge.research.mobilesam_reference import main

if __name__ == "__main__":
    main()
