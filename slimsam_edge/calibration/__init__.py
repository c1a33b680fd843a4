"""Calibration data for reduced-precision exports (torch-free).

One re-iterable of feed dicts per graph serves every backend: each backend folder adapts it to
its quantizer (``runtimes/onnxruntime/calibration.py``, ``runtimes/openvino/calibration.py``;
TensorRT's entropy calibrator takes the iterable as is). Images are preprocessed exactly like the runtime's
:class:`~slimsam_edge.predictor.EdgePredictor` does it (:func:`slimsam_edge.transforms.preprocess`).

Example:
    >>> images = calibration_images(None, 4, size=64)
    >>> feeds = encoder_feeds(images, image_size=64, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))
    >>> len(feeds), next(iter(feeds))["image"].shape
    (4, (1, 3, 64, 64))
"""

from __future__ import annotations

from .feeds import (
    CALIB_SEED,
    CALIB_SIZE,
    DEFAULT_CALIB_IMAGES,
    MAX_CALIB_IMAGES,
    CalibrationFeeds,
    CalibrationImages,
    calibration_images,
    decoder_feeds,
    encoder_feeds,
)

__all__ = [
    "CALIB_SEED", "CALIB_SIZE", "DEFAULT_CALIB_IMAGES", "MAX_CALIB_IMAGES", "CalibrationFeeds",
    "CalibrationImages", "calibration_images", "decoder_feeds", "encoder_feeds",
]
