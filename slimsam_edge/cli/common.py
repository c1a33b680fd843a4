"""Shared CLI plumbing: one-line errors with exit code 2, --debug tracebacks, JSON output.

Example:
    >>> @handle_errors
    ... def cmd() -> None:
    ...     raise UsageError("bad flag")
"""

from __future__ import annotations

import errno
import functools
import json
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import typer

from ..errors import DEBUG_ENV, SlimSamEdgeError, UsageError, debug_enabled  # noqa: F401  (re-exported for commands)

F = TypeVar("F", bound=Callable[..., Any])


#: errno values of a full, read-only or forbidden destination: reported in one line, exit code 2
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def handle_errors(fn: F) -> F:
    """Turn project errors into ``error: <message>`` on stderr and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
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


def _internal_error(err: BaseException) -> None:
    typer.echo(f"internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback)", err=True)
    raise typer.Exit(1) from None


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (the only thing printed in --json mode)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


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
    bundle, data that does not open) prints alone on its line.
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
    finally:
        if task:
            bar.stop()
