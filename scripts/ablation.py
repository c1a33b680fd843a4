#!/usr/bin/env python
"""Regenerate docs/results/ablation.md: SlimSAM's ablation (importance x schedule at 50% / 77%) on sam-mini.

Example:
    $ nice python scripts/ablation.py --threads 2          # the full grid (100 steps/phase), ~1 h on 2 cores
    $ python scripts/ablation.py --help
"""

from slimsam_edge.research.ablation import main

if __name__ == "__main__":
    main()
