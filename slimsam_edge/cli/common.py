"""Shared CLI plumbing: one-line errors with exit code 2, --debug tracebacks, JSON output.

Example:
    >>> @handle_errors
    ... def cmd() -> None:
    ...     raise UsageError("bad flag")
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import typer
from typer.core import TyperGroup

from ..errors import DEBUG_ENV, SlimSamEdgeError, UsageError, debug_enabled  # noqa: F401  (re-exported for commands)

F = TypeVar("F", bound=Callable[..., Any])


#: errno values of a full, read-only or forbidden destination: reported in one line, exit code 2
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})

#: errno values of a path argument that names the wrong kind of thing: one line, exit code 2
PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ELOOP})


#: parameter names of the commands' ``--json`` flag
JSON_FLAGS = ("json_out", "as_json")

#: where :func:`emit_json` writes while :func:`json_stdout_only` holds stdout for it
_json_stream: list[Any] = []


@contextmanager
def json_stdout_only() -> Iterator[None]:
    """While a ``--json`` command runs, stdout is the JSON document's alone: ``print`` / ``echo``
    and the library loggers that write to stdout (NNCF logs INFO lines there) go to stderr."""
    import logging

    real = sys.stdout
    moved = []
    for logger in [logging.getLogger(), *[lg for lg in logging.Logger.manager.loggerDict.values()
                                          if isinstance(lg, logging.Logger)]]:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and _is_stdout(handler.stream, real):
                moved.append((handler, handler.stream))
                handler.setStream(sys.stderr)
    _json_stream.append(real)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = real
        _json_stream.pop()
        for handler, stream in moved:
            handler.setStream(stream)


def _flag(name: str) -> str:
    """The command line spelling of parameter ``name`` (``--out``; an argument: ``IMAGE``)."""
    ctx = click_context()
    for param in getattr(getattr(ctx, "command", None), "params", []):
        if param.name == name:
            return param.opts[0] if param.param_type_name == "option" else name.upper()
    return "--" + name.replace("_", "-")


def click_context() -> Any:
    """The running command's Click context, or None outside a command line run."""
    import importlib

    package = _CLICK_ERROR.__module__.rsplit(".", 1)[0]  # click, or typer's vendored copy
    return importlib.import_module(package + ".globals").get_current_context(silent=True)


def check_path_arguments(kwargs: dict[str, Any]) -> None:
    """Refuse, before any work, a path argument that cannot be what any command wants: a FIFO, a
    socket or a device (opening a FIFO blocks: a hang), a path under a regular file, or a name
    longer than the file system allows. Missing paths and the file-or-folder question stay with
    each command (an input must exist, an output is created)."""
    from pathlib import Path

    from ..safeio import require_output_path, require_regular_file

    for name, value in kwargs.items():
        for path in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(path, Path):
                continue
            flag = _flag(name)
            if any(len(os.fsencode(part)) > 255 for part in path.parts):
                raise UsageError(f"{flag} {str(path)[:80]}...: a name in the path is longer than 255 bytes; "
                                 "use a shorter name")
            if path.exists() and not path.is_dir():
                require_regular_file(path, flag)
            elif not path.exists():
                require_output_path(path, flag)


def _is_stdout(stream: Any, current: Any) -> bool:
    """Whether ``stream`` writes to stdout: the current one, the process's, or file descriptor 1."""
    if stream is current or stream is sys.__stdout__:
        return True
    try:
        return stream.fileno() == 1
    except (AttributeError, OSError, ValueError):
        return False


def handle_errors(fn: F) -> F:
    """Turn project errors into ``error: <message>`` on stderr and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        json_mode = any(kwargs.get(name) is True for name in JSON_FLAGS)
        try:
            check_path_arguments(kwargs)
            with json_stdout_only() if json_mode else contextlib.nullcontext():
                return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except SlimSamEdgeError as err:
            if debug_enabled():
                raise
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except OSError as err:
            if debug_enabled():
                raise
            if err.errno in PATH_ERRNOS:
                where = f" {err.filename}" if err.filename else ""
                typer.echo(f"error: {err.strerror}:{where}; check the paths given (a folder where a file is "
                           "expected, a file where a folder is, or a name too long)", err=True)
                raise typer.Exit(2) from None
            if err.errno not in STORAGE_ERRNOS:
                _internal_error(err)
            where = f": {err.filename}" if err.filename else ""
            typer.echo(f"error: {err.strerror}{where}; files written before are intact (writes are atomic): "
                       "free space or fix permissions, then rerun (compress: add --resume)", err=True)
            raise typer.Exit(2) from None
        except MemoryError:
            if debug_enabled():
                raise
            typer.echo("error: out of memory; use a smaller model, image or batch", err=True)
            raise typer.Exit(1) from None
        except Exception as err:  # a bug: say so in one line, traceback with --debug
            if debug_enabled():
                raise
            _internal_error(err)

    return wrapper  # type: ignore[return-value]


#: Click's base of every parsing error (typer >= 0.20 vendors Click: found through a public class)
_CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


@contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """Click's parsing errors (a bad option value, an unknown option, a missing argument) as our
    ``error: <message>`` line on stderr, exit code 2, instead of Typer's usage text and box.

    ``slimsam-edge`` alone (help shown for no arguments) keeps Click's own behaviour.
    """
    try:
        yield
    except _CLICK_ERROR as err:
        if type(err).__name__ == "NoArgsIsHelpError":
            raise
        message = " ".join(err.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
        ctx = getattr(err, "ctx", None)
        where = f"`{ctx.command_path} --help`" if ctx is not None else "`--help`"
        typer.echo(f"error: {message}; see {where}", err=True)
        raise typer.Exit(2) from None


class OneLineErrorsGroup(TyperGroup):
    """The app's command group: every usage error of every command is one line, exit code 2
    (:func:`one_line_usage_errors`), whether the app runs as a program or in a test's runner."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with one_line_usage_errors():
            return super().invoke(ctx)


def _internal_error(err: BaseException) -> None:
    typer.echo(f"internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback)", err=True)
    raise typer.Exit(1) from None


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (the only thing printed in --json mode).

    Always valid JSON: NaN / Infinity are written as ``null`` and listed under ``non_finite``.

    Example:
        >>> emit_json({"score": float("nan")})
        {
          "score": null,
          "non_finite": {
            "score": "NaN"
          }
        }
    """
    from ..safeio import json_dumps

    stream = _json_stream[-1] if _json_stream else sys.stdout
    stream.write(json_dumps(data, indent=2) + "\n")
    stream.flush()


def parse_floats(text: str, n: tuple[int, ...], what: str) -> list[float]:
    """Parse "1,2[,3]" into floats; ``n`` lists the accepted counts."""
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected comma-separated numbers") from None
    if len(vals) not in n:
        want = " or ".join(str(k) for k in n)
        raise UsageError(f"{what} {text!r}: expected {want} numbers, got {len(vals)}")
    return vals


#: ``update(done, total, description)``: moves a progress bar (``total`` None: unknown)
BarUpdate = Callable[[int, "int | None", str], None]


@contextmanager
def progress_bar(*columns: Any, enabled: bool, stderr: bool = False, transient: bool = True) -> Iterator[BarUpdate]:
    """A rich progress bar with one task, as an ``update(done, total, description)`` callback.

    The bar shows from the first update on, so that an error raised before any work (a bad
    bundle, data that does not open) prints alone on its line; an error raised later erases it
    (even a bar made with ``transient=False``, which is otherwise kept when the work is done).
    """
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(*columns, console=Console(stderr=True) if stderr else None, disable=not enabled,
                   transient=transient)
    task: list[Any] = []

    def update(done: int, total: int | None, description: str) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(description, total=total))
        bar.update(task[0], completed=done, total=total, description=description)

    try:
        yield update
    except BaseException:
        bar.live.transient = True  # an error prints alone: the bar is erased, never left above it
        raise
    finally:
        if task:
            bar.stop()
