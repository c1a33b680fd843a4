"""``slimsam-edge data ...``: generate procedural labelled data, inspect data folders.

Example:
    $ slimsam-edge data procedural --out data/proc --count 64 --seed 0 --size 256
    $ slimsam-edge data inspect data/proc --json
    $ slimsam-edge data video --out data/clip --frames 60 --size 240x320 --objects 3
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from .common import emit_json, handle_errors, progress_bar

app = typer.Typer(help="Data sets: generate procedural images and videos, inspect folders.",
                  no_args_is_help=True)


#: most images ``data procedural`` writes in one call (about 100 GB at 256 px): a typo such as
#: 10**12 is refused instead of filling the disk
MAX_COUNT = 1_000_000


def _columns() -> tuple:
    """The progress bar's columns: description, bar, done/total, ETA."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    return TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()


@app.command()
@handle_errors
def procedural(
    out: Path = typer.Option(..., "--out", help="Folder to write the samples to (SA-1B layout)."),
    count: int = typer.Option(64, "--count", help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Seed; sample i of seed S is always the same."),
    size: int = typer.Option(256, "--size", help="Image side in pixels."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of text."),
) -> None:
    """Write COUNT procedural images with instance masks (name.png + name.json) to OUT."""
    if not 1 <= count <= MAX_COUNT:
        raise UsageError(f"--count must be from 1 to {MAX_COUNT}, got {count}")
    if size < 32 or size > 4096:
        raise UsageError(f"--size must be between 32 and 4096 pixels, got {size}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder; pass a folder")
    from ..data.procedural import write_procedural

    with progress_bar(*_columns(), enabled=not as_json, stderr=True, transient=False) as update:
        summary = write_procedural(out, count, seed, size,
                                   progress=lambda done, total: update(done, count, "procedural"))
    if as_json:
        emit_json(summary)
    else:
        typer.echo(
            f"wrote {summary['count']} procedural images ({summary['instances']} instances, "
            f"{size}x{size} px, seed {seed}) to {out}"
        )


def _parse_hw(text: str) -> tuple[int, int]:
    """``"240x320"`` -> ``(240, 320)``, ``"256"`` -> ``(256, 256)``; sides from 32 to 4096 px."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or not all(32 <= v <= 4096 for v in parts):
        raise UsageError(f"--size {text!r}: expected HxW (or one side) with sides from 32 to 4096 pixels, "
                         "e.g. 240x320")
    return (parts[0], parts[-1])


@app.command()
@handle_errors
def video(
    out: Path = typer.Option(..., "--out", help="Folder to write the clip to (frames/, masks/, meta.json)."),
    frames: int = typer.Option(60, "--frames", help="Number of frames."),
    size: str = typer.Option("240x320", "--size", help="Frame size HxW (or one side) in pixels."),
    objects: int = typer.Option(3, "--objects", help="Number of moving objects."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same clip."),
    mp4: bool = typer.Option(True, "--mp4/--no-mp4", help="Also write video.mp4 for viewing."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of text."),
) -> None:
    """Write a procedural video with exact per-frame label maps to OUT (for eval-video)."""
    from ..data.synth_video import MAX_OBJECTS

    hw = _parse_hw(size)
    if not 1 <= frames <= 100_000:
        raise UsageError(f"--frames must be from 1 to 100000, got {frames}")
    if not 1 <= objects <= MAX_OBJECTS:
        raise UsageError(f"--objects must be from 1 to {MAX_OBJECTS}, got {objects}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder; pass a folder")
    from ..data.synth_video import ProceduralVideo, write_video_dataset

    clip = ProceduralVideo(seed=seed, frames=frames, size=hw, objects=objects)
    with progress_bar(*_columns(), enabled=not as_json, stderr=True, transient=False) as update:
        summary = write_video_dataset(clip, out, mp4=mp4,
                                      progress=lambda done, total: update(done, total, "video"))
    if as_json:
        emit_json(summary)
    else:
        typer.echo(f"wrote {frames} frames ({hw[0]}x{hw[1]} px, {objects} objects, seed {seed}, "
                   f"{summary['events']} events) to {out}"
                   + ("" if summary["mp4"] or not mp4 else " (no video.mp4: OpenCV has no MPEG-4 encoder)"))


@app.command()
@handle_errors
def inspect(
    path: Path = typer.Argument(..., help="SA-1B folder, COCO instances JSON, COCO root, or image folder."),
    image_dir: Optional[Path] = typer.Option(
        None, "--image-dir", help="COCO image folder (guessed if omitted)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report instead of text."),
) -> None:
    """Report the layout of PATH, its images and annotations, and what would be skipped and why."""
    from ..data.inspect import inspect_data
    from ..data.records import SKIP_REASONS

    with progress_bar(*_columns(), enabled=not as_json, stderr=True, transient=False) as update:
        report = inspect_data(path, image_dir=image_dir,
                              progress=lambda done, total: update(done, total, "inspect"))
    if as_json:
        emit_json(report)
        return
    typer.echo(f"{report['path']}: layout {report['layout']}, {report['images']} images, "
               f"{report['annotations']} annotations")
    for reason, n in sorted(report["skipped"].items()):
        typer.echo(f"  skipped {n} {SKIP_REASONS.get(reason, reason)} [{reason}]")
