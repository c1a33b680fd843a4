"""The ``slimsam-edge`` command: one small module per command, composed here.

Heavy packages (torch, onnx, runtimes) are imported inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .. import offline  # noqa: F401  (first: runtimes' telemetry off, docs/reliability.md)
from .. import __version__
from .common import DEBUG_ENV, OneLineErrorsGroup
from .bench import bench
from .build import build
from .compress import compress
from .data import app as data_app
from .demo import demo
from .devices import devices
from .eval import eval_cmd
from .eval_video import eval_video
from .export import export
from .info import info
from .segment import segment
from .train_reference import train_reference
from .verify import verify
from .video import video

app = typer.Typer(
    name="slimsam-edge",
    help="Compress Segment Anything (SlimSAM), export it to ONNX/OpenVINO/TensorRT, run it on edge devices.",
    no_args_is_help=True,
    cls=OneLineErrorsGroup,  # usage errors of every command: one line, exit 2
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slimsam-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    if debug and DEBUG_ENV not in os.environ:
        # Scoped to this invocation: in-process callers (tests, notebooks) must not inherit it.
        os.environ[DEBUG_ENV] = "1"
        ctx.call_on_close(lambda: os.environ.pop(DEBUG_ENV, None))


app.command()(info)
app.command()(compress)
app.command()(export)
app.command()(build)
app.command()(segment)
app.command()(bench)
app.command()(devices)
app.command("eval")(eval_cmd)
app.command("eval-video")(eval_video)
app.command()(demo)
app.command("train-reference")(train_reference)
app.command()(verify)
app.command()(video)
app.add_typer(data_app, name="data")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
