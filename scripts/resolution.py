#!/usr/bin/env python
"""Regenerate docs/results/resolution.md: the mIoU cost of `compress --image-size` on sam-mini and the speed
of SlimSAM-77 at 1024 / 768 / 512 (OpenVINO fp32 and bf16, interleaved).

Example:
    $ python scripts/resolution.py                                 # sam-mini 256/192/128 + SlimSAM-77 speed
    $ python scripts/resolution.py --mini-sizes --runs 20          # speed only
"""

from slimsam_edge.research.resolution_report import main

if __name__ == "__main__":
    main()
