"""Regenerate docs/results/resolution.md: input resolution as a compression axis (issue 18, item 2).

Two measurements, one command (``python scripts/resolution.py``):

* **mIoU cost on sam-mini.** The shipped 256 px teacher is compressed with identical settings at
  its own size (the baseline) and at each smaller ``--image-size`` (default 192 and 128), then
  every model is measured like ``slimsam-edge eval MODEL`` does (:func:`slimsam_edge.eval.run.run_eval`:
  the default 64 held-out procedural images of seed 1001 at 256 px; a smaller student gets them
  resized by its predictor and answers at 256 px), point and box mIoU, as a share of the
  teacher's point mIoU.
* **Speed at 1024 / 768 / 512** of the SlimSAM-77 architecture (random weights, moved to each size by
  :func:`slimsam_edge.models.regrid.resample_model`): an OpenVINO bundle per size (fp32 IR, also
  run with the bf16 hint), encoder p50 of ``EdgePredictor.set_image``, every configuration timed
  once per round, rounds interleaved in one process (the start rotates), so a load change on a
  shared machine hits all of them alike.

Finished compress runs under ``--workdir`` with the same settings (``report.json``), their ``eval``
results (``eval.json``, for the same model file) and the speed bundles are reused.

Example:
    >>> miou_rows({"teacher": {"point": 0.8, "box": 0.9}, "runs": [{"image_size": 128, "point": 0.6, "box": 0.7,
    ...            "encoder_params": 10, "elapsed_s": 60.0}]})[0][-2:]
    ('75.0%', '87.5%')
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ..fsutil import write_text_atomic
from . import load_note, publish

#: the demo's compression settings (slimsam_edge/demo.py: ratio 0.5, 40 steps per phase, lr 1e-3)
DEMO_SETTINGS: dict[str, Any] = {"ratio": 0.5, "steps": 40, "lr": 1e-3, "eval_images": 16}
#: OpenVINO precisions timed (bf16: the fp32 IR with the bf16 inference-precision hint)
SPEED_PRECISIONS = ("fp32", "bf16")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def finished_run(out: Path, settings: dict[str, Any], image_size: int | None = None) -> bool:
    """Whether ``out`` holds a finished compress run (its report and model) made with ``settings``
    (``ratio`` + other :class:`~slimsam_edge.compress.pipeline.CompressConfig` fields) at
    ``image_size`` (``None``: the teacher's).

    Example:
        >>> finished_run(Path("/nonexistent"), {"ratio": 0.5, "steps": 40})
        False
    """
    from ..compress.pipeline import RUN_ONLY, CompressConfig

    done = out / "report.json"
    if not (done.is_file() and (out / "model.safetensors").is_file()):
        return False
    job = {k: v for k, v in settings.items() if k != "ratio"}
    if image_size is not None:
        job["image_size"] = image_size
    want = json.loads(json.dumps(CompressConfig(ratio=settings["ratio"], **job).identity()))
    got = json.loads(done.read_text(encoding="utf-8")).get("config") or {}
    return {k: v for k, v in got.items() if k not in RUN_ONLY} == want


def compress_run(size: int, teacher_size: int, workdir: Path, settings: dict[str, Any], images: int,
                 threads: int | None, name: str | None = None) -> dict[str, Any]:
    """Compress the shipped sam-mini at input ``size`` into ``workdir/<name>`` (default
    ``mini-<size>``; or reuse a finished run of the same settings there); the run's report.
    ``settings`` holds ``ratio`` and any other :class:`~slimsam_edge.compress.pipeline.CompressConfig`
    field (``steps``, ``lr``, ``global_attention``, ...)."""
    from ..compress.job import CompressRequest, run_request

    name = name or f"mini-{size}"
    out = workdir / name
    job = {k: v for k, v in settings.items() if k != "ratio"}
    if size != teacher_size:
        job["image_size"] = size
    if finished_run(out, settings, image_size=job.get("image_size")):
        _say(f"{name}: reusing {out / 'report.json'}")
        return json.loads((out / "report.json").read_text())
    resume = (out / "checkpoint.pt").exists()  # an interrupted run of the same flags continues
    _say(f"{name}: {'resuming' if resume else 'compressing'} (ratio {settings['ratio']}, "
         f"{settings['steps']} steps per phase)")
    return run_request(CompressRequest(out, ratio=settings["ratio"], images=images, device="cpu",
                                       cache_teacher=workdir / "teacher-cache", threads=threads, resume=resume,
                                       settings=job), quiet=True)  # type: ignore[return-value]


def measure_miou(sizes: Sequence[int], workdir: Path, settings: dict[str, Any], images: int,
                 threads: int | None) -> dict[str, Any]:
    """The teacher's and each student's point / box mIoU (``eval``'s default data)."""
    from ..assets import require_reference_model
    from ..eval.run import run_eval
    from ..models.io import load_model

    teacher = require_reference_model()
    t_size = load_model(teacher)[1].image_size

    def miou(path: Path, record: Path) -> dict[str, float]:
        """``eval``'s point / box mIoU of ``path``, kept in ``record`` for the same model file."""
        import hashlib

        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if record.exists():
            kept = json.loads(record.read_text())
            if kept.get("sha256") == digest:
                return kept["miou"]
        rep = run_eval(path, threads=threads)
        got = {"point": round(float(rep["point"]["miou"]), 4), "box": round(float(rep["box"]["miou"]), 4),
               "n_images": rep["n_images"]}
        write_text_atomic(record, json.dumps({"sha256": digest, "miou": got}))
        return got

    runs = []
    for size in sizes:
        rep = compress_run(size, t_size, workdir, settings, images, threads)
        _say(f"mini-{size}: eval")
        runs.append({"image_size": size, **miou(workdir / f"mini-{size}" / "model.safetensors",
                                                workdir / f"mini-{size}" / "eval.json"),
                     "encoder_params": rep["student"]["params"]["image_encoder"],
                     "elapsed_s": rep["elapsed_s"], "window": _window(workdir / f"mini-{size}" / "model.safetensors")})
    _say("teacher: eval")
    return {"teacher": {"image_size": t_size, **miou(teacher, workdir / "teacher-eval.json")}, "runs": runs, "settings": settings,
            "images": images}


def _window(path: Path) -> int:
    from ..models.io import embedded_spec, read_metadata

    return embedded_spec(read_metadata(path)).encoder.window_size  # type: ignore[union-attr]


def _speed_profile():
    from dataclasses import replace

    from ..devices import load_profile

    cpu = load_profile("cpu")
    return replace(cpu, name="cpu", backends=("openvino",), precisions={"openvino": ("fp32",)},
                   graphs={"openvino": ("image_encoder", "mask_decoder_lowres")}, default_backend="openvino")


def speed_bundle(size: int, workdir: Path) -> Path:
    """An OpenVINO fp32 bundle of SlimSAM-77 (random weights, seed 0) moved to input ``size``, under
    ``workdir`` (reused when already there). Not validated against PyTorch: random weights, and the
    resolution route's export is validated by the tests; bf16 runs it with the hint."""
    from ..bundle import load_bundle
    from ..exporters.bundle_export import export_bundle
    from ..models.build import build_sam, random_init_
    from ..models.regrid import resample_model
    from ..models.spec import PRESETS

    out, key = workdir / f"p77-{size}", f"vit_p77@{size}:random-seed0"
    if (out / "manifest.json").exists() and load_bundle(out).manifest.model.get("id") == key:
        return out
    _say(f"p77-{size}: export (OpenVINO fp32)")
    base = PRESETS["vit_p77"]
    sam, spec = resample_model(random_init_(build_sam(base), seed=0), base, size)
    export_bundle(sam, spec, out, target=_speed_profile(), model_id=key, validate=False)
    return out


def measure_speed(sizes: Sequence[int], workdir: Path, runs: int, threads: int | None,
                  image_hw: tuple[int, int] = (1500, 2250)) -> dict[str, Any]:
    """Encoder p50 (ms) of SlimSAM-77 at each input size, OpenVINO fp32 and bf16, interleaved."""
    from ..bundle import load_bundle
    from ..data.procedural import generate_sample
    from ..predictor import EdgePredictor

    import os

    from ..devices import detected, why_not

    preds, meta = {}, {}
    load_start = " ".join(f"{v:.2f}" for v in os.getloadavg())
    precisions = [p for p in SPEED_PRECISIONS if not why_not(p, detected())]
    refused = {p: why_not(p, detected()) for p in SPEED_PRECISIONS if p not in precisions}
    for size in sizes:
        out = speed_bundle(size, workdir)
        enc = load_bundle(out).manifest.model["spec"]["encoder"]
        meta[size] = {"grid": enc["img_size"] // enc["patch_size"], "window": enc["window_size"]}
        for p in precisions:
            preds[(size, p)] = EdgePredictor.from_bundle(out, backend="openvino", precision=p, threads=threads,
                                                         resize="fast").activate()
    image = generate_sample(0, image_hw)[0]
    keys = list(preds)
    for k in keys:  # warm-up
        preds[k].set_image(image)
    times: dict[tuple[int, str], list[float]] = {k: [] for k in keys}
    for r in range(runs):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            preds[k].set_image(image)
            times[k].append(preds[k].timings["encoder"] * 1000)
    rows = [{"image_size": s, **meta[s], "precision": p, "encoder_p50_ms": round(statistics.median(times[(s, p)]), 1),
             "encoder_min_ms": round(min(times[(s, p)]), 1)} for s, p in keys]
    return {"rows": rows, "runs": runs, "threads": threads, "image_hw": list(image_hw), "precisions": precisions,
            "refused": refused,
            "loadavg": [load_start, " ".join(f"{v:.2f}" for v in os.getloadavg())]}


def _speed(a: argparse.Namespace, record: Path) -> dict[str, Any]:
    """Time now, or (``--reuse-speed``) take ``record`` when it holds the same sizes, runs and threads."""
    if a.reuse_speed and record.exists():
        kept = json.loads(record.read_text())
        if (sorted({r["image_size"] for r in kept["rows"]}) == sorted(a.speed_sizes) and kept["runs"] == a.runs
                and kept["threads"] == a.threads):
            _say(f"speed: reusing {record}")
            return kept
    speed = measure_speed(a.speed_sizes, a.workdir, a.runs, a.threads)
    write_text_atomic(record, json.dumps(speed, indent=2))
    return speed


def miou_rows(miou: dict[str, Any]) -> list[tuple[str, ...]]:
    """Table rows: size, window, encoder params, time, point / box mIoU, % of the teacher's point mIoU."""
    tp = miou["teacher"]["point"]
    return [(str(r["image_size"]), str(r.get("window", "?")), f"{r['encoder_params']:,}", f"{r['elapsed_s'] / 60:.1f}",
             f"{r['point']:.4f}", f"{r['box']:.4f}", f"{100 * r['point'] / tp:.1f}%", f"{100 * r['box'] / tp:.1f}%")
            for r in miou["runs"]]


def render(result: dict[str, Any], command: str) -> str:
    """The Markdown page."""
    m = result.get("machine", {})
    lines = ["# Input resolution as a compression axis (`compress --image-size`)", "",
             f"Generated by `{command}` in {result['elapsed_s'] / 60:.1f} min.", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} logical cores, flags: {', '.join(m.get('isa', []))}; "
             f"native bf16: {m.get('supports_bf16')}. Load average at start {result.get('loadavg_start')}, at end "
             f"{result.get('loadavg_end')} ({load_note(result.get('loadavg_start', ''), result.get('loadavg_end', ''), m.get('cores'))}).",
             ""]
    miou = result.get("miou")
    if miou:
        s, t = miou["settings"], miou["teacher"]
        lines += ["## mIoU cost on sam-mini (256 px teacher)", "",
                  f"`compress` with the demo's settings for every size: ratio {s['ratio']}, {s['steps']} steps per "
                  f"phase, lr {s['lr']}, alternate + disturbed Taylor, {miou['images']} procedural images, teacher "
                  "cache; then `slimsam-edge eval MODEL` (64 held-out procedural images, seed 1001, 256 px; a "
                  "smaller student's predictor resizes them to its size and answers at 256 px).", "",
                  f"Teacher (sam-mini, 256 px): point mIoU {t['point']:.4f}, box {t['box']:.4f}.", "",
                  "| input size | window | encoder params | compress min | point mIoU | box mIoU | point kept (% of teacher point) | box (% of teacher point) |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in miou_rows(miou)]
        if any(r["image_size"] == t["image_size"] for r in miou["runs"]):
            lines += ["", f"The {t['image_size']} row is the same compression without `--image-size`: the difference to "
                      "it is what the resolution costs; its difference to the teacher is what pruning and the short "
                      "schedule cost.", ""]
        else:
            lines += ["", f"This run has no baseline at the teacher's {t['image_size']} px (the same compression without "
                      "`--image-size`); `docs/results/demo-compression.md` measured these settings at 256 px (run "
                      "`lr1e3c`, on the demo's 32 images). Run the command without `--mini-sizes` for it.", ""]
    speed = result.get("speed")
    if not speed:
        lines += ["## Speed", "", "Not timed in this run: the SlimSAM-77 architecture at 1024 / 768 / 512 px, plain and "
                  "windowed, in every precision and next to MobileSAM, is timed by `python scripts/speed.py` "
                  "([speed.md](speed.md)).", ""]
    if speed:
        precisions = speed.get("precisions", SPEED_PRECISIONS)
        lines += ["## Speed of the SlimSAM-77 architecture (random weights)", "",
                  f"OpenVINO, encoder p50 of `set_image` on a {speed['image_hw'][0]}x{speed['image_hw'][1]} image "
                  f"(resize excluded), {speed['runs']} interleaved rounds, threads "
                  f"{speed['threads'] or 'runtime default'}; bf16 = the fp32 IR with the bf16 inference-precision hint. "
                  f"Load average while timing: {' -> '.join(speed.get('loadavg', ['?']))}; on a loaded machine the "
                  "absolute times are inflated and only the ratios (same rounds for every row) carry over.", ""]
        lines += [f"Not timed here: {p} ({why})." for p, why in (speed.get("refused") or {}).items()]
        lines += ["", "| input size | token grid | window | " + " | ".join(f"{p} p50 ms" for p in precisions)
                  + " | " + " | ".join(f"{p} vs 1024" for p in precisions) + " |",
                  "|---" * (3 + 2 * len(precisions)) + "|"]
        by = {(r["image_size"], r["precision"]): r for r in speed["rows"]}
        sizes = sorted({r["image_size"] for r in speed["rows"]}, reverse=True)
        top = sizes[0]
        for s in sizes:
            r0 = by[(s, precisions[0])]
            ms = [by[(s, p)]["encoder_p50_ms"] for p in precisions]
            rel = [f"{by[(s, p)]['encoder_p50_ms'] / by[(top, p)]['encoder_p50_ms']:.2f}x" for p in precisions]
            lines.append(f"| {s} | {r0['grid']}x{r0['grid']} | {r0['window']} | " + " | ".join(f"{v:.1f}" for v in ms)
                         + " | " + " | ".join(rel) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry (``python scripts/resolution.py --help``)."""
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description="input resolution as a compression axis -> docs/results/resolution.md")
    ap.add_argument("--workdir", type=Path, default=Path("runs/resolution"))
    ap.add_argument("--results", type=Path, default=Path("docs/results/resolution.md"))
    ap.add_argument("--mini-sizes", type=int, nargs="*", default=[256, 192, 128], help="sam-mini student sizes")
    ap.add_argument("--speed-sizes", type=int, nargs="*", default=[1024, 768, 512], help="SlimSAM-77 sizes")
    ap.add_argument("--ratio", type=float, default=DEMO_SETTINGS["ratio"])
    ap.add_argument("--steps", type=int, default=DEMO_SETTINGS["steps"], help="distillation steps per phase")
    ap.add_argument("--lr", type=float, default=DEMO_SETTINGS["lr"])
    ap.add_argument("--images", type=int, default=1000, help="procedural distillation images")
    ap.add_argument("--runs", type=int, default=10, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=None, help="torch / runtime threads (default: theirs)")
    ap.add_argument("--reuse-speed", action="store_true",
                    help="take the timings of an earlier run with the same sizes, runs and threads (WORKDIR/speed.json)")
    a = ap.parse_args(argv)
    from ..bench.matrix import machine_summary

    t0 = time.perf_counter()
    result: dict[str, Any] = {"machine": machine_summary(), "loadavg_start": " ".join(map(str, os.getloadavg()))}
    settings = {**DEMO_SETTINGS, "ratio": a.ratio, "steps": a.steps, "lr": a.lr}
    if a.mini_sizes:
        result["miou"] = measure_miou(a.mini_sizes, a.workdir, settings, a.images, a.threads)
    if a.speed_sizes:
        result["speed"] = _speed(a, a.workdir / "speed.json")
    result["loadavg_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    command = ("python scripts/resolution.py " + shlex.join(argv)).strip()
    publish(a.results, render(result, command), result)
    return result


if __name__ == "__main__":  # python -m slimsam_edge.research.resolution_report
    main()
