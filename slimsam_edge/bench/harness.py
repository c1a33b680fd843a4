"""Benchmark one (backend, precision) of a bundle: cold start, per-stage latency, peak memory.

Each configuration runs in its own process (:mod:`slimsam_edge.bench.worker`) so that peak RSS
and thread pools belong to that configuration alone.

Illustration (not run as a doctest: it needs files or a model)::

    cfg = BenchConfig(bundle="bundle/", backend="onnxruntime")
    result = run_config(cfg)
    result["encoder"]["p50_ms"]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from ..errors import SlimSamEdgeError, UsageError
from .stats import latency_stats


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark configuration.

    Arguments:
        bundle: bundle folder.
        backend: runtime name.
        precision: artifact precision or run-time hint ("bf16" on OpenVINO / torch).
        threads: intra-op threads (None = runtime default).
        image_hw: size of the synthetic input image (height, width) unless ``image`` is given.
        image: optional image path.
        warmup: untimed runs before timing.
        runs: timed encoder runs.
        prompts: timed decoder runs (one prompt each).
        points: points per prompt.
        seed: prompt / image seed.
        resize: preprocessing resize, "sam" (exact) or "fast" (cv2).
    """

    bundle: str
    backend: str
    precision: str = "fp32"
    threads: int | None = None
    image_hw: tuple[int, int] = (1500, 2250)
    image: str | None = None
    warmup: int = 2
    runs: int = 10
    prompts: int = 50
    points: int = 1
    seed: int = 0
    resize: str = "sam"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    On Linux this reads VmHWM, which starts afresh at exec; ``ru_maxrss`` would carry over the
    parent's peak into a benchmark subprocess.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20


def _image(cfg: BenchConfig) -> np.ndarray:
    if cfg.image:
        from ..data.images import read_image

        return read_image(cfg.image)
    from ..data.procedural import generate_sample

    return generate_sample(cfg.seed, cfg.image_hw)[0]


def bench_in_process(cfg: BenchConfig, tick: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run ``cfg`` in this process and return its measurements."""
    from ..predictor import EdgePredictor

    tick = tick or (lambda: None)
    image = _image(cfg)
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    pred = EdgePredictor.from_bundle(
        cfg.bundle, backend=cfg.backend, precision=cfg.precision, threads=cfg.threads, resize=cfg.resize
    ).activate()
    cold = time.perf_counter() - t0
    pre, enc = [], []
    for i in range(cfg.warmup + cfg.runs):
        pred.set_image(image)
        if i >= cfg.warmup:
            pre.append(pred.timings["preprocess"])
            enc.append(pred.timings["encoder"])
        tick()
    rng = np.random.default_rng(cfg.seed)
    h, w = image.shape[:2]
    dec, post, total = [], [], []
    for i in range(cfg.warmup + cfg.prompts):
        pts = np.stack([rng.uniform(0, w, cfg.points), rng.uniform(0, h, cfg.points)], axis=1)
        t = time.perf_counter()
        pred.predict(pts, np.ones(cfg.points), multimask_output=True)
        dt = time.perf_counter() - t
        if i >= cfg.warmup:
            dec.append(pred.timings["decoder"])
            post.append(pred.timings["postprocess"])
            total.append(dt)
        tick()
    return {
        "config": asdict(cfg),
        "image_hw": [h, w],
        "cold_start_s": round(cold, 4),
        "encoder_session_s": round(pred.encoder.activate_seconds or 0.0, 4),
        "decoder_session_s": round(pred.decoder.activate_seconds or 0.0, 4),
        "preprocess": latency_stats(pre),
        "encoder": latency_stats(enc),
        "decoder": latency_stats(dec),
        "postprocess": latency_stats(post),
        "decoder_plus_postprocess": latency_stats(total),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_sessions_mb": round(rss_before, 1),
        "notes": pred.encoder.notes + pred.decoder.notes,
    }


#: the bench process's pid, given to its worker so that the worker dies with it (worker.die_with_parent)
PARENT_ENV = "SLIMSAM_EDGE_BENCH_PARENT"


def run_config(cfg: BenchConfig, *, timeout: float | None = None) -> dict[str, Any]:
    """Run ``cfg`` in a fresh Python process (no shell) and return its result dict; the process
    dies with this one (a killed bench leaves no worker measuring on)."""
    cmd = [sys.executable, "-m", "slimsam_edge.bench.worker", json.dumps(asdict(cfg))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, PARENT_ENV: str(os.getpid())})
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        if proc.returncode == 2:
            raise UsageError(msg.removeprefix("error: "))
        raise SlimSamEdgeError(f"benchmark of {cfg.backend}/{cfg.precision} failed: {msg}")
    return json.loads(lines[-1])
