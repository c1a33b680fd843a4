"""Read images as RGB arrays and list the images of a folder.

Reading goes through ``np.fromfile`` + ``cv2.imdecode`` so paths with non-ASCII characters work on
every platform. The EXIF orientation of JPEG files is applied; grayscale images are expanded to
three channels and an alpha channel is dropped.

Bounded: only regular files up to :data:`~slimsam_edge.limits.MAX_IMAGE_FILE_BYTES` are read, and
only PNG, JPEG, BMP, WebP and TIFF data are decoded, each after its size is read from the header
(:func:`image_header`) and checked against the pixel budget
(:func:`~slimsam_edge.limits.check_image_size`): a 50 KB PNG that claims 20000x20000 is refused
before a byte of it is decoded.

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

import os
import stat
import struct
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError, ImageError
from ..limits import MAX_IMAGE_FILE_BYTES, check_image_size

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: the formats :func:`decode_image` decodes (each has a header :func:`image_header` reads)
DECODED_FORMATS = "jpg/png/bmp/webp/tiff"
#: JPEG segments read looking for the frame header (real files have fewer than 20 before it)
_JPEG_MAX_SEGMENTS = 4096


def image_header(data: bytes | np.ndarray) -> tuple[str, int, int] | None:
    """``(format, height, width)`` read from the first bytes of encoded image data, without
    decoding; ``None`` when the data is none of PNG, JPEG, BMP, WebP, TIFF or its header is cut off.

    Example:
        >>> import numpy as np, cv2
        >>> ok, buf = cv2.imencode(".png", np.zeros((3, 5), np.uint8))
        >>> image_header(buf.tobytes())
        ('png', 3, 5)
        >>> image_header(cv2.imencode(".jpg", np.zeros((7, 2, 3), np.uint8))[1]), image_header(b"GIF89a")
        (('jpeg', 7, 2), None)
    """
    # a view, not a copy: the data may be a 1 GB file
    b = memoryview(np.ascontiguousarray(data).reshape(-1) if isinstance(data, np.ndarray) else data).cast("B")
    try:
        for magic, reader in _HEADERS:
            if b[:len(magic)] == magic:
                return reader(b)
    except (struct.error, IndexError):  # cut off inside the header
        return None
    return None


def _png(b: bytes) -> tuple[str, int, int] | None:
    if b[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", b[16:24])
    return "png", h, w


def _jpeg(b: bytes) -> tuple[str, int, int] | None:
    i = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        if b[i] != 0xFF:
            return None
        while b[i] == 0xFF:  # fill bytes
            i += 1
        marker = b[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # TEM, RSTn, SOI: no length
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", b[i:i + 2])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            h, w = struct.unpack(">HH", b[i + 3:i + 7])
            return "jpeg", h, w
        if length < 2:
            return None
        i += length
    return None


def _bmp(b: bytes) -> tuple[str, int, int] | None:
    (size,) = struct.unpack("<I", b[14:18])
    if size == 12:  # OS/2 core header: 16-bit sizes
        w, h = struct.unpack("<HH", b[18:22])
    else:
        w, h = struct.unpack("<ii", b[18:26])
    return "bmp", abs(h), abs(w)  # a negative height is a top-down bitmap


def _webp(b: bytes) -> tuple[str, int, int] | None:
    if b[8:12] != b"WEBP":
        return None
    kind = b[12:16]
    if kind == b"VP8 " and b[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", b[26:30])
        return "webp", h & 0x3FFF, w & 0x3FFF
    if kind == b"VP8L" and b[20] == 0x2F:
        (bits,) = struct.unpack("<I", b[21:25])
        return "webp", ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if kind == b"VP8X":
        w = int.from_bytes(b[24:27], "little") + 1
        h = int.from_bytes(b[27:30], "little") + 1
        return "webp", h, w
    return None


#: TIFF tags read: ImageWidth, ImageLength, TileWidth, TileLength
_TIFF_TAGS = {256: "w", 257: "h", 322: "tw", 323: "th"}
#: TIFF field types that hold the sizes: SHORT, LONG, LONG8
_TIFF_UINT = {3: "H", 4: "I", 16: "Q"}


def _tiff(b: bytes) -> tuple[str, int, int] | None:
    end = "<" if b[:2] == b"II" else ">"
    (version,) = struct.unpack(end + "H", b[2:4])
    big = version == 43
    if big:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        (off,) = struct.unpack(end + "Q", b[8:16])
        (n,) = struct.unpack(end + "Q", b[off:off + 8])
        first, step, head = off + 8, 20, end + "HHQ"
    else:
        (off,) = struct.unpack(end + "I", b[4:8])
        (n,) = struct.unpack(end + "H", b[off:off + 2])
        first, step, head = off + 2, 12, end + "HHI"
    found: dict[str, int] = {}
    for k in range(min(int(n), 4096)):
        at = first + k * step
        tag, kind, _count = struct.unpack(head, b[at:at + struct.calcsize(head)])
        if tag in _TIFF_TAGS and kind in _TIFF_UINT:
            value_at = at + struct.calcsize(head)
            (found[_TIFF_TAGS[tag]],) = struct.unpack(end + _TIFF_UINT[kind], b[value_at:value_at + struct.calcsize(_TIFF_UINT[kind])])
    if "w" not in found or "h" not in found:
        return None
    # a tile is allocated whole: a tiny image with huge tiles is as big as its tiles
    h, w = max(found["h"], found.get("th", 0)), max(found["w"], found.get("tw", 0))
    return "tiff", h, w


_HEADERS = (
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"\xff\xd8", _jpeg),
    (b"BM", _bmp),
    (b"RIFF", _webp),
    (b"II*\x00", _tiff), (b"MM\x00*", _tiff), (b"II+\x00", _tiff), (b"MM\x00+", _tiff),
)


def decode_image(data: bytes | np.ndarray, *, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (jpg/png/bmp/webp/tiff) into an ``HxWx3`` uint8 RGB array.

    EXIF orientation is applied, grayscale becomes RGB, alpha is dropped, 16-bit data is scaled
    to 8 bits. The size in the header is checked against the pixel budget first
    (:func:`~slimsam_edge.limits.check_image_size`); data of another format is refused undecoded.

    Example:
        >>> import numpy as np, cv2
        >>> ok, buf = cv2.imencode(".png", np.full((2, 3), 200, np.uint8))
        >>> decode_image(buf.tobytes())[0, 0].tolist()
        [200, 200, 200]
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    image = None
    if buf.size:
        header = image_header(buf)
        if header is None:
            raise ImageError(f"cannot decode image {name}: not a {DECODED_FORMATS} file (or its header is cut "
                             "off); save it as png or jpg")
        check_image_size(header[1], header[2], name)
        try:
            # IMREAD_COLOR: 3 channels, orientation applied, alpha dropped, depth reduced to 8 bit.
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        except cv2.error as err:  # corrupt data can make a codec raise instead of returning None
            raise ImageError(
                f"cannot decode image {name}: {str(err).strip().splitlines()[-1]}; "
                f"is it a {DECODED_FORMATS} file?"
            ) from err
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        what = "the file is empty" if not buf.size else "the data is not a supported image"
        raise ImageError(f"cannot decode image {name}: {what}; is it a {DECODED_FORMATS} file?")
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
        # non-blocking: a FIFO or device opens without waiting for a writer, then is refused
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as err:
        raise ImageError(f"cannot read image {path}: file not found; check the path") from err
    except IsADirectoryError as err:
        raise ImageError(f"cannot read image {path}: it is a directory; pass an image file") from err
    except OSError as err:
        raise ImageError(f"cannot read image {path}: {err.strerror or err}; check the file") from err
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"cannot read image {path}: it is a directory; pass an image file")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"cannot read image {path}: not a regular file (a pipe or device); "
                             "save the image to a file and pass that")
        if info.st_size > MAX_IMAGE_FILE_BYTES:
            raise ImageError(f"cannot read image {path}: the file is {info.st_size / 2**20:.0f} MiB, more than "
                             f"the {MAX_IMAGE_FILE_BYTES / 2**20:.0f} MiB slimsam-edge reads "
                             "(limits.MAX_IMAGE_FILE_BYTES); downscale or compress it first")
        try:
            data = np.fromfile(f, dtype=np.uint8)
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
