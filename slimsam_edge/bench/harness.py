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
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import SlimSamEdgeError, UsageError
from ..runtimes.tuning import RuntimeTuning
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
        scenario: what one query is (:data:`~slimsam_edge.bench.scenarios.SCENARIOS`): "click"
            (encoder + prompts), "video" (frames through the tracking pipeline) or "everything".
        duration_s: SingleStream: keep querying until this many seconds have passed too
            (``runs`` / ``prompts`` are then the minimum counts).
        energy: energy source (:func:`~slimsam_edge.devices.energy.open_meter`), "none" to skip.
        points_per_side: the "everything" scenario's grid.
        objects: the "video" scenario's objects tracked per frame (1: click-to-mask tracking, the
            encoder and one prompt per frame).
        raw: also return every latency (seconds) per stage, for pooling repeats.
        profile: also profile the encoder and decoder graphs once (``profile_runs`` inferences
            each) with the runtime's profiler: time per op group.
        decoder_precision: the decoder's precision when it differs from ``precision``
            (:meth:`~slimsam_edge.predictor.EdgePredictor.from_bundle`); ``None``: ``precision``.
        tuning: the runtime tuning (:class:`~slimsam_edge.runtimes.tuning.RuntimeTuning`: hint,
            encoder / decoder threads, encode requests, streams; ``encode_requests`` is also the
            video scenario's encode threads).

    Example:
        >>> cfg = BenchConfig(bundle="b", backend="openvino", tuning=RuntimeTuning(hint="throughput"))
        >>> BenchConfig.from_record(asdict(cfg)) == cfg
        True
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
    scenario: str = "click"
    duration_s: float = 0.0
    energy: str = "none"
    points_per_side: int = 16
    objects: int = 3
    raw: bool = False
    profile: bool = False
    profile_runs: int = 3
    decoder_precision: str | None = None
    tuning: RuntimeTuning = field(default_factory=RuntimeTuning)

    @classmethod
    def from_record(cls, raw: dict[str, Any]) -> "BenchConfig":
        """The configuration ``asdict`` (a result's ``config``, the worker's argument) was made from;
        its tuning validated again."""
        raw = dict(raw)
        raw["image_hw"] = tuple(raw.get("image_hw", (1500, 2250)))
        raw["tuning"] = RuntimeTuning(**(raw.get("tuning") or {}))
        return cls(**raw)


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
    from ..devices.energy import open_meter
    from ..predictor import EdgePredictor
    from .scenarios import get_scenario

    scenario = get_scenario(cfg.scenario)
    tick = tick or (lambda: None)
    image = _image(cfg)
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    pred = EdgePredictor.from_bundle(
        cfg.bundle, backend=cfg.backend, precision=cfg.precision, threads=cfg.threads, resize=cfg.resize,
        decoder_precision=cfg.decoder_precision,
        tuning=cfg.tuning,
    ).activate()
    cold = time.perf_counter() - t0
    with open_meter(cfg.energy) as meter:
        out = scenario.run(pred, cfg, image, meter, tick)
    h, w = image.shape[:2]
    result = {
        "config": asdict(cfg),
        "scenario": scenario.name,
        "decoder_precision": pred.decoder_precision,
        "image_hw": [h, w],
        "cold_start_s": round(cold, 4),
        "encoder_session_s": round(pred.encoder.activate_seconds or 0.0, 4),
        "decoder_session_s": round(pred.decoder.activate_seconds or 0.0, 4),
        **{stage: latency_stats(values) for stage, values in out["stages"].items()},
        "counts": out["counts"],
        "energy": out["energy"],
        "extra": out["extra"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_sessions_mb": round(rss_before, 1),
        "notes": pred.encoder.notes + pred.decoder.notes,
        "tuning": pred.tuning.to_dict(),
    }
    if cfg.profile:
        result["profile"] = profile_graphs(pred, image, cfg.profile_runs)
    if cfg.raw:
        result["raw_s"] = {stage: [round(v, 7) for v in values] for stage, values in out["stages"].items()}
    return result


def profile_graphs(pred: Any, image: np.ndarray, runs: int) -> dict[str, Any]:
    """Each graph of ``pred`` (encoder, decoder) under its runtime's profiler, fed what one
    ``set_image`` and one point prompt feed it; a backend without a profiler hook says why."""
    from ..errors import RunnerError

    feeds: dict[str, dict] = {}
    runners = {"image_encoder": pred.encoder, "mask_decoder": pred.decoder}
    for name, runner in runners.items():
        def record(feed: dict, _name: str = name, _infer: Any = runner.infer) -> Any:
            feeds.setdefault(_name, {k: np.array(v) for k, v in feed.items()})
            return _infer(feed)

        runner.infer = record  # an instance attribute in front of the method, removed below
    try:
        pred.set_image(image)
        h, w = image.shape[:2]
        pred.predict(np.array([[w / 2, h / 2]]), np.ones(1), multimask_output=True)
    finally:
        for runner in runners.values():
            del runner.infer
    out: dict[str, Any] = {}
    for name, runner in runners.items():
        try:
            out[name] = runner.profile(feeds[name], runs)
        except RunnerError as err:
            out[name] = {"reason": str(err)}
    return out


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
        dec = f" (decoder {cfg.decoder_precision})" if cfg.decoder_precision not in (None, cfg.precision) else ""
        raise SlimSamEdgeError(f"benchmark of {cfg.backend}/{cfg.precision}{dec} failed: {msg}")
    return json.loads(lines[-1])
