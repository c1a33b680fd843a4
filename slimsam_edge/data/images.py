"""Read images as RGB arrays and list the images of a folder.

Reading goes through ``np.fromfile`` + ``cv2.imdecode`` so paths with non-ASCII characters work on
every platform. The EXIF orientation of JPEG files is applied; grayscale images are expanded to
three channels and an alpha channel is dropped.

Example:
    >>> import tempfile, pathlib, numpy as np, cv2
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = cv2.imwrite(str(d / "a.png"), np.zeros((4, 6, 3), np.uint8))
    >>> read_image(d / "a.png").shape
    (4, 6, 3)
    >>> [p.name for p in list_images(d)]
    ['a.png']
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError, ImageError

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def decode_image(data: bytes | np.ndarray, *, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (jpg/png/bmp/webp) into an ``HxWx3`` uint8 RGB array.

    EXIF orientation is applied, grayscale becomes RGB, alpha is dropped, 16-bit data is scaled
    to 8 bits.

    Example:
        >>> import numpy as np, cv2
        >>> ok, buf = cv2.imencode(".png", np.full((2, 3), 200, np.uint8))
        >>> decode_image(buf.tobytes())[0, 0].tolist()
        [200, 200, 200]
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    image = None
    if buf.size:
        try:
            # IMREAD_COLOR: 3 channels, orientation applied, alpha dropped, depth reduced to 8 bit.
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        except cv2.error as err:  # corrupt data can make a codec raise instead of returning None
            raise ImageError(
                f"cannot decode image {name}: {str(err).strip().splitlines()[-1]}; "
                "is it a jpg/png/bmp/webp file?"
            ) from err
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        what = "the file is empty" if not buf.size else "the data is not a supported image"
        raise ImageError(f"cannot decode image {name}: {what}; is it a jpg/png/bmp/webp file?")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file into an ``HxWx3`` uint8 RGB array.

    Raises :class:`~slimsam_edge.errors.ImageError` when the file is missing or not decodable.

    Illustration (not run as a doctest: it needs files or a model)::

        read_image("photo.jpg").dtype
        # -> dtype('uint8')
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError as err:
        raise ImageError(f"cannot read image {path}: file not found; check the path") from err
    except IsADirectoryError as err:
        raise ImageError(f"cannot read image {path}: it is a directory; pass an image file") from err
    except OSError as err:
        raise ImageError(f"cannot read image {path}: {err.strerror or err}; check the file") from err
    return decode_image(data, name=str(path))


def is_image_file(path: Path | str) -> bool:
    """True when ``path`` has an image suffix (case-insensitive) and is not a hidden/temp file.

    Example:
        >>> is_image_file("a/B.JPG"), is_image_file("a/.b.png.tmp.png"), is_image_file("c.txt")
        (True, False, False)
    """
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path | str, recursive: bool = True) -> list[Path]:
    """List the image files (jpg/jpeg/png/bmp/webp) under ``folder``, sorted by relative path.

    Hidden files and folders (name starting with ".") are ignored, so half-written temporary
    files from atomic writes never show up. Raises :class:`~slimsam_edge.errors.DataError` if the
    folder is missing or holds no image.

    Illustration (not run as a doctest: it needs files or a model)::

        list_images("photos/")
        # -> [PosixPath('photos/a.jpg'), PosixPath('photos/sub/b.png')]
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder {folder} does not exist; check the path")
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; pass a folder of jpg/png/bmp/webp images")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for path in candidates:
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts[:-1]):
            continue
        if is_image_file(path) and path.is_file():
            found.append(path)
    if not found:
        where = "" if recursive else " (subfolders not searched)"
        raise DataError(f"no images (jpg/png/bmp/webp) found in {folder}{where}; check the path")
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())
