"""Regenerate docs/results/threads.md: OpenVINO's performance hints, thread counts and two encode
requests in the video pipeline (issue 18, item 5).

One command (``python scripts/threads.py``): the ``bench --scenario video`` query (a procedural
clip with three tracked objects through capture -> encode -> track -> sink,
:class:`~slimsam_edge.bench.scenarios.Video`: every frame kept, frames per second and
capture-to-mask latency per frame) for each configuration of :data:`CONFIGS`
(:class:`~slimsam_edge.runtimes.tuning.RuntimeTuning`: hint, threads per graph, encode requests =
the pipeline's encode threads), on two OpenVINO fp32 bundles:

* the shipped sam-mini (256 px), exported now (or reused from ``--workdir``);
* the SlimSAM-77 architecture at 1024 px with random weights
  (:func:`~slimsam_edge.research.resolution_report.speed_bundle`).

Every configuration's predictor is made once; then each round runs the clip through every
configuration, the order rotating each round, so a load change on a shared machine hits all of
them alike. The machine, its CPU flags, the load average and what OpenVINO compiled each encoder
with (hint, NUM_STREAMS, INFERENCE_NUM_THREADS, OPTIMAL_NUMBER_OF_INFER_REQUESTS) are recorded.

Example:
    >>> [c.name for c in CONFIGS]
    ['latency', 'throughput-x2', 'split-2/1', 'latency-x2', 'throughput-x1']
    >>> rows = table_rows({"configs": [{"name": "latency", "tuning": {"hint": None, "encoder_threads": None,
    ...     "decoder_threads": None, "encode_requests": 1}, "fps": 2.0, "fps_rounds": [1.9, 2.1],
    ...     "latency_p50_ms": 900.0, "latency_p95_ms": 950.0, "compiled": "NUM_STREAMS=1"}]})
    >>> rows[0]
    ('latency', 'latency', 'default', 'default', '1', '2.00', '1.90, 2.10', '1.00x', '900', '950', 'NUM_STREAMS=1')
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..fsutil import write_text_atomic
from . import load_note, publish
from ..runtimes.tuning import RuntimeTuning


@dataclass(frozen=True)
class Config:
    """One measured configuration: a name, what it means, and its tuning."""

    name: str
    meaning: str
    tuning: RuntimeTuning


#: the configurations, in table order (the first is the baseline the ratios are taken to)
CONFIGS = (
    Config("latency", "LATENCY hint, runtime-default threads, 1 request, 1 encode thread", RuntimeTuning()),
    Config("throughput-x2", "THROUGHPUT hint, 2 encoder requests, 2 encode threads",
           RuntimeTuning(hint="throughput", encode_requests=2)),
    Config("split-2/1", "LATENCY hint, encoder 2 threads, decoder 1 thread, 1 request",
           RuntimeTuning(encoder_threads=2, decoder_threads=1)),
    Config("latency-x2", "LATENCY hint, 2 encoder requests, 2 encode threads",
           RuntimeTuning(encode_requests=2)),
    Config("throughput-x1", "THROUGHPUT hint, 1 request, 1 encode thread (what the hint costs one frame)",
           RuntimeTuning(hint="throughput")),
)

#: the bundles measured: key -> (label, frames per round)
MODELS = {
    "sam-mini": ("sam-mini (shipped, trained) @256", 24),
    "p77": ("SlimSAM-77 architecture @1024, random weights", 5),
}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def mini_bundle(workdir: Path) -> Path:
    """An OpenVINO fp32 bundle of the shipped sam-mini under ``workdir`` (reused when there)."""
    from ..assets import require_reference_model
    from ..bundle import load_bundle
    from ..exporters.bundle_export import export_bundle
    from ..models.io import load_model
    from .precision_report import _shipped_key
    from .resolution_report import _speed_profile

    out, key = workdir / "sam-mini", _shipped_key()
    if (out / "manifest.json").exists() and load_bundle(out).manifest.model.get("id") == key:
        return out
    _say("sam-mini: export (OpenVINO fp32)")
    sam, spec = load_model(require_reference_model())
    export_bundle(sam, spec, out, target=_speed_profile(), model_id=key, validate=False)
    return out


def bundle_for(model: str, workdir: Path) -> Path:
    """The bundle of ``model`` (a key of :data:`MODELS`), exported into ``workdir`` if needed."""
    from .resolution_report import speed_bundle

    return mini_bundle(workdir) if model == "sam-mini" else speed_bundle(1024, workdir)


def _compiled(pred: Any) -> str:
    """What OpenVINO compiled the encoder with (from its runner's notes)."""
    note = next((n for n in pred.encoder.notes if n.startswith("device:")), "")
    keep = [p.strip() for p in note.split(",") if p.strip().startswith(
        ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS"))]
    return ", ".join(keep)


def measure_model(model: str, bundle: Path, configs: Sequence[Config], rounds: int, frames: int,
                  image_hw: tuple[int, int]) -> dict[str, Any]:
    """Every configuration's video-pipeline fps and capture-to-mask latency on ``bundle``,
    ``rounds`` interleaved rounds of ``frames`` frames each."""
    from ..bench.harness import BenchConfig
    from ..bench.scenarios import Video
    from ..devices.energy import open_meter
    from ..predictor import EdgePredictor

    preds, cfgs = {}, {}
    for c in configs:
        preds[c.name] = EdgePredictor.from_bundle(bundle, backend="openvino", precision="fp32", resize="fast",
                                                  tuning=c.tuning).activate()
        cfgs[c.name] = BenchConfig(bundle=str(bundle), backend="openvino", runs=frames, warmup=1, seed=0,
                                   image_hw=image_hw, tuning=c.tuning)
    fps: dict[str, list[float]] = {c.name: [] for c in configs}
    lat: dict[str, list[float]] = {c.name: [] for c in configs}
    names = [c.name for c in configs]
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            with open_meter("none") as meter:
                out = Video().run(preds[name], cfgs[name], None, meter, lambda: None)  # type: ignore[arg-type]
            fps[name].append(out["extra"]["fps"])
            lat[name] += [v * 1000 for v in out["stages"]["frame"]]
            _say(f"{model} round {r + 1}/{rounds} {name}: {out['extra']['fps']:.2f} fps")
    rows = []
    for c in configs:
        ls = sorted(lat[c.name])
        rows.append({"name": c.name, "meaning": c.meaning, "tuning": c.tuning.to_dict(),
                     "fps": round(statistics.median(fps[c.name]), 3), "fps_rounds": [round(v, 3) for v in fps[c.name]],
                     "latency_p50_ms": round(statistics.median(ls), 1),
                     "latency_p95_ms": round(ls[min(len(ls) - 1, int(round(0.95 * (len(ls) - 1))))], 1),
                     "frames": len(ls), "compiled": _compiled(preds[c.name]),
                     "notes": preds[c.name].encoder.notes + preds[c.name].decoder.notes})
    for p in preds.values():
        p.close()
    return {"model": model, "label": MODELS[model][0], "bundle": str(bundle), "rounds": rounds,
            "frames_per_round": frames, "image_hw": list(image_hw), "configs": rows}


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Table rows of one model: name, hint, threads, requests, fps (median, each round), fps vs the
    first row, latency."""
    base = result["configs"][0]["fps"] or 1.0
    out = []
    for r in result["configs"]:
        t = r["tuning"]
        out.append((r["name"], t["hint"] or "latency", str(t["encoder_threads"] or "default"),
                    str(t["decoder_threads"] or "default"), str(t["encode_requests"]), f"{r['fps']:.2f}",
                    ", ".join(f"{v:.2f}" for v in r["fps_rounds"]), f"{r['fps'] / base:.2f}x", f"{r['latency_p50_ms']:.0f}", f"{r['latency_p95_ms']:.0f}",
                    r["compiled"]))
    return out


def render(result: dict[str, Any], command: str) -> str:
    """The Markdown page."""
    m = result["machine"]
    lines = ["# Threads and overlap: OpenVINO hints, thread counts, two encode requests", "",
             f"Generated by `{command}` in {result['elapsed_s'] / 60:.1f} min.", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} logical cores, flags: {', '.join(m.get('isa', []))}; "
             f"native bf16: {m.get('supports_bf16')}. Load average at start {result['loadavg_start']}, at end "
             f"{result['loadavg_end']} ({load_note(result['loadavg_start'], result['loadavg_end'], m.get('cores'))}).",
             "",
             "What one frame is: `slimsam-edge bench --scenario video`'s query. A procedural clip "
             f"({result['image_hw'][0]}x{result['image_hw'][1]}) with three tracked objects through the threaded "
             "pipeline (capture -> encode -> track -> sink), every frame kept; fps = frames delivered per second of "
             "the run, latency = from the frame being read to its masks reaching the sink (in every-frame mode "
             "this includes the wait in the bounded queues, so more frames in flight means more latency). "
             "OpenVINO fp32; `encode requests` = encoder infer requests = encode threads in the pipeline; "
             "the hint applies to the encoder (the decoder runs one request on one thread, LATENCY).", "",
             "Configurations:", ""]
    lines += [f"- `{c['name']}`: {c['meaning']}" for c in result["models"][0]["configs"]]
    lines.append("")
    for model in result["models"]:
        lines += [f"## {model['label']}", "",
                  f"{model['rounds']} interleaved rounds of {model['frames_per_round']} frames (fps: median of the "
                  "rounds; latency percentiles over every frame).", "",
                  "| config | hint | encoder threads | decoder threads | encode requests | fps | fps per round | "
                  "fps vs latency | latency p50 ms | latency p95 ms | the encoder compiled with |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in table_rows(model)]
        lines.append("")
    lines += ["## Reading it", "", *result.get("reading", []), ""]
    load = float(str(result["loadavg_start"]).split()[0])
    if load > (m.get("cores") or 1):
        lines += [f"The 1-minute load average ({load:.1f}) was above the {m.get('cores')} cores while this ran: "
                  "every configuration got a share of the cores, an inference on several threads then waits at "
                  "each of its barriers for threads that are descheduled, and one on fewer threads (a THROUGHPUT "
                  "stream) loses less that way. On a quiet machine the order of the rows may differ; rerun the "
                  "command there before choosing a default.", ""]
    return "\n".join(lines) + "\n"


def reading(result: dict[str, Any]) -> list[str]:
    """Sentences on what the numbers say, from the numbers: the baseline, the best configuration,
    each configuration's ratio, and the round-to-round spread that bounds what is a difference.

    Example:
        >>> rows = [{"name": n, "fps": f, "fps_rounds": r, "latency_p50_ms": 100.0} for n, f, r in
        ...         [("latency", 1.0, [0.9, 1.1]), ("throughput-x2", 1.5, [1.4, 1.6])]]
        >>> print(reading({"models": [{"label": "m", "configs": rows}]})[0])
        - m: LATENCY baseline 1.00 fps; fastest `throughput-x2`, 1.50 fps (1.50x; latency p50 100 ms vs 100 ms). Ratios to the baseline: throughput-x2 1.50x. Round-to-round spread of one configuration's fps: up to 22%; a ratio closer to 1 than that is not a measured difference.
    """
    out = []
    for model in result["models"]:
        rows = model["configs"]
        base = rows[0]
        best = max(rows, key=lambda r: r["fps"])
        spread = max(max(r["fps_rounds"]) / max(min(r["fps_rounds"]), 1e-9) - 1 for r in rows)
        ratios = ", ".join(f"{r['name']} {r['fps'] / (base['fps'] or 1):.2f}x" for r in rows[1:])
        out.append(f"- {model['label']}: LATENCY baseline {base['fps']:.2f} fps; fastest `{best['name']}`, "
                   f"{best['fps']:.2f} fps ({best['fps'] / (base['fps'] or 1):.2f}x; latency p50 "
                   f"{best['latency_p50_ms']:.0f} ms vs {base['latency_p50_ms']:.0f} ms). Ratios to the baseline: "
                   f"{ratios}. Round-to-round spread of one configuration's fps: up to {spread:.0%}; a ratio "
                   "closer to 1 than that is not a measured difference.")
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry (``python scripts/threads.py --help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description="OpenVINO hints, threads and encode overlap -> docs/results/threads.md")
    ap.add_argument("--workdir", type=Path, default=Path("runs/threads"))
    ap.add_argument("--results", type=Path, default=Path("docs/results/threads.md"))
    ap.add_argument("--models", nargs="*", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--configs", nargs="*", choices=[c.name for c in CONFIGS], default=[c.name for c in CONFIGS])
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    ap.add_argument("--frames", type=int, default=None, help="frames per round (default: 24 sam-mini, 5 SlimSAM-77)")
    ap.add_argument("--image-size", default="480x640", help="clip HxW")
    ap.add_argument("--render-only", action="store_true",
                    help="re-render the page from its JSON (the measured numbers and the command that measured them)")
    a = ap.parse_args(argv)
    if a.render_only:
        result = json.loads(a.results.with_suffix(".json").read_text())
        result["reading"] = reading(result)
        write_text_atomic(a.results, render(result, result["command"]))
        write_text_atomic(a.results.with_suffix(".json"), json.dumps(result, indent=2))
        print(f"wrote {a.results}")
        return result
    from ..bench.matrix import machine_summary
    from ..errors import UsageError

    try:
        hw = tuple(int(v) for v in a.image_size.lower().split("x"))
        if len(hw) != 2 or min(hw) < 32 or a.rounds < 1 or (a.frames is not None and a.frames < 2):
            raise ValueError
    except ValueError:
        raise UsageError("--image-size is HxW (each >= 32), --rounds >= 1, --frames >= 2") from None
    configs = [c for c in CONFIGS if c.name in a.configs]
    if configs[0].name != CONFIGS[0].name:
        configs.insert(0, CONFIGS[0])  # the baseline the ratios are taken to
    t0 = time.perf_counter()
    bundles = {m: bundle_for(m, a.workdir) for m in a.models}  # exported before any timing
    result: dict[str, Any] = {"machine": machine_summary(),
                              "loadavg_start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
                              "image_hw": list(hw), "models": []}
    for m in a.models:
        result["models"].append(measure_model(m, bundles[m], configs, a.rounds, a.frames or MODELS[m][1], hw))  # type: ignore[arg-type]
    result["loadavg_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    result["reading"] = reading(result)
    result["command"] = command = ("python scripts/threads.py " + shlex.join(argv)).strip()
    publish(a.results, render(result, command), result)
    return result


if __name__ == "__main__":  # python -m slimsam_edge.research.threads_report
    main()
