"""Video tracking: memory over a long clip (soak) and the fps table. Not a test: the numbers
depend on the machine; compare them only within one run.

    slimsam-edge export --out /tmp/mini            # the shipped sam-mini, cpu target
    python scripts/bench_video.py /tmp/mini --soak-frames 2000 --fps-frames 240 --rounds 2 \
        --json docs/results/video-bench.json

1. Soak: one procedural clip of --soak-frames frames (3 objects, one leaves and comes back, oracle
   re-acquisition) tracked with each backend through apps.video_eval.evaluate_video; resident
   memory (RSS) is sampled every 100 frames; growth = last sample - the sample at frame 200
   (after warm-up). Also J&F and fps of that clip.
2. fps table, per backend: the tracker loop alone (encode then decode on one thread), the
   threaded pipeline in every-frame mode, and in real-time mode fed at 30 fps like a camera
   (dropped frames counted); latency is capture to sink. Configurations are interleaved in rounds
   so that drift hits them alike; medians over rounds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import psutil

from slimsam_edge.apps.pipeline import Pipeline
from slimsam_edge.apps.tracker import Tracker, interior_point
from slimsam_edge.apps.video_eval import MIN_VISIBLE, evaluate_video
from slimsam_edge.apps.video_io import paced
from slimsam_edge.data.synth_video import ProceduralVideo
from slimsam_edge.devices.profile import detect
from slimsam_edge.predictor import EdgePredictor


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def soak(bundle: str, backend: str, frames: int, seed: int) -> dict:
    predictor = EdgePredictor.from_bundle(bundle, backend=backend, precision="fp32")
    samples: list[tuple[int, float]] = []

    def sample(done: int, total: int | None) -> None:
        if done % 100 == 0 or done == total:
            samples.append((done, round(rss_mb(), 1)))

    result = evaluate_video(predictor, ProceduralVideo(seed=seed, frames=frames, objects=3), progress=sample)
    base = next((mb for done, mb in samples if done >= 200), samples[0][1])
    return {"backend": backend, "frames": frames, "J": round(result["J"], 4), "F": round(result["F"], 4),
            "JF": round(result["JF"], 4), "losses": result["losses"], "reacquisitions": result["reacquisitions"],
            "fps": round(result["fps"], 2), "rss_mb": samples, "rss_growth_mb": round(samples[-1][1] - base, 1),
            "rss_max_mb": max(mb for _, mb in samples)}


def start_tracker(predictor: EdgePredictor, first) -> Tracker:
    tracker = Tracker(predictor)
    for k in (1, 2, 3):
        if frame_has(first, k):
            tracker.add_object(first.image, points=[interior_point(first.mask(k))], obj_id=k)
    return tracker


def frame_has(frame, k: int) -> bool:
    return int(np.count_nonzero(frame.mask(k))) >= MIN_VISIBLE


def run_mode(predictor: EdgePredictor, clip: list, mode: str) -> dict:
    tracker = start_tracker(predictor, clip[0])
    frames = [(f.index, f.image) for f in clip[1:]]
    if mode == "loop":
        t0 = time.perf_counter()
        for _, image in frames:
            tracker.update(image)
        seconds = time.perf_counter() - t0
        return {"fps": len(frames) / seconds, "dropped": 0, "latency_p50_ms": None, "latency_p95_ms": None}
    source = paced(frames, 30.0) if mode == "realtime@30fps" else frames
    stats = Pipeline(source, predictor.encode, lambda i, f, emb: tracker.update(f, embedding=emb),
                     lambda i, f, r: None, realtime=mode != "pipeline").run()
    d = stats.to_dict()
    return {"fps": d["fps"], "dropped": d["dropped"], "latency_p50_ms": d["latency_ms"]["p50"],
            "latency_p95_ms": d["latency_ms"]["p95"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--backends", nargs="+", default=["onnxruntime", "openvino"])
    ap.add_argument("--soak-frames", type=int, default=2000)
    ap.add_argument("--fps-frames", type=int, default=240)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()

    info = detect({})
    report: dict = {"machine": {"cpu": info["cpu_model"], "cores": info["cores_logical"],
                                "cpu_features": info["cpu_features"]}, "soak": [], "fps": []}
    print(f"{info['cpu_model']}, {info['cores_logical']} cores, {', '.join(info['cpu_features'])}", flush=True)
    for backend in args.backends:
        s = soak(args.bundle, backend, args.soak_frames, args.seed)
        print(f"soak {backend}: {s['frames']} frames, RSS {s['rss_mb'][0][1]} -> {s['rss_mb'][-1][1]} MB, "
              f"growth after frame 200 {s['rss_growth_mb']:+.1f} MB, max {s['rss_max_mb']} MB; "
              f"J&F {s['JF']:.3f} (J {s['J']:.3f}, F {s['F']:.3f}), {s['losses']} losses, {s['fps']:.1f} fps",
              flush=True)
        report["soak"].append(s)

    clip = list(ProceduralVideo(seed=args.seed + 1, frames=args.fps_frames + 1, objects=3))
    predictors = {b: EdgePredictor.from_bundle(args.bundle, backend=b, precision="fp32") for b in args.backends}
    modes = ["loop", "pipeline", "realtime@30fps"]
    runs: dict = {}
    for r in range(args.rounds):
        order = [(b, m) for b in args.backends for m in modes]
        for backend, mode in (order if r % 2 == 0 else order[::-1]):
            runs.setdefault((backend, mode), []).append(run_mode(predictors[backend], clip, mode))
    print(f"\n| backend | mode | fps | dropped | latency p50 ms | latency p95 ms |\n|---|---|---|---|---|---|")
    for (backend, mode), rs in runs.items():
        row = {k: (statistics.median(x[k] for x in rs) if rs[0][k] is not None else None) for k in rs[0]}
        report["fps"].append({"backend": backend, "mode": mode, "rounds": len(rs), **row})
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        print(f"| {backend} | {mode} | {row['fps']:.1f} | {row['dropped']:.0f} | {fmt(row['latency_p50_ms'])} | "
              f"{fmt(row['latency_p95_ms'])} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
