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
import errno
import fcntl
import hashlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator


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


#: test hook (docs/reliability.md): ``SLIMSAM_EDGE_KILL_AT=<file name>[:<n>]`` makes this process
#: SIGKILL itself when the n-th (default: first) atomic write of a file or folder of that name is
#: complete but not yet renamed into place — a crash at the worst moment, on cue, for tests.
KILL_AT_ENV = "SLIMSAM_EDGE_KILL_AT"
_writes_seen: dict[str, int] = {}


def _kill_point(dest: Path) -> None:
    """SIGKILL this process here when :data:`KILL_AT_ENV` names this write (a no-op otherwise)."""
    cue = os.environ.get(KILL_AT_ENV)
    if not cue:
        return
    name, _, nth = cue.partition(":")
    if name == dest.name:
        _writes_seen[name] = _writes_seen.get(name, 0) + 1
        if _writes_seen[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def _lock(path: Path) -> int | None:
    """An fd holding an exclusive ``flock`` on ``path`` (its writer is alive while it is held; the
    kernel drops it when the process dies), or None when ``path`` is gone or is not ours to lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if path.is_dir() else 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
            raise OSError("replaced")
    except OSError:  # locked by a live writer, or swept away before the lock was taken
        os.close(fd)
        return None
    return fd


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and (".tmp" in name or name.endswith(".old"))


#: folder -> the temporaries found in it by this process's first atomic write there (listing a
#: folder once per process, not once per write, keeps writes into big folders cheap)
_found: dict[str, list[str]] = {}


def sweep_temporaries(dest: Path | str, *, listed: list[str] | None = None) -> list[str]:
    """Remove the temporaries of ``dest`` (``.<name>.*.tmp*`` beside it) whose writer died; return their names.

    A temporary is locked by its live writer (:func:`atomic_path`, :func:`atomic_dir`), so a
    concurrent write of the same destination is never disturbed. The first atomic write of a
    process into a folder finds the temporaries there (``listed``: names already found); each
    write of a destination removes that destination's, so a temporary left by a killed process
    is removed by the next run that writes the same output.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / ".out.txt.k1ll3d.tmp.txt").write_text("half")   # left by a killed writer
        >>> sweep_temporaries(d / "out.txt")
        ['.out.txt.k1ll3d.tmp.txt']
    """
    dest = Path(dest)
    prefix, swept = f".{dest.name}.", []
    if listed is None:
        try:
            listed = [n for n in os.listdir(dest.parent) if _is_temporary(n)]
        except OSError:
            return swept
    for name in sorted(listed):
        rest = name[len(prefix):]
        if not name.startswith(prefix) or not (".tmp" in rest or (rest == "old" and dest.exists())):
            continue
        path = dest.parent / name
        fd = _lock(path)
        if fd is not None:
            try:
                _remove(path)
                swept.append(name)
            finally:
                os.close(fd)
        if not path.exists() and name in listed:
            listed.remove(name)
    return swept


def _sweep_before_write(dest: Path) -> None:
    key = os.path.abspath(dest.parent)
    if key not in _found:
        try:
            _found[key] = [n for n in os.listdir(dest.parent) if _is_temporary(n)]
        except OSError:
            _found[key] = []
    if _found[key]:
        sweep_temporaries(dest, listed=_found[key])


def _claimed(make: Callable[[], Path]) -> tuple[Path, int]:
    """A new temporary from ``make()`` and the lock that marks its writer alive."""
    for _ in range(8):  # a sweeper may take a fresh temporary before it is locked: make another
        tmp = make()
        fd = _lock(tmp)
        if fd is not None:
            return tmp, fd
    raise OSError(f"cannot lock a temporary beside {tmp}")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_path(dest: Path | str, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` only if the block succeeds.

    The temporary file (``.<name>.<random>.tmp<suffix>``) lives in the same directory (same
    filesystem) so the final ``os.replace`` is atomic. On any exception the temporary file is
    removed and ``dest`` is left as it was; one left by a killed process is removed by the next
    write of ``dest`` (:func:`sweep_temporaries`).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep_before_write(dest)

    def make() -> Path:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.",
                                    suffix=suffix if suffix is not None else ".tmp" + dest.suffix, dir=dest.parent)
        os.close(fd)
        return Path(name)

    tmp, lock = _claimed(make)
    try:
        yield tmp
        os.chmod(tmp, default_mode("file"))
        _kill_point(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
        os.close(lock)


@contextlib.contextmanager
def atomic_dir(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary directory next to ``dest``; swap it into place when the block succeeds.

    An existing ``dest`` is replaced only after the new content is complete, in one atomic
    exchange where the system has one (Linux), so a crash leaves the old folder or the new one,
    never neither. Temporaries left by a killed process are removed by the next write of ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep_before_write(dest)
    tmp, lock = _claimed(lambda: Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)))
    try:
        yield tmp
        os.chmod(tmp, default_mode("dir"))
        _kill_point(dest)
        if dest.exists() and _exchange(tmp, dest):
            pass  # tmp now holds the old folder: removed below
        elif dest.exists():
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
        os.close(lock)


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
