"""``slimsam-edge bench BUNDLE``: per-stage latency, cold start and peak memory per backend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .common import emit_json, handle_errors, progress_bar
from .options import Backend, JsonOpt, Precision, Resize, ThreadsOpt


@handle_errors
def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `slimsam-edge export`.")],
    backend: Annotated[Optional[list[Backend]], typer.Option("--backend", "-b", help="Backends to measure (repeatable); default: every backend in the bundle when --precision or --all is given, else the one picked for this machine.")] = None,
    precision: Annotated[Optional[list[Precision]], typer.Option("--precision", help="Precisions (repeatable): fp32 | fp16 | bf16 | int8; default: every precision the bundle holds when --backend or --all is given, else the one picked for this machine (slimsam-edge devices --detect). bf16 without a bf16 artifact = OpenVINO/torch run-time hint on fp32; refused on a CPU without BF16.")] = None,
    all_pairs: Annotated[bool, typer.Option("--all", help="Measure every (backend, precision) pair the bundle holds and this machine can run.")] = False,
    threads: ThreadsOpt = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed encoder runs.")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed warm-up runs.")] = 2,
    prompts: Annotated[int, typer.Option("--prompts", min=1, help="Timed decoder prompts.")] = 50,
    points: Annotated[int, typer.Option("--points", min=1, help="Points per prompt.")] = 1,
    image_size: Annotated[str, typer.Option("--image-size", help="Synthetic image HxW (original size; masks are resized to it).")] = "1500x2250",
    image: Annotated[Optional[Path], typer.Option("--image", help="Benchmark on this image instead.")] = None,
    resize: Annotated[Resize, typer.Option("--resize", help="Preprocessing resize: sam (segment-anything's exact antialiased resize) or fast (cv2 INTER_AREA).")] = Resize.sam,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the JSON report here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Measure cold start, preprocess, encoder, decoder + postprocess per prompt, peak RSS."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..bench.run import bench_bundle

    try:
        hw = tuple(int(v) for v in image_size.lower().split("x"))
        if len(hw) != 2 or min(hw) < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--image-size {image_size!r}: expected HxW, e.g. 1500x2250") from None
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with progress_bar(*columns, enabled=not json_out) as update:
        report = bench_bundle(
            bundle, backends=[x.value for x in backend] if backend else None,
            precisions=[p.value for p in precision] if precision else None, threads=threads, runs=runs,
            warmup=warmup, prompts=prompts, points=points, image_hw=hw, image=image,  # type: ignore[arg-type]
            resize=resize.value, out=out, progress=update, all_pairs=all_pairs)
    if json_out:
        emit_json(report)
        return
    _print(report)


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    m = report["machine"]
    c.print(f"bundle {report['bundle']} ({report['model']}) on {m.get('cpu_model', '?')}, "
            f"{m.get('cores_logical', '?')} threads")
    t = Table("backend", "prec", "cold start", "preprocess p50", "encoder p50 / p90",
              "decoder+post p50 / p90", "peak RSS")
    for r in report["results"]:
        cfg = r["config"]
        e, d = r["encoder"], r["decoder_plus_postprocess"]
        t.add_row(cfg["backend"], cfg["precision"], f"{r['cold_start_s']:.2f} s",
                  f"{r['preprocess']['p50_ms']:.1f} ms", f"{e['p50_ms']:.1f} / {e['p90_ms']:.1f} ms",
                  f"{d['p50_ms']:.2f} / {d['p90_ms']:.2f} ms", f"{r['peak_rss_mb']:.0f} MiB")
    c.print(t)
    if report["results"]:
        r = report["results"][0]
        c.print(f"image {r['image_hw'][0]}x{r['image_hw'][1]}, {r['encoder']['n']} encoder runs, "
                f"{r['decoder']['n']} prompts; decoder+post = decoder graph + mask resize to the image")
    for s in report["skipped"]:
        c.print(f"[yellow]skipped {s['backend']}/{s['precision']}: {s['reason']}[/]")
