"""Applications on the torch-free runtime path: segment an image (:mod:`.segment`)."""
