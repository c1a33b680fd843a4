"""``slimsam-edge bench BUNDLE``: per-stage latency, cold start and peak memory per backend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .common import emit_json, handle_errors
from .options import Backend, JsonOpt, Precision, Resize, ThreadsOpt


@handle_errors
def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `slimsam-edge export`.")],
    backend: Annotated[Optional[list[Backend]], typer.Option("--backend", "-b", help="Backends to measure (repeatable); default: every backend in the bundle.")] = None,
    precision: Annotated[Optional[list[Precision]], typer.Option("--precision", help="Precisions (repeatable): fp32 | fp16 | bf16 | int8; default: every precision the bundle holds. bf16 without a bf16 artifact = OpenVINO/torch run-time hint on fp32.")] = None,
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
    from ..bundle import load_bundle
    from ..devices import detect
    from ..runtimes import runtime_distributions
    from ..fsutil import write_text_atomic
    from ..bench.harness import BenchConfig, run_config

    try:
        hw = tuple(int(v) for v in image_size.lower().split("x"))
        if len(hw) != 2 or min(hw) < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--image-size {image_size!r}: expected HxW, e.g. 1500x2250") from None
    b = load_bundle(bundle)
    backends = [x.value for x in backend] if backend else b.backends()
    missing = [x for x in backends if x not in b.backends()]
    if missing:
        raise UsageError(f"bundle {bundle} has no {', '.join(missing)} artifacts; it has {', '.join(b.backends())}")
    pairs, skipped = _pairs(b, backends, [p.value for p in precision] if precision else None)
    configs = [
        BenchConfig(bundle=str(bundle), backend=be, precision=pr, threads=threads, image_hw=hw,  # type: ignore[arg-type]
                    image=str(image) if image else None, warmup=warmup, runs=runs, prompts=prompts,
                    points=points, resize=resize.value)
        for be, pr in pairs
    ]
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), disable=json_out, transient=True) as bar:
        task = bar.add_task("benchmark", total=len(configs))
        for cfg in configs:
            bar.update(task, description=f"{cfg.backend}/{cfg.precision}")
            try:
                results.append(run_config(cfg))
            except UsageError as err:
                if len(configs) == 1:
                    raise
                skipped.append({"backend": cfg.backend, "precision": cfg.precision, "reason": str(err)})
            bar.advance(task)
    report = {"bundle": str(bundle), "model": b.manifest.model.get("type"), "machine": detect(runtime_distributions()),
              "results": results, "skipped": skipped}
    if out:
        import json

        write_text_atomic(out, json.dumps(report, indent=2, default=str))
    if json_out:
        emit_json(report)
        return
    _print(report)


_ORDER = ("fp32", "fp16", "bf16", "int8")


def _pairs(b, backends: list[str], wanted: list[str] | None) -> tuple[list[tuple[str, str]], list[dict]]:
    """(backend, precision) pairs the bundle can run; requested pairs it cannot are skipped with
    the reason (never swapped for another precision); none runnable is a UsageError."""
    from ..errors import BundleError
    from ..predictor import ENCODER, find_artifact

    pairs, skipped = [], []
    for be in backends:
        have = sorted({a.precision for a in b.manifest.artifacts if a.backend == be},
                      key=lambda p: _ORDER.index(p) if p in _ORDER else len(_ORDER))
        for pr in wanted or have:
            try:
                find_artifact(b, ENCODER, be, pr)
            except BundleError:
                skipped.append({"backend": be, "precision": pr,
                                "reason": f"no {pr} artifact for {be} (it has {', '.join(have)})"})
                continue
            pairs.append((be, pr))
    if not pairs:
        raise UsageError("nothing to benchmark: " + "; ".join(s["reason"] for s in skipped)
                         + "; export that precision (slimsam-edge export --precision ...)")
    return pairs, skipped


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
