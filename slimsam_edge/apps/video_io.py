"""Video sources and sinks for camera and video apps (numpy + cv2; torch-free).

:func:`open_source` turns what a user types (``0``, ``clip.mp4``, ``frames/``, ``"frames/*.png"``,
``rtsp://camera/stream``) into a :class:`FrameSource`: a context manager and iterable of
``(index, frame)`` pairs, each frame an ``H x W x 3`` uint8 RGB array. A source that cannot be opened
or read raises a one-line :class:`~slimsam_edge.errors.DataError` naming it; frames that change size
mid-stream raise :class:`~slimsam_edge.errors.ImageError`. The kinds of source are small classes
in :data:`SOURCES`, tried in order.

:class:`VideoWriter` (mp4) and :class:`JsonlWriter` write to a temporary name beside the target and
rename it on :meth:`close`; :meth:`abort` removes it. Used as context managers they close on
success *and* on ``KeyboardInterrupt`` (Ctrl-C keeps the frames so far, as a valid playable file)
and abort on any other exception. An output that cannot be written is refused with a one-line
:class:`~slimsam_edge.errors.UsageError` when the writer is made, before any frame is processed.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     _ = cv2.imwrite(str(d / f"{i:03d}.png"), np.full((24, 32, 3), 40 * i, np.uint8))
    >>> with open_source(str(d)) as src:
    ...     frames = [(i, f.shape, int(f[0, 0, 0])) for i, f in src]
    >>> frames
    [(0, (24, 32, 3), 0), (1, (24, 32, 3), 40), (2, (24, 32, 3), 80)]
    >>> with VideoWriter(d / "out.mp4", fps=10) as video:
    ...     for i in range(3):
    ...         video.write(np.zeros((24, 32, 3), np.uint8))
    >>> with open_source(str(d / "out.mp4")) as src:
    ...     len(list(src)), src.fps
    (3, 10.0)
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np

from ..errors import DataError, ImageError, UsageError
from ..fsutil import default_mode
from ..safeio import native_stderr_silenced

#: a stream URL: a scheme OpenCV/FFmpeg understands (rtsp://, http://, udp://, ...)
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB_CHARS = set("*?[")


# ---------------------------------------------------------------------------------------- sources
class FrameSource:
    """Frames of one source: ``with source: for index, rgb in source: ...``.

    Attributes:
        name: what the user passed, for messages.
        fps: frames per second the source declares, or ``None`` (a folder of images, a camera
            that does not say).
        frame_count: how many frames it holds when known (a video file, images), else ``None``.

    Subclasses implement :meth:`_open`, :meth:`_frames` (RGB uint8 arrays, in order) and
    :meth:`_close`; this class numbers the frames and checks that their size does not change.
    """

    #: how this kind of source is described in messages ("video file", "camera", ...)
    kind = "source"
    #: frames arrive in real time (a camera, a stream), not as fast as they can be read (a file)
    live = False

    def __init__(self, spec: str):
        self.name = spec
        self.fps: float | None = None
        self.frame_count: int | None = None
        self._opened = False

    @classmethod
    def matches(cls, spec: str) -> bool:  # pragma: no cover - each subclass defines it
        raise NotImplementedError

    def open(self) -> "FrameSource":
        if not self._opened:
            self._open()
            self._opened = True
        return self

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._close()

    def __enter__(self) -> "FrameSource":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        self.open()
        shape: tuple[int, ...] | None = None
        for index, frame in enumerate(self._frames()):
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise ImageError(
                    f"{self.kind} {self.name}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, earlier frames "
                    f"{shape[1]}x{shape[0]}; all frames of a video must have one size (resize them first)")
            yield index, frame

    # ---- subclass hooks
    def _open(self) -> None:
        pass

    def _frames(self) -> Iterator[np.ndarray]:  # pragma: no cover - each subclass defines it
        raise NotImplementedError

    def _close(self) -> None:
        pass


class _CaptureSource(FrameSource):
    """A source read through ``cv2.VideoCapture`` (video file, camera, stream URL)."""

    #: whether the source has a known number of frames (a file; not a camera or a stream)
    finite = False

    def _target(self) -> Any:
        return self.name

    def _open(self) -> None:
        with native_stderr_silenced():
            self._cap = cv2.VideoCapture(self._target())
        if not self._cap.isOpened():
            self._cap.release()
            raise DataError(self.cannot_open.format(name=self.name))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else None
        if self.finite:
            count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self.frame_count = count if count > 0 else None

    #: the one-line message when ``cv2.VideoCapture`` cannot open it (``{name}``: the source)
    cannot_open = "{name} cannot be opened"

    def _frames(self) -> Iterator[np.ndarray]:
        index = 0
        while True:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                if index == 0:
                    raise DataError(f"{self.kind} {self.name}: opened, but no frame could be read from it; "
                                    "check that it plays (e.g. with ffplay or VLC)")
                return
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            yield np.ascontiguousarray(bgr[..., 2::-1])
            index += 1

    def _close(self) -> None:
        self._cap.release()


class CameraSource(_CaptureSource):
    """A camera by index: ``"0"`` is the first camera."""

    kind = "camera"
    live = True

    @classmethod
    def matches(cls, spec: str) -> bool:
        return spec.isdigit() and len(spec) <= 4  # an index (+ OpenCV's API offset, e.g. 200); not 5000 digits

    def _target(self) -> Any:
        return int(self.name)

    cannot_open = ("camera {name} cannot be opened (no such device, or it is in use); "
                   "check the index (0 is the first camera) and that no other program holds it")


class StreamSource(_CaptureSource):
    """A stream URL OpenCV opens (``rtsp://``, ``http://``, ``udp://``, ...)."""

    kind = "stream"
    live = True

    @classmethod
    def matches(cls, spec: str) -> bool:
        return bool(_URL.match(spec))

    cannot_open = ("stream {name} cannot be opened; check the URL, that the server is up and reachable, "
                   "and that it plays (e.g. with ffplay or VLC)")


class VideoFileSource(_CaptureSource):
    """A video file OpenCV decodes (mp4, avi, mkv, mov, ...)."""

    kind = "video file"
    finite = True

    @classmethod
    def matches(cls, spec: str) -> bool:
        return Path(spec).is_file()

    cannot_open = ("video file {name} cannot be opened (not a video OpenCV can decode, or a damaged file); "
                   "check that it plays, or convert it to mp4 (H.264)")


class ImagesSource(FrameSource):
    """Image files as frames, in name order: a folder, a glob pattern (``"frames/*.png"``) or one image."""

    kind = "frames"

    @classmethod
    def matches(cls, spec: str) -> bool:
        from ..data.images import is_image_file

        path = Path(spec)
        return bool(_GLOB_CHARS & set(spec)) or path.is_dir() or (path.is_file() and is_image_file(path))

    def _open(self) -> None:
        from ..data.images import is_image_file, list_images

        path = Path(self.name)
        if path.is_dir():
            try:
                self.files = list_images(path, recursive=False)
            except DataError as err:
                raise DataError(f"frames {self.name}: {err}") from None
        elif path.is_file():
            self.files = [path]
        else:
            self.files = sorted(Path(p) for p in glob.glob(self.name) if is_image_file(p) and Path(p).is_file())
            if not self.files:
                raise DataError(f"frames {self.name}: the pattern matches no image (jpg/png/bmp/webp); "
                                "check it, and quote it so the shell does not expand it")
        self.frame_count = len(self.files)

    def _frames(self) -> Iterator[np.ndarray]:
        from ..data.images import read_image

        for path in self.files:
            yield read_image(path)


#: the kinds of source, tried in this order by :func:`open_source`
SOURCES: tuple[type[FrameSource], ...] = (CameraSource, StreamSource, ImagesSource, VideoFileSource)


def open_source(spec: str) -> FrameSource:
    """The :class:`FrameSource` for ``spec``, opened: a camera index (``"0"``), a stream URL, a folder or
    glob of images (or one image), or a video file.

    Raises:
        DataError: nothing matches ``spec``, or the source cannot be opened (one line, naming it).

    Example:
        >>> open_source("no/such/clip.mp4")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.DataError: source no/such/clip.mp4 not found: pass a video file, a folder or glob of images, a camera index (0) or a stream URL (rtsp://...)
    """
    spec = str(spec)
    for kind in SOURCES:
        if kind.matches(spec):
            return kind(spec).open()
    raise DataError(f"source {spec} not found: pass a video file, a folder or glob of images, a camera index (0) "
                    "or a stream URL (rtsp://...)")


def paced(frames: Iterable[Any], fps: float, *, clock: Callable[[], float] = time.perf_counter,
          sleep: Callable[[float], None] = time.sleep) -> Iterator[Any]:
    """Yield ``frames`` no faster than ``fps`` per second, as a camera would deliver them (a file
    read in real-time mode then drops what a live camera at that rate would).

    Example:
        >>> now = [0.0]
        >>> list(paced(range(3), 10, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)))
        [0, 1, 2]
        >>> round(now[0], 3)
        0.2
    """
    if not fps or fps <= 0:
        raise UsageError(f"fps must be > 0, got {fps!r}")
    start = clock()
    for k, item in enumerate(frames):
        wait = start + k / fps - clock()
        if wait > 0:
            sleep(wait)
        yield item


# ------------------------------------------------------------------------------------------ sinks
class _AtomicOutput:
    """An output written to a hidden temporary file beside ``path`` and renamed onto it on close.

    Making one creates the temporary file, so an output that cannot be written is refused at once
    (one-line UsageError), before any work.
    """

    def __init__(self, path: Path | str, flag: str = "--out"):
        self.path = Path(path)
        self.flag = flag
        if self.path.is_dir():
            raise UsageError(f"{flag} {self.path} is a folder; pass a file name")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp" + self.path.suffix,
                                        dir=self.path.parent)
        except OSError as err:
            why = ("a part of its folder path is a file" if isinstance(err, (FileExistsError, NotADirectoryError))
                   else err.strerror or str(err))
            raise UsageError(f"{flag} {self.path} cannot be written ({why}); choose a writable folder") from None
        os.close(fd)
        self.tmp = Path(name)
        self.closed = False
        self._kept = False
        #: records written so far (frames, lines)
        self.count = 0

    #: whether a file without any record is worth keeping (an empty JSONL is; an empty mp4 is no video)
    keep_empty = True

    def close(self) -> Path | None:
        """Finish the file and rename it onto the target; returns the target (``None`` when nothing
        was written and an empty file would not be valid: then the target is left as it was)."""
        if not self.closed:
            if not self.count and not self.keep_empty:
                self.abort()
            else:
                self.closed = True
                self._finish()
                os.chmod(self.tmp, default_mode("file"))
                os.replace(self.tmp, self.path)
                self._kept = True
        return self.path if self._kept else None

    def abort(self) -> None:
        """Drop the temporary file; the target is left as it was."""
        if not self.closed:
            self.closed = True
            try:
                self._finish()
            finally:
                self.tmp.unlink(missing_ok=True)

    def _finish(self) -> None:
        pass

    def __enter__(self) -> "_AtomicOutput":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()


class VideoWriter(_AtomicOutput):
    """An mp4 video (MPEG-4 'mp4v' through cv2.VideoWriter) of RGB frames, atomically renamed on close.

    The frame size is taken from the first frame; every later frame must have it. Closing after
    any number of frames (also after Ctrl-C) leaves a valid, playable file.

    Example:
        >>> VideoWriter("/proc/no/out.mp4", fps=25)
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: --out /proc/no/out.mp4 cannot be written (No such file or directory); choose a writable folder
    """

    FOURCC = "mp4v"
    keep_empty = False

    def __init__(self, path: Path | str, fps: float, flag: str = "--out"):
        if not (fps and 0 < float(fps) < 1000):
            raise UsageError(f"fps must be in (0, 1000), got {fps!r}")
        if Path(path).suffix.lower() != ".mp4":
            raise UsageError(f"{flag} {path}: must end in .mp4")
        super().__init__(path, flag)
        self.fps = float(fps)
        self._writer: Any = None
        self.size: tuple[int, int] | None = None

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one ``H x W x 3`` uint8 RGB frame."""
        h, w = frame_rgb.shape[:2]
        if self._writer is None:
            self.size = (w, h)
            self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.FOURCC), self.fps, (w, h))
            if not self._writer.isOpened():
                raise UsageError(f"{self.flag} {self.path}: OpenCV cannot write mp4 video here "
                                 f"(codec {self.FOURCC!r} unavailable in this OpenCV build)")
        elif (w, h) != self.size:
            raise ImageError(f"{self.flag} {self.path}: frame {self.count} is {w}x{h}, earlier frames "
                             f"{self.size[0]}x{self.size[1]}; a video keeps one size")
        self._writer.write(np.ascontiguousarray(frame_rgb[..., ::-1]))
        self.count += 1

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class JsonlWriter(_AtomicOutput):
    """One JSON object per line, flushed per line, atomically renamed on close.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "masks.jsonl"
        >>> with JsonlWriter(path) as out:
        ...     out.write({"frame": 0, "objects": []})
        >>> path.read_text()
        '{"frame": 0, "objects": []}\\n'
    """


    def __init__(self, path: Path | str, flag: str = "--masks"):
        super().__init__(path, flag)
        self._file = open(self.tmp, "w", encoding="utf-8")

    def write(self, record: Any) -> None:
        """Append ``record`` as one line of JSON."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.count += 1

    def _finish(self) -> None:
        self._file.close()
