"""Label-free access to a folder of images (distillation inputs, calibration sets).

Example:
    >>> import tempfile, pathlib, numpy as np, cv2
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = cv2.imwrite(str(d / "a.png"), np.zeros((4, 6, 3), np.uint8))
    >>> folder = ImageFolder(d)
    >>> len(folder), folder[0].shape
    (1, (4, 6, 3))
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..errors import ImageError
from .images import list_images, read_image
from .records import SkipReport
from .splits import select_split


class ImageFolder:
    """The images under ``folder`` (sorted), read as ``HxWx3`` uint8 RGB arrays.

    Arguments:
        folder: the folder (searched recursively unless ``recursive=False``).
        limit: keep the first ``limit`` images (of the split).
        split, seed, fractions: select a deterministic subset (see :mod:`slimsam_edge.data.splits`).

    Indexing raises :class:`~slimsam_edge.errors.ImageError` on an undecodable image; iterating
    skips such images, counts them in ``.skipped`` and warns once.

    Illustration (not run as a doctest: it needs files or a model)::

        folder = ImageFolder("calib/", limit=32)
        for image in folder:
            feed(image)
    """

    layout = "images"

    def __init__(
        self,
        folder: Path | str,
        *,
        recursive: bool = True,
        limit: int | None = None,
        split: str | None = None,
        seed: int = 0,
        fractions: Mapping[str, float] | None = None,
    ):
        self.root = Path(folder)
        paths = list_images(self.root, recursive=recursive)
        paths = select_split(paths, split, seed=seed, fractions=fractions)
        self.paths: list[Path] = paths if limit is None else paths[: max(0, int(limit))]
        self.report = SkipReport(strict=False, source=str(self.root))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return read_image(self.paths[index])

    @property
    def skipped(self) -> dict[str, int]:
        """Skip counts per reason, for the latest pass."""
        return dict(self.report.counts)

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, image in self.iter_with_paths():
            yield image

    def iter_with_paths(self) -> Iterator[tuple[Path, np.ndarray]]:
        """Yield ``(path, image)`` pairs, skipping undecodable images like ``iter()``.

        Illustration (not run as a doctest: it needs files or a model)::

            for path, image in ImageFolder("photos/").iter_with_paths():
                print(path.name, image.shape)
        """
        self.report.reset()
        for path in self.paths:
            try:
                yield path, read_image(path)
            except ImageError as err:
                self.report.skip("bad_image", path, str(err).split(": ", 1)[-1])
