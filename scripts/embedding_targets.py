#!/usr/bin/env python
"""The shipped sam-mini teacher's decoder on each ``compress --embedding-target`` at smaller input sizes.

Example:
    $ python scripts/embedding_targets.py --sizes 192 160
"""

from slimsam_edge.research.embedding_targets import main

if __name__ == "__main__":
    main()
