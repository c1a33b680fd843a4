"""Images for compression: procedural (default, labelled) or a folder (label-free).

Every image is delivered at the model's input size: resized so the longest side fits, padded
bottom/right with the pixel mean (zero after normalisation), like SAM's own preprocessing.

Example:
    >>> src = ImageSource.procedural(count=8, size=64)
    >>> len(src), src.images([0, 9])[1].shape, src.has_labels
    (8, (64, 64, 3), True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError

#: procedural seed of the distillation images (held-out evaluation uses 1001)
DEFAULT_DATA_SEED = 2
#: procedural images are kept in memory after their first use while the set fits in this many bytes
MEMO_BYTES = 2 << 30


class ImageSource:
    """Indexable images (index taken modulo the count); use the constructors below."""

    def __init__(self, kind: str, size: int, count: int, seed: int = DEFAULT_DATA_SEED,
                 folder: Path | None = None, pixel_mean: Sequence[float] = (123.675, 116.28, 103.53)):
        self.kind, self.size, self.count, self.seed = kind, int(size), int(count), int(seed)
        self.folder, self.pixel_mean = folder, tuple(pixel_mean)
        self._paths: list[Path] = []
        self._memo: dict[int, np.ndarray] = {}
        if kind == "folder":
            from ..data.images import list_images

            self._paths = list_images(folder)  # DataError when missing / empty
            self.count = min(self.count, len(self._paths)) if count > 0 else len(self._paths)
        if self.count < 1:
            raise DataError("no images to compress with; pass --data DIR with jpg/png images")

    @classmethod
    def procedural(cls, count: int = 1000, size: int = 256, seed: int = DEFAULT_DATA_SEED) -> "ImageSource":
        """Procedural images ``0..count-1`` of ``seed`` (must differ from the eval seed 1001)."""
        if seed == 1001:
            raise DataError("procedural seed 1001 is the held-out evaluation set; pick another")
        return cls("procedural", size, count, seed)

    @classmethod
    def from_folder(cls, folder: Path | str, size: int, limit: int = 0) -> "ImageSource":
        """The images under ``folder`` (sorted), at most ``limit`` of them (0: all)."""
        return cls("folder", size, limit, folder=Path(folder))

    @property
    def has_labels(self) -> bool:
        return self.kind == "procedural"

    def __len__(self) -> int:
        return self.count

    def describe(self) -> dict:
        return {"kind": self.kind, "count": self.count, "seed": self.seed,
                "folder": str(self.folder) if self.folder else None, "size": self.size}

    def samples(self, indices: Sequence[int]) -> list:
        """Labelled procedural samples (``Sample`` records) for Taylor importance."""
        from ..data.procedural import procedural_sample

        if not self.has_labels:
            raise DataError("this importance needs labelled images; use procedural data or disturbed-taylor")
        return [procedural_sample(self.seed, int(i) % self.count, self.size) for i in indices]

    def images(self, indices: Sequence[int]) -> list[np.ndarray]:
        """``size x size x 3`` uint8 RGB images for ``indices`` (modulo the count)."""
        if self.kind == "procedural":
            return [self._procedural_image(int(i) % self.count) for i in indices]
        from ..data.images import read_image

        return [self._fit(read_image(self._paths[int(i) % self.count])) for i in indices]

    def _procedural_image(self, i: int) -> np.ndarray:
        """Image ``i``, generated once and kept while the whole set fits :data:`MEMO_BYTES`: distillation
        revisits each image many times, and generating one costs ~30 ms (256 px), far more than a
        GPU step needs per image."""
        image = self._memo.get(i)
        if image is None:
            image = self.samples([i])[0].image
            if self.count * image.nbytes <= MEMO_BYTES:
                self._memo[i] = image
        return image

    def _fit(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        scale = self.size / max(h, w)
        nh, nw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
        out = np.empty((self.size, self.size, 3), np.uint8)
        out[:] = np.round(np.array(self.pixel_mean)).astype(np.uint8)
        out[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        return out
