"""Calibration images and the feed dicts made from them (torch-free).

Sources: an image folder (an SA-1B folder is one too: its images are read, its JSON ignored), or
procedural images (``source=None``). The encoder gets the preprocessed image; the low-resolution
decoder gets the fp32 encoder's embedding of each image with point and box prompts sampled on it,
built by :meth:`EdgePredictor.prompt_feed` (the runtime's own prompt encoding).

Example:
    >>> images = calibration_images(None, 2, size=64)
    >>> len(images), images[0].shape
    (2, (64, 64, 3))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import DataError, UsageError
from ..models.graph_spec import FeedDict
from ..transforms import preprocess


DEFAULT_CALIB_IMAGES = 64
MAX_CALIB_IMAGES = 512
#: procedural seed of calibration images (training uses 1, held-out evaluation 1001)
CALIB_SEED = 3003
#: default side of procedural calibration images (a model of another input size may ask for its own)
CALIB_SIZE = 256


class CalibrationImages:
    """``count`` RGB uint8 images from ``source``, read on access.

    Arguments:
        source: an image / SA-1B folder, or ``None`` for procedural images.
        count: how many images; a folder with fewer raises a one-line DataError.
        size: side of procedural images.

    Example:
        >>> imgs = CalibrationImages(None, 3, size=32)
        >>> len(imgs), imgs.describe()
        (3, 'procedural images (seed 3003, 32 px)')
        >>> CalibrationImages(None, 3).describe()
        'procedural images (seed 3003)'
    """

    def __init__(self, source: Path | str | None, count: int = DEFAULT_CALIB_IMAGES, *, size: int = CALIB_SIZE):
        if not 1 <= int(count) <= MAX_CALIB_IMAGES:
            raise UsageError(f"--calib-images {count}: choose 1..{MAX_CALIB_IMAGES} calibration images")
        self.count = int(count)
        self.source = None if source is None else Path(source)
        self.size = int(size)
        self.paths: list[Path] = []
        if self.source is not None:
            self.paths = _folder_images(self.source, self.count)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(f"calibration image {index} out of range ({self.count})")
        if self.source is None:
            from ..data.procedural import generate_sample, sample_rng

            return generate_sample(sample_rng(CALIB_SEED, index), self.size)[0]
        from ..data.images import read_image

        return read_image(self.paths[index])

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(self.count))

    def describe(self) -> str:
        """One phrase for manifests and notes."""
        if self.source is None:
            at = "" if self.size == CALIB_SIZE else f", {self.size} px"
            return f"procedural images (seed {CALIB_SEED}{at})"
        return f"{self.count} images from {self.source}"


def _folder_images(folder: Path, count: int) -> list[Path]:
    from ..data.images import list_images

    if not folder.is_dir():
        raise DataError(f"calibration data {folder}: not a folder; pass a folder of images (or an SA-1B folder)")
    try:
        paths = list_images(folder)
    except DataError:
        paths = []
    if len(paths) < count:
        raise DataError(
            f"calibration data {folder}: found {len(paths)} images, need {count} (--calib-images "
            f"{count}); add images or lower --calib-images"
        )
    if len(paths) == count:
        return paths
    order = np.random.default_rng(CALIB_SEED).permutation(len(paths))[:count]
    return [paths[i] for i in sorted(order)]


def calibration_images(source: Path | str | None, count: int = DEFAULT_CALIB_IMAGES, *,
                       size: int = CALIB_SIZE) -> CalibrationImages:
    """The calibration images of ``source`` (see :class:`CalibrationImages`).

    Illustration (not run as a doctest: it needs files or a model)::

        calibration_images("empty/", 8)
        # -> Traceback (most recent call last):
        # -> slimsam_edge.errors.DataError: calibration data empty: found 0 images, need 8 ...
    """
    return CalibrationImages(source, count, size=size)


class CalibrationFeeds:
    """A re-iterable of feed dicts for one graph (every ``iter()`` starts a new pass).

    Example:
        >>> feeds = CalibrationFeeds("g", lambda: iter([{"x": np.zeros(1)}]), 1)
        >>> [sorted(f) for f in feeds], [sorted(f) for f in feeds]
        ([['x']], [['x']])
    """

    def __init__(self, graph: str, make: Callable[[], Iterator[FeedDict]], count: int):
        self.graph, self._make, self.count = graph, make, int(count)

    def __iter__(self) -> Iterator[FeedDict]:
        return self._make()

    def __len__(self) -> int:
        return self.count


def encoder_feeds(images: Sequence[np.ndarray], *, image_size: int, pixel_mean: Sequence[float],
                  pixel_std: Sequence[float], resize: str = "sam") -> CalibrationFeeds:
    """``{"image": 1x3xSxS}`` per image, preprocessed like the runtime.

    Example:
        >>> f = encoder_feeds([np.zeros((8, 16, 3), np.uint8)], image_size=16, pixel_mean=(0, 0, 0),
        ...                   pixel_std=(1, 1, 1))
        >>> next(iter(f))["image"].shape
        (1, 3, 16, 16)
    """
    mean, std = tuple(pixel_mean), tuple(pixel_std)

    def make() -> Iterator[FeedDict]:
        for image in images:
            yield {"image": preprocess(image, image_size, mean, std, resize)[0]}

    return CalibrationFeeds("image_encoder", make, len(images))


def decoder_feeds(images: Sequence[np.ndarray], encoder: Any, *, image_size: int,
                  pixel_mean: Sequence[float], pixel_std: Sequence[float],
                  prompts_per_image: int = 2, seed: int = CALIB_SEED) -> CalibrationFeeds:
    """Low-res decoder feeds: the fp32 ``encoder`` runner's embedding + sampled prompts.

    Prompts alternate between one foreground point and one box (both give two prompt points,
    SAM's padding point included), at random positions drawn from ``seed``. Embeddings are
    computed once and kept for later passes.

    Illustration (not run as a doctest: it needs files or a model)::

        feeds = decoder_feeds(images, encoder_runner, image_size=256,
                              pixel_mean=spec.pixel_mean, pixel_std=spec.pixel_std)
        sorted(next(iter(feeds)))
        # -> ['has_mask_input', 'image_embeddings', 'mask_input', 'point_coords', 'point_labels']
    """
    from ..predictor import EdgePredictor

    # prompt encoding only: the decoder runner is never used, so none is given
    pred = EdgePredictor(encoder, None, image_size=image_size,  # type: ignore[arg-type]
                         pixel_mean=tuple(pixel_mean), pixel_std=tuple(pixel_std))
    cache: list[FeedDict] = []

    def compute() -> Iterator[FeedDict]:
        rng = np.random.default_rng(seed)
        for image in images:
            pred.set_image(image)
            h, w = image.shape[:2]
            for k in range(prompts_per_image):
                if k % 2 == 0:
                    pt = rng.uniform((0, 0), (w, h))[None]
                    feed = pred.prompt_feed(pt, np.ones(1))
                else:
                    x0, y0 = rng.uniform((0, 0), (w * 0.7, h * 0.7))
                    x1, y1 = rng.uniform((x0 + 0.1 * w, y0 + 0.1 * h), (w, h))
                    feed = pred.prompt_feed(box=np.array([x0, y0, x1, y1]))
                cache.append(feed)
                yield feed

    total = len(images) * prompts_per_image

    def make() -> Iterator[FeedDict]:
        if len(cache) == total:
            return iter(list(cache))
        cache.clear()  # an interrupted pass starts over
        return compute()

    return CalibrationFeeds("mask_decoder_lowres", make, total)
