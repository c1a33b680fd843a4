"""``slimsam-edge video SOURCE --bundle DIR (--point x,y | --box x0,y0,x1,y1)... | --everything --out OUT.mp4
[--masks OUT.jsonl] [--prompts FILE.json] [--realtime] [--max-frames N] [--hint H] [--encoder-threads N]
[--decoder-threads N] [--encode-requests N]``: track objects through a video,
camera or stream (or segment everything in each frame) and write an overlay video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..limits import MAX_POINTS_PER_SIDE
from .common import emit_json, handle_errors, parse_floats
from .options import (
    Backend,
    BundleOpt,
    DecoderThreadsOpt,
    EncoderThreadsOpt,
    EncodeRequestsOpt,
    HintOpt,
    JsonOpt,
    Precision,
    ThreadsOpt,
    make_tuning,
)

_PROMPTS_HELP = (
    'Prompts on later frames, a JSON file: {"prompts": [{"frame": 30, "box": [x0, y0, x1, y1]}, '
    '{"frame": 40, "points": [[x, y], [x, y, 0]]}, {"frame": 45, "id": 1, "point": [x, y]}, '
    '{"frame": 60, "remove": 2}]}. An entry without "id" adds an object (the next id); with "id" it '
    're-prompts that object; "remove" stops tracking it. Frames are 0-based source frame indices.'
).replace("[", "\\[")  # rich markup: a bracket starts a style tag


@handle_errors
def video(
    source: Annotated[str, typer.Argument(help="Video file, camera index (0), folder or glob of frames (quote the glob), or stream URL (rtsp://...).")],
    bundle: BundleOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Overlay video to write (.mp4): each object in its own colour with its id.")],
    point: Annotated[Optional[list[str]], typer.Option("--point", "-p", help="x,y in first-frame pixels: one object per flag (ids 1, 2, ... points first, then boxes). Repeatable.")] = None,
    box: Annotated[Optional[list[str]], typer.Option("--box", help="x0,y0,x1,y1 in first-frame pixels: one object per flag. Repeatable.")] = None,
    everything: Annotated[bool, typer.Option("--everything", help="Segment every object of each frame (no tracking; ids number each frame's masks, largest first).")] = False,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help=_PROMPTS_HELP)] = None,
    masks: Annotated[Optional[Path], typer.Option("--masks", help='JSON lines to write, one per frame: {"frame": i, "objects": \\[{"id", "state", "score", "bbox": \\[x, y, w, h], "rle": COCO RLE}]}.')] = None,
    realtime: Annotated[bool, typer.Option("--realtime", help="Always encode the newest frame (for cameras and streams: latency stays low); frames read meanwhile are dropped (counted): absent from --masks, the previous overlay repeated in the video. A file or folder is read at its frame rate (--fps, else its own, else 30), as a live camera would deliver it.")] = False,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", min=1, help="Stop after reading this many frames.")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frame rate of the output video (default: the source's, else 30).")] = None,
    points_per_side: Annotated[Optional[int], typer.Option("--points-per-side", min=1, max=MAX_POINTS_PER_SIDE, help="With --everything: grid points per side (default 32).")] = None,
    backend: Annotated[Optional[Backend], typer.Option("--backend", help="Runtime (default: picked for this machine).")] = None,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Artifact precision or run-time hint (default: the detected profile's when the bundle has it, else fp32).")] = None,
    threads: ThreadsOpt = None,
    hint: HintOpt = None,
    encoder_threads: EncoderThreadsOpt = None,
    decoder_threads: DecoderThreadsOpt = None,
    encode_requests: EncodeRequestsOpt = 1,
    json_out: JsonOpt = False,
) -> None:
    """Track objects through a video, camera or stream (or segment everything), writing an overlay video.

    Ctrl-C stops early: the video and JSON lines written so far are kept, playable.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from ..apps.video import Target, run_video
    from .common import progress_bar

    targets = []
    for p in point or []:
        x, y, *label = parse_floats(p, (2, 3), "--point")
        if label and label[0] != 1.0:
            raise UsageError(f"--point {p!r}: each --point is one object, so its label is 1; give background points "
                             "in a --prompts file (\"points\": [[x, y], [x, y, 0]])")
        targets.append(Target(((x, y, 1.0),), where=f"--point {p}"))
    for b in box or []:
        x0, y0, x1, y1 = parse_floats(b, (4,), "--box")
        if not (x0 < x1 and y0 < y1):
            raise UsageError(f"--box {b!r}: needs x0 < x1 and y0 < y1")
        targets.append(Target(box=(x0, y0, x1, y1), where=f"--box {b}"))
    if points_per_side is not None and not everything:
        raise UsageError("--points-per-side applies only with --everything")
    settings = {} if points_per_side is None else {"points_per_side": points_per_side}
    tuning = make_tuning(hint, encoder_threads, decoder_threads, encode_requests)
    with progress_bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      enabled=not json_out, stderr=True) as update:
        def progress(done: int, total: int | None, rate: float, dropped: int) -> None:
            drops = f", {dropped} dropped" if realtime else ""
            update(done, total, f"frames ({rate:.1f} fps{drops})")

        result = run_video(source, bundle, out, targets=targets, prompts_file=prompts, everything=everything,
                           everything_settings=settings, masks=masks, realtime=realtime, max_frames=max_frames,
                           fps=fps, backend=backend.value if backend else None,
                           precision=precision.value if precision else None, threads=threads, tuning=tuning,
                           progress=progress)
    if json_out:
        emit_json(result)
    else:
        lat = result["latency_ms"]
        outputs = str(out) + (f" + {masks}" if masks is not None else "")
        dropped = f", {result['dropped']} dropped" if realtime else ""
        head = "interrupted: kept " if result["interrupted"] else ""
        t = result["tuning"]
        tuned = "".join([f", {t['hint']}" if t["hint"] else "",
                         f", {t['encode_requests']} encode requests" if t["encode_requests"] > 1 else ""])
        typer.echo(f"{head}{result['frames_done']} frames -> {outputs} ({result['fps']:.1f} fps{dropped}; latency "
                   f"p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms) [{result['backend']}/{result['precision']}{tuned}]")
    if result["interrupted"]:
        raise typer.Exit(130)
