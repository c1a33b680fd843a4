#!/usr/bin/env python
"""Regenerate docs/results/threads.md: video-pipeline fps and capture-to-mask latency under OpenVINO's
LATENCY / THROUGHPUT hints, explicit encoder / decoder threads and two encode requests (interleaved rounds),
on the shipped sam-mini and a 1024-px SlimSAM-77 (random weights).

Example:
    $ python scripts/threads.py                                # both models, every configuration
    $ python scripts/threads.py --models sam-mini --rounds 3   # sam-mini only
"""

from slimsam_edge.research.threads_report import main

if __name__ == "__main__":
    main()
