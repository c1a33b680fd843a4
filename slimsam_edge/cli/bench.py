"""``slimsam-edge bench A B C --peer NAME``: the benchmark report, and ``bench diff OLD NEW``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..limits import MAX_OBJECTS
from .common import emit_json, handle_errors, progress_bar
from .options import Backend, DecoderPrecisionOpt, JsonOpt, Precision, Resize, ThreadsOpt, enum_value
from .options import DecoderThreadsOpt, EncoderThreadsOpt, EncodeRequestsOpt, HintOpt, make_tuning


class Scenario(str, Enum):
    click = "click"
    video = "video"
    everything = "everything"


class Energy(str, Enum):
    auto = "auto"
    none = "none"
    tegrastats = "tegrastats"
    rapl = "rapl"
    nvml = "nvml"


def _hw(text: str) -> tuple[int, int]:
    try:
        hw = tuple(int(v) for v in text.lower().split("x"))
        if len(hw) != 2 or min(hw) < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--image-size {text!r}: expected HxW, e.g. 1500x2250") from None
    return hw  # type: ignore[return-value]


@handle_errors
def bench(
    bundles: Annotated[Optional[list[Path]], typer.Argument(help="Bundle folders written by `slimsam-edge export` (several: side by side in one run). `bench diff OLD.json NEW.json` compares two saved reports instead.", show_default=False)] = None,
    peer: Annotated[Optional[list[str]], typer.Option("--peer", help="Also time a peer architecture exported now with random weights (latency only): mobilesam, sam-b, efficientvit-sam-l0. Repeatable.")] = None,
    backend: Annotated[Optional[list[Backend]], typer.Option("--backend", "-b", help="Backends to measure (repeatable); default: the pair picked for this machine, or every backend with --precision / --all.")] = None,
    precision: Annotated[Optional[list[Precision]], typer.Option("--precision", help="Precisions to measure (repeatable); default: the pair picked for this machine, or every precision with --backend / --all. Refused when the CPU lacks it (bf16 without BF16).")] = None,
    decoder_precision: DecoderPrecisionOpt = None,
    all_pairs: Annotated[bool, typer.Option("--all", help="Every (backend, precision) pair each bundle holds and this machine can run.")] = False,
    scenario: Annotated[Optional[list[Scenario]], typer.Option("--scenario", help="click (one encoder run + --prompts prompts), video (frames through the tracking pipeline: fps, capture-to-mask latency, drops) or everything (segment everything). Repeatable; default click.")] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, max=100, help="Interleaved rounds: every row runs once per round in a fresh process, so drift hits all rows alike.")] = 3,
    runs: Annotated[int, typer.Option("--runs", "--min-queries", min=1, max=100000, help="SingleStream: at least this many images (frames in video) per round.")] = 5,
    duration: Annotated[float, typer.Option("--duration", min=0.0, max=86400.0, help="SingleStream: and keep querying for at least this many seconds per round.")] = 0.0,
    warmup: Annotated[int, typer.Option("--warmup", min=0, max=1000, help="Untimed warm-up queries per round.")] = 1,
    prompts: Annotated[int, typer.Option("--prompts", min=1, max=100000, help="click: at least this many one-point prompts per round.")] = 20,
    points: Annotated[int, typer.Option("--points", min=1, max=64, help="Points per prompt.")] = 1,
    points_per_side: Annotated[int, typer.Option("--points-per-side", min=1, max=64, help="everything: the point grid.")] = 16,
    objects: Annotated[int, typer.Option("--objects", min=1, max=MAX_OBJECTS, help="video: objects tracked per frame (1: click-to-mask tracking, the encoder and one prompt per frame).")] = 3,
    image_size: Annotated[str, typer.Option("--image-size", help="Synthetic image HxW (original size; masks are resized to it).")] = "1500x2250",
    image: Annotated[Optional[Path], typer.Option("--image", help="Time on this image instead.")] = None,
    resize: Annotated[Resize, typer.Option("--resize", help="Preprocessing resize: sam (exact) or fast (cv2 INTER_AREA).")] = Resize.sam,
    threads: ThreadsOpt = None,
    hint: HintOpt = None,
    encoder_threads: EncoderThreadsOpt = None,
    decoder_threads: DecoderThreadsOpt = None,
    encode_requests: EncodeRequestsOpt = 1,
    data: Annotated[Optional[Path], typer.Option("--data", help="Labelled data for the accuracy columns (SA-1B folder or COCO file). Default: the procedural held-out set for bundles of 256 px or less (sam-mini and its students).")] = None,
    accuracy_images: Annotated[Optional[int], typer.Option("--accuracy-images", min=1, max=100000, help="Evaluate accuracy on at most this many images.")] = 32,
    no_accuracy: Annotated[bool, typer.Option("--no-accuracy", help="Skip the accuracy columns.")] = False,
    energy: Annotated[Energy, typer.Option("--energy", help="Energy source: auto (tegrastats on a Jetson, else RAPL, else NVML), none, or one by name. Without a readable source the column says n/a and why.")] = Energy.auto,
    peak_cache: Annotated[Optional[Path], typer.Option("--peak-cache", help="Keep this machine's measured peak (GEMM fp32/bf16/int8, memory bandwidth) in this JSON file and reuse it while the machine's fingerprint matches.")] = None,
    no_peak: Annotated[bool, typer.Option("--no-peak", help="Do not measure the machine's peak (no % of peak column).")] = False,
    profile: Annotated[bool, typer.Option("--profile", help="Also profile each row's graphs once: time per op group (attention / matmul / norm / conv / resize / other).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the JSON report here.")] = None,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="Write the table as CSV here.")] = None,
    md_out: Annotated[Optional[Path], typer.Option("--md", help="Write the table as Markdown here.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write pareto.png (latency vs mIoU) and stages.png into this folder (needs the plot extra).")] = None,
    save: Annotated[Optional[Path], typer.Option("--save", help="Append the report to this history file (JSON lines) for `bench diff`.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Latency per stage with its accuracy, energy and % of peak, side by side in one interleaved run."""
    args = [str(b) for b in bundles or []]
    if args[:1] == ["diff"] and not Path("diff", "manifest.json").is_file():  # a bundle called diff: ./diff
        _diff(args[1:], json_out)
        return
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..bench.harness import BenchConfig
    from ..bench.suite import bench_suite, check_outputs, save_history, write_outputs

    hw = _hw(image_size)
    tuning = make_tuning(hint, encoder_threads, decoder_threads, encode_requests)  # checked before any work
    check_outputs(out=out, csv=csv_out, md=md_out, plot=plot, save=save)
    base = BenchConfig(bundle="", backend="", threads=threads, image_hw=hw, image=str(image) if image else None,
                       warmup=warmup, runs=runs, prompts=prompts, points=points, resize=resize.value,
                       duration_s=duration, energy=energy.value, points_per_side=points_per_side, objects=objects,
                       decoder_precision=enum_value(decoder_precision), tuning=tuning)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with progress_bar(*columns, enabled=not json_out) as update:
        report = bench_suite(
            args, peers=peer or (), backends=[b.value for b in backend] if backend else None,
            precisions=[p.value for p in precision] if precision else None,
            scenarios=tuple(s.value for s in scenario) if scenario else ("click",), repeats=repeats, base=base,
            data=str(data) if data else None, accuracy_limit=accuracy_images, accuracy=not no_accuracy,
            peak_cache=str(peak_cache) if peak_cache else None, peak=not no_peak, profile=profile,
            all_pairs=all_pairs, progress=update)
    written = write_outputs(report, out=out, csv=csv_out, md=md_out, plot=plot)
    if save is not None:
        written.append(save_history(save, report))
    if json_out:
        emit_json(report)
        return
    from ..bench.render import print_table

    print_table(report)
    for path in written:
        typer.echo(f"wrote {path}")


def _diff(paths: list[str], json_out: bool) -> None:
    from ..bench.diff import diff_reports, load_report

    if len(paths) != 2:
        raise UsageError("bench diff needs two reports: slimsam-edge bench diff OLD.json NEW.json")
    d = diff_reports(load_report(paths[0]), load_report(paths[1]), old_name=paths[0], new_name=paths[1])
    if json_out:
        emit_json(d.to_dict())
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table("row", "scenario", "metric", "old", "new", "x old", "noise", "verdict")
        for c in d.changes:
            style = {"regression": "red", "improvement": "green"}.get(c.verdict, "")
            t.add_row(c.label, c.scenario, c.metric, f"{c.old:.3f}", f"{c.new:.3f}", f"{c.ratio:.3f}",
                      f"{c.noise:.3f}", f"[{style}]{c.verdict}[/]" if style else c.verdict)
        Console().print(t)
        for k in d.only_old:
            typer.echo(f"only in {paths[0]}: {k}")
        for k in d.only_new:
            typer.echo(f"only in {paths[1]}: {k}")
        typer.echo(f"{len(d.regressions)} regression(s) beyond the recorded spread")
    if d.regressions:
        raise typer.Exit(3)
