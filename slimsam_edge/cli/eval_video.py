"""``slimsam-edge eval-video [VIDEO_DIR] --bundle DIR``: track every object of a video with exact masks
from one click each, report DAVIS J and F per object and overall, losses, re-acquisitions and fps.
Without VIDEO_DIR a procedural clip is generated (``--frames``, ``--seed``, ``--size``, ``--objects``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .common import emit_json, handle_errors
from .options import Backend, BundleOpt, JsonOpt, Precision, ThreadsOpt


@handle_errors
def eval_video(
    bundle: BundleOpt,
    video_dir: Annotated[Optional[Path], typer.Argument(help="Folder written by `slimsam-edge data video` (default: generate a clip).")] = None,
    backend: Annotated[Optional[Backend], typer.Option("--backend", help="Runtime (default: picked for this machine).")] = None,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Artifact precision (default: picked for this machine, else fp32).")] = None,
    frames: Annotated[Optional[int], typer.Option("--frames", help="Generated clip: number of frames (default 60).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Generated clip: seed (default 0).")] = None,
    size: Annotated[Optional[str], typer.Option("--size", help="Generated clip: frame size HxW (default 240x320).")] = None,
    objects: Annotated[Optional[int], typer.Option("--objects", help="Generated clip: number of objects (default 3).")] = None,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate tracking on a video: J (region IoU) and F (boundary) per object, losses, fps."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from ..apps.video_eval import evaluate_video
    from ..predictor import EdgePredictor
    from .common import progress_bar

    video = _video(video_dir, frames, seed, size, objects)
    predictor = EdgePredictor.from_bundle(bundle, backend=backend.value if backend else None,
                                          precision=precision.value if precision else None, threads=threads)
    with progress_bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      enabled=not json_out, stderr=True) as update:
        clock: list[float] = []

        def progress(done: int, total: int | None) -> None:
            import time

            clock.append(time.perf_counter())
            fps = (done - 1) / (clock[-1] - clock[0]) if done > 1 else 0.0
            update(done, total, f"tracking {fps:5.1f} fps")

        with predictor:
            result = evaluate_video(predictor, video, progress=progress)
    result["video"] = str(video_dir) if video_dir is not None else {"generated": True, **_clip_meta(video)}
    if json_out:
        emit_json(result)
        return
    for obj_id, s in result["objects"].items():
        typer.echo(f"object {obj_id}: J {s['J']:.3f}  F {s['F']:.3f}  J&F {s['JF']:.3f}  ({s['frames']} frames)")
    if result["J"] is None:
        typer.echo("no object was visible long enough to be scored")
    else:
        typer.echo(f"overall: J {result['J']:.3f}  F {result['F']:.3f}  J&F {result['JF']:.3f}")
    typer.echo(f"{result['losses']} losses, {result['reacquisitions']} re-acquisitions; {result['frames']} frames, "
               f"{result['fps']:.1f} fps [{result['backend']}/{result['precision']}]")


def _video(video_dir: Path | None, frames: int | None, seed: int | None, size: str | None,
           objects: int | None):
    """The dataset in ``video_dir``, else a generated clip (its flags apply only then)."""
    if video_dir is not None:
        given = [flag for flag, v in (("--frames", frames), ("--seed", seed), ("--size", size),
                                      ("--objects", objects)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)} describe a generated clip; drop them, or drop VIDEO_DIR")
        from ..data.synth_video import VideoDataset

        return VideoDataset(video_dir)
    from ..data.synth_video import ProceduralVideo
    from .data import _parse_hw

    hw = (240, 320) if size is None else _parse_hw(size)
    return ProceduralVideo(seed=0 if seed is None else seed, frames=60 if frames is None else frames, size=hw,
                           objects=3 if objects is None else objects)


def _clip_meta(video) -> dict:
    return {"seed": video.seed, "frames": video.frames, "size": list(video.size), "objects": video.objects}
