"""Guards around reading and printing that the CLI and the apps share.

- :func:`require_regular_file`: refuse a FIFO, a device, a directory or a missing path *before*
  anything opens it (opening a FIFO for reading blocks until a writer comes: a hang).
- :func:`require_output_path`: refuse an output path that names a folder, or that lies under a
  regular file, before any work starts.
- :func:`native_stderr_silenced`: what native code (libpng, OpenCV, FFmpeg) writes straight to the
  stderr file descriptor goes to /dev/null while the block runs, so a refusal is one line, ours.
- :func:`json_dumps`: JSON that is always valid: NaN / Infinity become ``null``, with the reason.

Example:
    >>> json_dumps({"score": float("nan"), "ok": 1.5})
    '{"score": null, "ok": 1.5, "non_finite": {"score": "NaN"}}'
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from .errors import UsageError, debug_enabled

#: key added to a JSON object that had non-finite numbers: ``{path: "NaN" | "Infinity" | "-Infinity"}``
NON_FINITE_KEY = "non_finite"


def require_regular_file(path: Path | str, what: str, *, error: type[Exception] = UsageError) -> Path:
    """``path`` if it is a regular file (symlinks followed); else ``error`` in one line.

    Only ``os.stat`` runs: nothing is opened, so a FIFO or a character device cannot block.

    Example:
        >>> import tempfile
        >>> require_regular_file(tempfile.gettempdir(), "image")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: image ... is a folder; pass a file
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{what} {path}: file not found; check the path") from None
    except NotADirectoryError:
        raise error(f"{what} {path}: a part of the path is a file, not a folder; check the path") from None
    except OSError as err:
        raise error(f"{what} {path}: {err.strerror or err}; check the path") from None
    if stat.S_ISDIR(mode):
        raise error(f"{what} {path} is a folder; pass a file")
    if not stat.S_ISREG(mode):
        raise error(f"{what} {path} is not a regular file (a pipe, socket or device); pass a file")
    return path


def require_output_path(path: Path | str, flag: str, *, folder: bool = False) -> Path:
    """``path`` if an output can be written there: its nearest existing ancestor is a folder, and
    it is not itself an existing folder (a file output) / an existing non-folder (``folder=True``).

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = f.write_text("x")
        >>> require_output_path(f / "mask.png", "--out")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: --out .../a.txt/mask.png cannot be written: .../a.txt is a file, not a folder; pick a path in a folder
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        is_dir = path.is_dir()
        if folder and not is_dir:
            raise UsageError(f"{flag} {path} exists and is not a folder; pick a folder path")
        if not folder and is_dir:
            raise UsageError(f"{flag} {path} is a folder, not a file; pick another path or move the folder away")
        return path
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {path} cannot be written: {parent} is a file, not a folder; "
                                 "pick a path in a folder")
            break
    return path


_silence_lock = threading.Lock()
_silence_depth = 0
_saved_fd: int | None = None


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to the stderr file descriptor to /dev/null while the block
    runs (libpng's and OpenCV's warnings on a bad image, FFmpeg's on a stream that does not open).

    Python's own ``sys.stderr`` writes go to the same descriptor, so the block should only wrap
    the native call. Nested and concurrent blocks (threads) share one redirection, restored when
    the last one leaves. ``--debug`` (``SLIMSAM_EDGE_DEBUG=1``) keeps the native lines.

    Example:
        >>> with native_stderr_silenced():
        ...     _ = os.write(2, b"libpng warning: not shown\\n")
    """
    global _silence_depth, _saved_fd
    if debug_enabled():
        yield
        return
    with _silence_lock:
        if _silence_depth == 0:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            _saved_fd = os.dup(2)
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
        _silence_depth += 1
    try:
        yield
    finally:
        with _silence_lock:
            _silence_depth -= 1
            if _silence_depth == 0 and _saved_fd is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None


def finite_json(data: Any) -> tuple[Any, dict[str, str]]:
    """A copy of ``data`` with every NaN / ±Infinity float replaced by ``None``, and the reasons:
    ``{"key/0/inner": "NaN"}``. Numpy scalars and arrays become Python numbers and lists.

    Example:
        >>> finite_json([1.0, float("inf"), {"a": float("-inf")}])
        ([1.0, None, {'a': None}], {'1': 'Infinity', '2/a': '-Infinity'})
    """
    reasons: dict[str, str] = {}

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
            return value
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            reasons[where or "."] = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            return None
        if isinstance(value, dict):
            return {k: walk(v, f"{where}/{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{where}/{i}" if where else str(i)) for i, v in enumerate(value)]
        tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
        if callable(tolist):
            return walk(tolist(), where)
        return value

    return walk(data, ""), reasons


def json_dumps(data: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes NaN or Infinity (not JSON): each becomes ``null`` and a
    top-level object gets :data:`NON_FINITE_KEY` saying which values were not finite.

    Example:
        >>> json_dumps([float("nan")])
        '[null]'
    """
    clean, reasons = finite_json(data)
    if reasons and isinstance(clean, dict):
        clean = {**clean, NON_FINITE_KEY: reasons}
    kwargs.setdefault("default", str)
    return json.dumps(clean, allow_nan=False, **kwargs)
