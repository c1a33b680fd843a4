"""Soak (issue 20, item 4): many predictor calls over many images per backend, with the process's
resident memory (RSS) and open file descriptors sampled as it goes; after a warm-up neither may grow
(memory: under :data:`MAX_GROWTH_MB`; descriptors: not at all).

Each backend gets one :class:`~slimsam_edge.predictor.EdgePredictor` over the sam-mini bundle (the
shipped model exported with ``slimsam-edge export --target cpu``, which holds ONNX Runtime and
OpenVINO artifacts). Images are procedural (seeded, of several sizes), made on the fly so the images
themselves take no memory; each image gets one ``set_image`` and ``calls / images`` ``predict``
calls with varied prompts (one point, points with a background one, a box, a point and a box, the
previous low-res logits as ``mask_input``; single- and multi-mask).

Example:
    $ python scripts/soak.py --calls 10000 --images 1000 --json docs/results/soak.json

Illustration (not run as a doctest: it runs for minutes)::

    rows = soak_backend(bundle, "onnxruntime", calls=10_000, images=1_000)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

#: growth allowed after warm-up (issue 20: < 5 MB)
MAX_GROWTH_MB = 5.0
SIZES = [(256, 256), (240, 320), (320, 240), (192, 288)]


def sample_usage() -> tuple[float, int]:
    """``(RSS in MB, open file descriptors)`` of this process, from /proc.

    Example:
        >>> rss, fds = sample_usage()
        >>> rss > 1 and fds >= 3
        True
    """
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20, len(os.listdir("/proc/self/fd"))


def prompts(i: int, h: int, w: int, previous: np.ndarray | None) -> dict[str, Any]:
    """The ``i``-th call's prompts on an ``h`` x ``w`` image (five kinds in turn).

    Example:
        >>> sorted(prompts(2, 100, 200, None))
        ['box', 'multimask_output']
    """
    rng = np.random.default_rng(i)
    x, y = float(rng.uniform(0, w - 1)), float(rng.uniform(0, h - 1))
    x0, y0 = float(rng.uniform(0, w * 2 / 3)), float(rng.uniform(0, h * 2 / 3))
    box = np.array([x0, y0, x0 + w / 3, y0 + h / 3], np.float32)
    kind = i % 5
    one = {"point_coords": np.array([[x, y]], np.float32), "point_labels": np.array([1], np.int64)}
    if kind == 0:
        return {**one, "multimask_output": True}
    if kind == 1:
        return {"point_coords": np.array([[x, y], [w - 1 - x, h - 1 - y]], np.float32),
                "point_labels": np.array([1, 0], np.int64), "multimask_output": False}
    if kind == 2:
        return {"box": box, "multimask_output": False}
    if kind == 3:
        return {**one, "box": box, "multimask_output": False}
    return {**one, "mask_input": previous, "multimask_output": previous is None}


def growth(samples: list[dict[str, float]], warmup_calls: int) -> dict[str, float]:
    """Growth after warm-up: last minus first post-warm-up sample, the peak minus it, the fitted slope.

    Example:
        >>> s = [{"calls": c, "rss_mb": 100 + (c > 10) * 3 + c / 1000, "fds": 20} for c in range(0, 101, 10)]
        >>> g = growth(s, warmup_calls=20)
        >>> g["rss_growth_mb"], g["fd_growth"], round(g["slope_mb_per_1000"], 3)
        (0.08, 0, 1.0)
    """
    post = [s for s in samples if s["calls"] >= warmup_calls]
    first, last = post[0], post[-1]
    calls = np.array([s["calls"] for s in post], float)
    rss = np.array([s["rss_mb"] for s in post], float)
    slope = float(np.polyfit(calls, rss, 1)[0] * 1000) if len(post) > 1 else 0.0
    return {"rss_at_warmup_mb": round(first["rss_mb"], 2), "rss_end_mb": round(last["rss_mb"], 2),
            "rss_growth_mb": round(last["rss_mb"] - first["rss_mb"], 2),
            "rss_peak_growth_mb": round(float(rss.max()) - first["rss_mb"], 2),
            "fd_growth": int(last["fds"] - first["fds"]), "fd_peak_growth": int(max(s["fds"] for s in post) - first["fds"]),
            "slope_mb_per_1000": slope}


def soak_backend(bundle: Path, backend: str, *, calls: int, images: int, every: int = 100,
                 warmup: float = 0.1, threads: int | None = 1,
                 tick: Callable[[int], None] = lambda n: None,
                 on_sample: Callable[[list[dict[str, Any]]], None] = lambda samples: None) -> dict[str, Any]:
    """``calls`` predictor calls over ``images`` images on ``backend``; usage sampled every ``every``
    calls (``on_sample(samples)`` after each sample: a long run keeps its figures if stopped)."""
    from ..data.procedural import generate_sample
    from ..predictor import EdgePredictor

    per_image = max(1, calls // images)
    pred = EdgePredictor.from_bundle(bundle, backend=backend, threads=threads)
    samples = [{"calls": 0, "images": 0, **dict(zip(("rss_mb", "fds"), sample_usage()))}]
    t0, done, scores = time.perf_counter(), 0, 0.0
    for k in range(images):
        img, _ = generate_sample(k, SIZES[k % len(SIZES)])
        h, w = img.shape[:2]
        pred.set_image(img)
        previous = None
        for j in range(per_image):
            if done >= calls:
                break
            masks, iou, low = pred.predict(**prompts(done, h, w, previous))
            assert masks.shape[-2:] == (h, w)
            previous, scores = low[:1], scores + float(iou.max())
            done += 1
            tick(1)
            if done % every == 0:
                rss, fds = sample_usage()
                samples.append({"calls": done, "images": k + 1, "rss_mb": round(rss, 2), "fds": fds,
                                "s": round(time.perf_counter() - t0, 1)})
                on_sample(samples)
    elapsed = time.perf_counter() - t0
    pred.close()
    warmup_calls = int(round(calls * warmup / every)) * every
    g = growth(samples, warmup_calls)
    return {"backend": backend, "calls": done, "images": images, "warmup_calls": warmup_calls,
            "seconds": round(elapsed, 1), "calls_per_s": round(done / elapsed, 1),
            "mean_best_score": round(scores / max(done, 1), 4), **g,
            "passed": g["rss_growth_mb"] < MAX_GROWTH_MB and g["fd_growth"] <= 0, "samples": samples}


def row_from_samples(backend: str, samples: list[dict[str, Any]], *, calls: int, images: int,
                     warmup: float = 0.1) -> dict[str, Any]:
    """A table row from the samples of a run stopped early (warm-up: ``warmup`` of the calls asked for).

    Example:
        >>> s = [{"calls": c, "images": c // 10, "rss_mb": 300.0, "fds": 8, "s": c / 2} for c in range(0, 501, 100)]
        >>> r = row_from_samples("openvino", s, calls=1_000, images=100)
        >>> r["calls"], r["images"], r["warmup_calls"], r["rss_growth_mb"], r["stopped_early"]
        (500, 50, 100, 0.0, True)
    """
    every = samples[1]["calls"] - samples[0]["calls"]
    warmup_calls = int(round(calls * warmup / every)) * every
    g = growth(samples, warmup_calls)
    last = samples[-1]
    return {"backend": backend, "calls": last["calls"], "images": last["images"], "warmup_calls": warmup_calls,
            "seconds": last["s"], "calls_per_s": round(last["calls"] / last["s"], 1), **g,
            "passed": g["rss_growth_mb"] < MAX_GROWTH_MB and g["fd_growth"] <= 0,
            "stopped_early": last["calls"] < calls, "asked": {"calls": calls, "images": images}, "samples": samples}


def export_bundle_for_soak(out: Path) -> Path:
    """The shipped sam-mini exported for the cpu target (ONNX Runtime + OpenVINO), by the CLI."""
    subprocess.run([sys.executable, "-m", "slimsam_edge", "export", "--target", "cpu", "--no-validate",
                    "--out", str(out)], check=True, capture_output=True)
    return out


def render_table(rows: list[dict[str, Any]]) -> str:
    """The summary as a markdown table.

    Example:
        >>> r = {"backend": "onnxruntime", "calls": 10, "images": 1, "seconds": 1.0, "calls_per_s": 10.0,
        ...      "rss_at_warmup_mb": 300.0, "rss_end_mb": 300.5, "rss_growth_mb": 0.5, "rss_peak_growth_mb": 0.7,
        ...      "slope_mb_per_1000": 0.01, "fd_growth": 0, "passed": True}
        >>> print(render_table([r]).splitlines()[2])
        | onnxruntime | 10 | 1 | 1.0 | 10.0 | 300.0 | 0.5 | 0.7 | 0.010 | 0 | yes |
    """
    lines = ["| backend | calls | images | s | calls/s | RSS after warm-up (MB) | growth (MB) | peak growth (MB) "
             "| slope (MB/1000 calls) | fd growth | < 5 MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['calls']} | {r['images']} | {r['seconds']} | {r['calls_per_s']} "
                     f"| {r['rss_at_warmup_mb']} | {r['rss_growth_mb']} | {r['rss_peak_growth_mb']} "
                     f"| {r['slope_mb_per_1000']:.3f} | {r['fd_growth']} | {'yes' if r['passed'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description="predictor soak: RSS and open files over many calls (issue 20 item 4)")
    ap.add_argument("--bundle", type=Path, default=None, help="bundle to use (default: export sam-mini for cpu)")
    ap.add_argument("--backend", action="append", default=None, help="backends (default: onnxruntime, openvino)")
    ap.add_argument("--calls", type=int, default=10_000, help="predict calls per backend (default 10000)")
    ap.add_argument("--images", type=int, default=1_000, help="images per backend (default 1000)")
    ap.add_argument("--every", type=int, default=100, help="sample RSS / fds every N calls (default 100)")
    ap.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    ap.add_argument("--json", "--out", dest="json_out", type=Path, default=None, help="write the JSON report here")
    ap.add_argument("--from-json", type=Path, nargs="+", default=None,
                    help="print the table of earlier runs' JSON reports (a stopped run: from its samples) and exit")
    args = ap.parse_args(argv)
    if args.from_json:
        rows = []
        for path in args.from_json:
            saved = json.loads(path.read_text())
            rows += saved["rows"]
            if saved.get("partial"):
                rows.append(row_from_samples(saved["partial"]["backend"], saved["partial"]["samples"],
                                             calls=args.calls, images=args.images))
        print(render_table(rows))
        if args.json_out:
            from ..fsutil import write_text_atomic

            write_text_atomic(args.json_out, json.dumps({"parts": [json.loads(p.read_text()).get("argv")
                                                                   for p in args.from_json],
                                                         "machine": json.loads(args.from_json[0].read_text())["machine"],
                                                         "rows": rows}, indent=2))
        return rows
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .kill_points import machine

    backends = args.backend or ["onnxruntime", "openvino"]
    meta = {"machine": machine(), "argv": sys.argv[1:]}

    def save(rows: list[dict[str, Any]], partial: dict[str, Any] | None = None) -> None:
        if args.json_out:
            from ..fsutil import write_text_atomic

            write_text_atomic(args.json_out, json.dumps({**meta, "rows": rows, "partial": partial}, indent=2))
    with tempfile.TemporaryDirectory(prefix="soak.") as tmp:
        bundle = args.bundle or export_bundle_for_soak(Path(tmp) / "sam_mini")
        rows = []
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=False) as bar:
            for backend in backends:
                task = bar.add_task(backend, total=args.calls)
                rows.append(soak_backend(
                    bundle, backend, calls=args.calls, images=args.images, every=args.every, threads=args.threads,
                    tick=lambda n, t=task: bar.advance(t, n),
                    on_sample=lambda s, b=backend: save(rows, {"backend": b, "samples": s})))
                save(rows)
    print(render_table(rows))
    if not all(r["passed"] for r in rows):
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main()
