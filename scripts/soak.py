#!/usr/bin/env python
"""Soak the predictor: 10,000 calls over 1,000 images per backend (ONNX Runtime, OpenVINO) on the
sam-mini bundle, sampling RSS and open file descriptors; growth after warm-up must stay < 5 MB
(issue 20 item 4; figures in docs/reliability.md).

Example:
    $ nice python scripts/soak.py --json docs/results/soak.json           # both backends, the full counts
    $ python scripts/soak.py --backend onnxruntime --calls 500 --images 50
"""

from slimsam_edge.research.soak import main

if __name__ == "__main__":
    main()
