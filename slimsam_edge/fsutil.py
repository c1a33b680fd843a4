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
import posixpath
import shutil
import signal
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Mapping

from .errors import BundleError


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


# -- reading a bundle's files: inside the folder, regular files, hashed as they are read ----------

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once (then is refused), never hangs
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_RE_EXPORT = "re-export the bundle"
_UNLINK = ("a bundle holds its files itself: replace the link with the file (cp --dereference) or "
           + _RE_EXPORT)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def _parts(rel: str, where: str) -> tuple[str, ...]:
    pure = PurePosixPath(rel)
    if (not rel or pure.is_absolute() or "\\" in rel or any(p in ("..", ".") for p in rel.split("/"))
            or any(ord(c) < 32 or ord(c) == 127 for c in rel)):
        raise BundleError(f"{where}: path {rel!r} must be relative to the bundle folder; {_RE_EXPORT}")
    return pure.parts


def real_root(root: Path | str, where: str) -> Path:
    """The bundle folder with its own symbolic links resolved (a link *to* a bundle is fine;
    nothing inside it may be one).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / "link").symlink_to(d)
        >>> real_root(d / "link", "bundle") == d.resolve()
        True
    """
    try:
        path = Path(root).resolve(strict=True)
    except (OSError, RuntimeError):
        raise BundleError(f"{where}: folder {root} not found; pass the folder written by `slimsam-edge export`") from None
    if not path.is_dir():
        raise BundleError(f"{where}: {root} is not a folder; pass the folder written by `slimsam-edge export`")
    return path


def _refuse(where: str, rel: str, mode: int) -> BundleError:
    if stat.S_ISLNK(mode):
        return BundleError(f"{where}: {rel} is a symbolic link; {_UNLINK}")
    return BundleError(f"{where}: {rel} is {_kind(mode)}, not a regular file; {_RE_EXPORT}")


def _unreadable(where: str, rel: str, err: OSError) -> BundleError:
    return BundleError(f"{where}: cannot open {rel} ({err.strerror or type(err).__name__}); check its "
                       f"permissions or {_RE_EXPORT}")


def open_inside(root: Path | str, rel: str, where: str) -> int:
    """A read-only file descriptor of the regular file ``root/rel``, reached without following any
    symbolic link below ``root`` (each folder is opened with ``O_NOFOLLOW`` relative to the one
    above, so a link swapped in meanwhile is refused too) and without blocking on a FIFO.

    Raises:
        BundleError: ``rel`` climbs out, a folder or the file on the way is a symbolic link, the
            file is missing or is a FIFO / device / folder (one line naming it).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a.bin").write_bytes(b"x")
        >>> (d / "b.bin").symlink_to(d / "a.bin")
        >>> os.close(open_inside(d, "a.bin", "bundle"))
        >>> open_inside(d, "b.bin", "bundle")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.BundleError: bundle: b.bin is a symbolic link; a bundle holds its files itself: replace the link with the file (cp --dereference) or re-export the bundle
    """
    parts = _parts(rel, where)
    base = real_root(root, where)
    if os.open not in os.supports_dir_fd or not _NOFOLLOW:  # no openat: check each step, then open
        path = base
        for i, part in enumerate(parts):
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                raise BundleError(f"{where}: file {rel} is missing; {_RE_EXPORT}") from None
            except OSError as err:
                raise _unreadable(where, "/".join(parts[: i + 1]), err) from None
            last = i == len(parts) - 1
            if stat.S_ISLNK(mode) or (last and not stat.S_ISREG(mode)) or (not last and not stat.S_ISDIR(mode)):
                raise _refuse(where, "/".join(parts[: i + 1]), mode)
        try:
            fd = os.open(path, os.O_RDONLY | _BINARY | _NONBLOCK)
        except OSError as err:
            raise _unreadable(where, rel, err) from None
    else:
        fd = _open_at(base, parts, rel, where)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _refuse(where, rel, mode)
    return fd


def _open_at(base: Path, parts: tuple[str, ...], rel: str, where: str) -> int:
    """openat() down ``parts`` from ``base``, never following a link (see :func:`open_inside`)."""
    try:
        dir_fd = os.open(base, os.O_RDONLY | _DIRECTORY)
    except OSError as err:
        raise _unreadable(where, ".", err) from None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            shown = "/".join(parts[: i + 1])
            try:
                mode = os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                raise BundleError(f"{where}: file {rel} is missing; {_RE_EXPORT}") from None
            except OSError as err:  # a name too long, no permission, ...
                raise _unreadable(where, shown, err) from None
            if stat.S_ISLNK(mode) or (last and not stat.S_ISREG(mode)) or (not last and not stat.S_ISDIR(mode)):
                raise _refuse(where, shown, mode)
            flags = os.O_RDONLY | _NOFOLLOW | (_BINARY | _NONBLOCK if last else _DIRECTORY)
            try:
                fd = os.open(part, flags, dir_fd=dir_fd)
            except OSError:  # swapped for a link (ELOOP) or removed since the stat
                raise BundleError(f"{where}: {shown} changed while it was opened; {_UNLINK}") from None
            os.close(dir_fd)
            dir_fd = fd
        fd, dir_fd = dir_fd, -1
        return fd
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)


def sha256_inside(root: Path | str, rel: str, where: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of ``root/rel`` read as :func:`open_inside` opens it (no links, regular file).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a.bin").write_bytes(b"x")
        >>> sha256_inside(d, "a.bin", "bundle") == hashlib.sha256(b"x").hexdigest()
        True
    """
    h = hashlib.sha256()
    with os.fdopen(open_inside(root, rel, where), "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_inside(root: Path | str, rel: str, where: str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of ``root/rel`` opened as :func:`open_inside` opens it (for the manifest itself,
    which no hash vouches for: it holds the hashes); a file over ``max_bytes`` is refused before
    anything is read.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "manifest.json").write_text("{}")
        >>> read_inside(d, "manifest.json", "bundle")
        b'{}'
    """
    with os.fdopen(open_inside(root, rel, where), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise BundleError(f"{where}: {rel} holds {size / 2**20:.0f} MiB, more than a bundle file of its kind "
                              f"can ({max_bytes // 2**20} MiB); {_RE_EXPORT}")
        return f.read()


def read_verified(root: Path | str, rel: str, sha256: str, where: str) -> bytes:
    """The bytes of ``root/rel``, read once into memory and returned only if their sha256 is
    ``sha256``: what a runtime is then given is exactly what was hashed, however the file changes
    afterwards. The whole file is held in memory (sam-mini's graphs are a few MB to 24 MB, SAM-B's
    encoder about 350 MB; a runtime copies it into its own session and the bytes can then go).

    Raises:
        BundleError: as :func:`open_inside`, or the bytes do not match (one line naming the file).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a.bin").write_bytes(b"x")
        >>> read_verified(d, "a.bin", hashlib.sha256(b"x").hexdigest(), "bundle")
        b'x'
        >>> read_verified(d, "a.bin", "0" * 64, "bundle")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.BundleError: bundle: file a.bin was modified or corrupted (sha256 mismatch); re-export the bundle
    """
    data = read_inside(root, rel, where)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise BundleError(f"{where}: file {rel} was modified or corrupted (sha256 mismatch); {_RE_EXPORT}")
    return data


@dataclass(frozen=True)
class HashedFiles:
    """The file a runtime loads (``path``, relative to ``root``) and every file it may read with it
    (``files``: relative path -> sha256, ``path`` included), read only through :meth:`read`, which
    returns verified bytes. Runners given one load from those bytes and never open the files
    themselves; ``str()`` / ``os.fspath()`` give the file's path for messages and suffixes.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "g.onnx").write_bytes(b"graph")
        >>> src = HashedFiles(d, "g.onnx", {"g.onnx": hashlib.sha256(b"graph").hexdigest()}, "bundle")
        >>> src.read(), src.companions(), src.name, pathlib.Path(src).suffix
        (b'graph', {}, 'g.onnx', '.onnx')
        >>> src.read("g.onnx.data")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.BundleError: bundle: g.onnx reads g.onnx.data, which the manifest does not list; re-export the bundle
    """

    root: Path
    path: str
    files: Mapping[str, str]
    where: str = "bundle"

    def __fspath__(self) -> str:
        return str(Path(self.root) / self.path)

    def __str__(self) -> str:
        return self.__fspath__()

    @property
    def name(self) -> str:
        """The file's name, as ``Path.name``."""
        return PurePosixPath(self.path).name

    @property
    def suffix(self) -> str:
        """The file's suffix, as ``Path.suffix``."""
        return PurePosixPath(self.path).suffix

    def companions(self) -> dict[str, str]:
        """The listed files other than ``path`` (external data, an IR's ``.bin``) -> sha256."""
        return {rel: digest for rel, digest in self.files.items() if rel != self.path}

    def sibling(self, name: str) -> str:
        """The relative path of ``name`` in ``path``'s folder (how a graph names its companions)."""
        parent = posixpath.dirname(self.path)
        return posixpath.join(parent, name) if parent else name

    def read(self, rel: str | None = None) -> bytes:
        """Verified bytes of ``rel`` (default ``path``), a file this source lists."""
        rel = self.path if rel is None else rel
        if rel not in self.files:
            raise BundleError(f"{self.where}: {self.path} reads {rel}, which the manifest does not list; {_RE_EXPORT}")
        return read_verified(self.root, rel, self.files[rel], self.where)
