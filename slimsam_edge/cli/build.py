"""``slimsam-edge build BUNDLE [--precision fp16|int8|fp32] [--dla N] [--json]``: TensorRT engines, built
on the device that runs them, verified against the bundle's reference I/O, recorded in its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import emit_json, handle_errors, progress_bar
from .options import JsonOpt


@handle_errors
def build(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder exported for a TensorRT target (--target jetson-… / x86-gpu).")],
    precision: Annotated[Optional[str], typer.Option("--precision", help="fp32 | fp16 | int8 (default: the target's default precision, where the plan has it).")] = None,
    dla: Annotated[Optional[int], typer.Option("--dla", min=0, help="Build for this Jetson DLA core (fp16/int8; boards with DLA only).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Build the bundle's TensorRT engines here, verify them, record them (with their fingerprint) in the manifest."""
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..deploy.build import build_bundle
    from ..errors import UsageError

    if precision is not None and precision not in ("fp32", "fp16", "int8"):
        raise UsageError(f"--precision {precision}: TensorRT engines are fp32, fp16 or int8")
    with progress_bar(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      enabled=not json_out, stderr=True) as update:
        report = build_bundle(bundle, precision=precision, dla_core=dla,
                              progress=lambda msg: update(0, None, msg))
    if json_out:
        emit_json(report.to_dict())
        return
    fp = report.fingerprint
    typer.echo(f"built {len(report.engines)} {report.precision} engine(s) in {bundle} on {fp['gpu']} "
               f"(sm {fp['compute_capability']}), TensorRT {fp['tensorrt']}")
    for e in report.engines:
        typer.echo(f"  {e['graph']}: {e['path']} ({e['build']})")
    typer.echo("  verified against the reference I/O: passed")
    for note in report.notes:
        typer.echo(f"  note: {note}")
