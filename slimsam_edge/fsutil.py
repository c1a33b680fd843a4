"""Atomic file writing and hashing: a crash never leaves half a file that looks whole.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "out.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "out.txt").read_text()
    'hello'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def default_mode(kind: str = "file") -> int:
    """Permissions a plain ``open()`` / ``mkdir()`` would give under the current umask.

    mkstemp / mkdtemp create private (0600 / 0700) temporaries; artifacts renamed into place get
    these ordinary modes instead, so a camera app running as another user can read a bundle.

    Example:
        >>> oct(default_mode("file") | 0o022) in ("0o666", "0o644", "0o646", "0o664")
        True
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if kind == "dir" else 0o666) & ~mask


@contextlib.contextmanager
def atomic_path(dest: Path | str, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` only if the block succeeds.

    The temporary file lives in the same directory (same filesystem) so the final
    ``os.replace`` is atomic. On any exception the temporary file is removed and ``dest`` is left
    as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{dest.name}.", suffix=suffix if suffix is not None else ".tmp" + dest.suffix,
        dir=dest.parent,
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_mode("file"))
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary directory next to ``dest``; swap it into place when the block succeeds.

    An existing ``dest`` is replaced only after the new content is complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, default_mode("dir"))
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(dest: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically and return ``dest``."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text_atomic(dest: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` atomically and return ``dest``."""
    return write_bytes_atomic(dest, text.encode("utf-8"))


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
